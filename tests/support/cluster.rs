//! The throwaway PostgreSQL cluster: located, initialised, started and (via a
//! watchdog process) removed again, once per test binary.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use super::pg_binaries;

/// Subdirectories / files inside [`Cluster::dir`].
const DATA_DIR: &str = "data";
const LOG_FILE: &str = "postgres.log";
const PASSWORD_FILE: &str = "superuser.pw";

/// The superuser created by initdb; also the OS user the server runs as under root.
const SUPERUSER: &str = "postgres";

/// How often to retry the start when the port we picked was taken in the meantime.
const START_ATTEMPTS: usize = 5;

pub struct Cluster {
    pub port: u16,
    /// Password of the `postgres` superuser (scram-sha-256, TCP only).
    pub password: String,
    /// Directory holding initdb, pg_ctl, postgres (and usually psql).
    pub bindir: PathBuf,
    /// Private temp dir: data directory, server log, unix socket.
    pub dir: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster of this test binary, started on first use. Synchronous, so it
/// can be called from plain and `#[tokio::test]` tests alike.
pub fn cluster() -> &'static Cluster {
    super::init_once(&CLUSTER, "the test PostgreSQL cluster", Cluster::start)
}

impl Cluster {
    /// Superuser URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{db}",
            super::url_encode(&self.password),
            self.port
        )
    }

    /// A superuser connection to `db`; the connection task is spawned on the
    /// current tokio runtime.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to the test cluster (db {db}): {e}\n{}",
                    self.log_tail()
                )
            });
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("test cluster connection error: {e}");
            }
        });
        client
    }

    /// Runs `sql` with psql as the superuser over TCP and returns its stdout
    /// (unaligned, tuples only). Panics with psql's stderr on any error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(pg_binaries::psql_program(&self.bindir));
        remove_pg_env(&mut cmd);
        let port = self.port.to_string();
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, "-d", db])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null());
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {:?}: {e}", cmd.get_program()));
        if !output.status.success() {
            panic!(
                "{}",
                super::describe_output(&format!("psql -d {db} -c {sql:?}"), &output)
            );
        }
        String::from_utf8(output.stdout).expect("psql output is UTF-8 (the cluster is UTF8)")
    }

    /// The last 50 lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        read_log_tail(&self.dir)
    }

    /// The whole server log (errors and warnings of every session so far).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join(LOG_FILE)).unwrap_or_default()).into_owned()
    }

    /// Creates, initialises and starts a new cluster. Panics with diagnostics on
    /// any failure; the watchdog removes whatever was created either way.
    /// Stops the server (`pg_ctl stop -m fast`): clients see their
    /// connections end, as in a real restart.
    pub fn stop(&self) {
        let mut cmd = server_command(&self.bindir, "pg_ctl", &self.dir, server_user().as_ref());
        cmd.args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.join(DATA_DIR))
            .arg("stop");
        let out = run(cmd, "pg_ctl stop");
        assert!(
            out.status.success(),
            "{}",
            super::describe_output("pg_ctl stop", &out)
        );
    }

    /// Starts the stopped server again on the same port; returns once it
    /// accepts connections.
    pub fn start_again(&self) {
        let cmd = pg_ctl_start(&self.bindir, &self.dir, server_user().as_ref(), self.port);
        let out = run(cmd, "pg_ctl start");
        assert!(
            out.status.success(),
            "{}\n{}",
            super::describe_output("pg_ctl start", &out),
            self.log_tail()
        );
    }

    fn start() -> Cluster {
        let started = Instant::now();
        let bindir = pg_binaries::find_bindir();
        let server_user = server_user();
        let dir = create_cluster_dir(server_user.as_ref());
        spawn_watchdog(&bindir, &dir, server_user.as_ref());

        let password = super::random_hex(32);
        init_data_dir(&bindir, &dir, server_user.as_ref(), &password);
        configure(&bindir, &dir);
        let port = start_server(&bindir, &dir, server_user.as_ref());
        eprintln!(
            "test harness: PostgreSQL ({}) on 127.0.0.1:{port}, dir {}, started in {:.1?}",
            bindir.display(),
            dir.display(),
            started.elapsed()
        );
        Cluster {
            port,
            password,
            bindir,
            dir,
        }
    }
}

/// The OS user the server processes run as, when we must drop root privileges
/// (postgres refuses to run as root).
struct ServerUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// `None` when not running as root: then the server runs as ourselves.
fn server_user() -> Option<ServerUser> {
    let euid = id(&["-u"]).expect("running `id -u` to find the effective uid");
    if euid != 0 {
        return None;
    }
    let missing = || {
        format!(
            "the tests run as root, but PostgreSQL refuses to run as root and there is no \
             `{SUPERUSER}` OS user to run it as; create one (e.g. `useradd -r {SUPERUSER}`, \
             installed with the postgresql package) or run the tests as a normal user"
        )
    };
    let uid = id(&["-u", SUPERUSER]).unwrap_or_else(|| panic!("{}", missing()));
    let gid = id(&["-g", SUPERUSER]).unwrap_or_else(|| panic!("{}", missing()));
    Some(ServerUser {
        name: SUPERUSER,
        uid,
        gid,
    })
}

/// Runs `id ARGS` and parses the number it prints; `None` if it fails.
fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// A fresh private directory under /tmp (which the server user can traverse,
/// unlike e.g. /root), owned by the server user. Kept on drop: the watchdog
/// removes it after the cluster is stopped.
fn create_cluster_dir(server_user: Option<&ServerUser>) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("pgtenant-test-")
        .tempdir_in("/tmp")
        .expect("creating the cluster temp dir in /tmp")
        .keep();
    chown(&dir, server_user);
    dir
}

fn chown(path: &Path, server_user: Option<&ServerUser>) {
    if let Some(user) = server_user {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), user.name));
    }
}

/// Starts a detached shell that waits for this test process to exit, then stops
/// the cluster and deletes its directory. Needed because Rust never drops
/// statics, and it also cleans up after a crash or SIGKILL of the test binary.
/// Spawned before initdb so that a failed start-up is cleaned up as well.
#[allow(clippy::zombie_processes)] // it must outlive us, so we never wait for it
fn spawn_watchdog(bindir: &Path, dir: &Path, server_user: Option<&ServerUser>) {
    // pg_ctl refuses to run as root, so as root the stop runs as the server user
    // via runuser or, where that does not exist, su.
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        if [ -z "$5" ]; then
            "$2" -D "$3" -m immediate stop
        elif command -v runuser >/dev/null 2>&1; then
            runuser -u "$5" -- "$2" -D "$3" -m immediate stop
        else
            su "$5" -s /bin/sh -c '"$0" -D "$1" -m immediate stop' "$2" "$3"
        fi
        rm -rf -- "$4"
    "#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", SCRIPT, "pgtenant-test-watchdog"])
        .arg(std::process::id().to_string())
        .arg(bindir.join("pg_ctl"))
        .arg(dir.join(DATA_DIR))
        .arg(dir)
        .arg(server_user.map_or("", |user| user.name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C aimed at the test run must not kill it.
        .process_group(0);
    cmd.spawn()
        .expect("spawning the cluster cleanup watchdog (sh)");
}

/// A command for a server binary, run as the server user with a cwd it can
/// access and without inherited `PG*` variables that could override our options.
fn server_command(bindir: &Path, program: &str, dir: &Path, user: Option<&ServerUser>) -> Command {
    let mut cmd = Command::new(bindir.join(program));
    remove_pg_env(&mut cmd);
    cmd.current_dir(dir).stdin(Stdio::null());
    if let Some(user) = user {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

fn remove_pg_env(cmd: &mut Command) {
    super::remove_env_with_prefix(cmd, "PG");
}

fn run(mut cmd: Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {what} ({:?}): {e}", cmd.get_program()))
}

/// initdb with the given superuser password, scram for TCP logins.
fn init_data_dir(bindir: &Path, dir: &Path, user: Option<&ServerUser>, password: &str) {
    let password_file = dir.join(PASSWORD_FILE);
    fs::write(&password_file, format!("{password}\n")).expect("writing the initdb password file");
    chown(&password_file, user);

    let mut cmd = server_command(bindir, "initdb", dir, user);
    cmd.arg("-D")
        .arg(dir.join(DATA_DIR))
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()));
    let output = run(cmd, "initdb");
    // The password must not outlive initdb, even in a private directory.
    let _ = fs::remove_file(&password_file);
    if !output.status.success() {
        panic!("{}", super::describe_output("initdb", &output));
    }
}

/// Test-friendly settings (fast, TCP only) and a pg_hba.conf that allows nothing
/// but scram-sha-256 over loopback TCP, so authentication is always real.
fn configure(bindir: &Path, dir: &Path) {
    let data = dir.join(DATA_DIR);
    let mut settings = format!(
        "\n# Added by the pgtenant test harness.\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = {}\n\
         max_connections = 300\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         password_encryption = 'scram-sha-256'\n\
         log_min_messages = warning\n\
         logging_collector = off\n",
        conf_quote(&dir.to_string_lossy())
    );
    if pg_binaries::has_pg_stat_statements(bindir) {
        settings.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
    }
    // Appending keeps the file's owner (the server user) and overrides initdb's values.
    fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .and_then(|mut conf| conf.write_all(settings.as_bytes()))
        .expect("appending to postgresql.conf");

    let hba = "# TYPE  DATABASE  USER  ADDRESS       METHOD\n\
               host    all       all   127.0.0.1/32  scram-sha-256\n\
               host    all       all   ::1/128       scram-sha-256\n";
    fs::write(data.join("pg_hba.conf"), hba).expect("writing pg_hba.conf");
}

/// A single-quoted postgresql.conf string value.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Starts the server on a free port and returns the port, retrying with another
/// port if the one we picked was taken between probing and binding.
fn start_server(bindir: &Path, dir: &Path, user: Option<&ServerUser>) -> u16 {
    let log_file = dir.join(LOG_FILE);
    for _ in 0..START_ATTEMPTS {
        let port = super::free_port();
        // pg_ctl appends to the log; only this attempt's part tells why it failed.
        let log_offset = fs::metadata(&log_file).map_or(0, |meta| meta.len() as usize);
        let output = run(pg_ctl_start(bindir, dir, user, port), "pg_ctl start");
        if output.status.success() {
            return port;
        }
        let log = fs::read(&log_file).unwrap_or_default();
        let attempt_log = String::from_utf8_lossy(log.get(log_offset..).unwrap_or_default());
        if !attempt_log.contains("Address already in use") {
            panic!(
                "{}\n--- server log ({}) ---\n{}",
                super::describe_output("pg_ctl start", &output),
                log_file.display(),
                read_log_tail(dir)
            );
        }
    }
    panic!(
        "PostgreSQL could not bind a free port in {START_ATTEMPTS} attempts\n{}",
        read_log_tail(dir)
    );
}

fn pg_ctl_start(bindir: &Path, dir: &Path, user: Option<&ServerUser>, port: u16) -> Command {
    let mut cmd = server_command(bindir, "pg_ctl", dir, user);
    cmd.args(["-w", "-t", "60", "-D"])
        .arg(dir.join(DATA_DIR))
        .arg("-l")
        .arg(dir.join(LOG_FILE))
        .args(["-o", &format!("-p {port}"), "start"]);
    cmd
}

fn read_log_tail(dir: &Path) -> String {
    let log_file = dir.join(LOG_FILE);
    match fs::read(&log_file) {
        Ok(bytes) => super::tail_of(&String::from_utf8_lossy(&bytes), 50),
        Err(e) => format!("(cannot read {}: {e})", log_file.display()),
    }
}

//! Real drivers through the proxy: asyncpg, psycopg, pgjdbc,
//! node-postgres, ruby-pg and PHP's PDO (server-side prepared statements
//! in transaction mode), and psql's catalog commands, with the firewall
//! enforcing.

mod support;

use std::process::Command;

use support::{Proxy, registry};

/// Runs `program args… tests/clients/<script>` against a transaction-mode
/// proxy (its URL in `PGT_DSN`), checks it exits 0 and that the server
/// never lost one of its prepared statements. `scripts/test.sh`
/// installs the drivers: asyncpg and psycopg (pip), pgjdbc (Debian's, in
/// /usr/share/java), node-postgres (npm, in target/test-node), ruby-pg and
/// PDO (Debian's).
fn workload(program: &str, args: &[&str], script: &str) {
    let (proxy, key) = txn_proxy();
    run(program, args, script, &proxy, &proxy.url(&key, "app"));
}

/// The same through a proxy that requires TLS; `sslmode` as the driver
/// spells "encrypted, certificate not checked" (the proxy's is
/// self-signed).
fn workload_over_tls(program: &str, args: &[&str], script: &str, sslmode: &str) {
    let reg = registry();
    let t = reg.create_tenant("drvtls");
    let key = reg.issue_key(&t);
    let (proxy, _certs) = reg.tls_proxy(&TXN);
    let url = proxy.url(&key, "app");
    let url = url.replace("sslmode=disable", &format!("sslmode={sslmode}"));
    run(program, args, script, &proxy, &url);
}

/// A workload that stops making progress is killed at this deadline (its
/// drivers have timeouts of their own, 60 s at most per reply).
const DEADLINE: &str = "300";

fn run(program: &str, args: &[&str], script: &str, proxy: &Proxy, url: &str) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("timeout")
        .args(["--kill-after=10", DEADLINE, program])
        .args(args)
        .arg(format!("{dir}/tests/clients/{script}"))
        .env("PGT_DSN", url)
        .env("NODE_PATH", format!("{dir}/target/test-node/node_modules"))
        .output()
        .unwrap_or_else(|e| panic!("{program} (installed by scripts/test.sh): {e}"));
    assert_ok(&out, proxy);
    // Drivers parse a statement again when the server lost it (pgjdbc,
    // asyncpg): only the server's log shows that the proxy lost one, or a
    // portal.
    let lost: Vec<_> = support::cluster()
        .log()
        .lines()
        .filter(|l| l.contains("does not exist"))
        .filter(|l| l.contains("prepared statement") || l.contains("portal"))
        .map(str::to_owned)
        .collect();
    assert!(lost.is_empty(), "{lost:#?}");
}

fn assert_ok(out: &std::process::Output, proxy: &Proxy) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        support::tail_of(&proxy.log(), 40)
    );
}

/// Debian's pgjdbc (libpostgresql-jdbc-java).
const PGJDBC: &str = "/usr/share/java/postgresql.jar";

/// Transaction mode, fewer server connections than the drivers' pools.
const TXN: [(&str, &str); 4] = [
    ("PGTENANT_POOL_MODE", "transaction"),
    ("PGTENANT_POOL_SIZE", "3"),
    ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "20000"),
    ("PGTENANT_FIREWALL_MODE", "enforce"),
];

fn txn_proxy() -> (Proxy, String) {
    let reg = registry();
    let t = reg.create_tenant("drv");
    let key = reg.issue_key(&t);
    (reg.proxy(&TXN), key)
}

#[test]
fn asyncpg_statements_introspection_cursors_and_copy_in_transaction_mode() {
    workload("python3", &[], "asyncpg_workload.py");
}

#[test]
fn psycopg_prepares_pipelines_copy_and_cursors_in_transaction_mode() {
    workload("python3", &[], "psycopg_workload.py");
}

/// Over a libpq before 17, psycopg evicts statements with SQL
/// `DEALLOCATE name`, in pipeline mode through the extended protocol.
#[test]
fn psycopg_with_an_old_libpq_deallocates_by_name() {
    workload("python3", &[], "psycopg_deallocate.py");
}

#[test]
fn pgjdbc_statements_batches_cursors_copy_and_cancel_in_transaction_mode() {
    workload("java", &["-cp", PGJDBC], "JdbcWorkload.java");
}

#[test]
fn pgjdbc_over_tls() {
    workload_over_tls("java", &["-cp", PGJDBC], "JdbcWorkload.java", "require");
}

#[test]
fn node_postgres_pool_in_transaction_mode() {
    workload("node", &[], "node_workload.js");
}

#[test]
fn node_postgres_over_tls() {
    workload_over_tls("node", &[], "node_workload.js", "no-verify");
}

#[test]
fn ruby_pg_threads_in_transaction_mode() {
    workload("ruby", &[], "ruby_workload.rb");
}

#[test]
fn php_pdo_server_side_prepares_in_transaction_mode() {
    workload("php", &[], "pdo_workload.php");
}

#[test]
fn php_pdo_over_tls() {
    workload_over_tls("php", &[], "pdo_workload.php", "require");
}

#[test]
fn psql_catalog_commands_pass_the_firewall() {
    let reg = registry();
    let t = reg.create_tenant("psqlcat");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    let psql = support::cluster().bindir.join("psql");
    let run = |cmd: &str| {
        Command::new(&psql)
            .arg(proxy.url(&key, "app"))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", cmd])
            .output()
            .expect("psql")
    };
    assert_ok(
        &run("CREATE TABLE widgets (id int PRIMARY KEY, name text)"),
        &proxy,
    );
    assert_ok(
        &run("CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'"),
        &proxy,
    );
    for cmd in [
        "\\d",
        "\\dt",
        "\\d widgets",
        "\\df",
        "\\dn",
        "\\l",
        "\\du",
        "\\dT",
        "\\di",
        "\\dv",
        "\\conninfo",
    ] {
        let out = run(cmd);
        assert_ok(&out, &proxy);
        if cmd == "\\dt" {
            assert!(String::from_utf8_lossy(&out.stdout).contains("widgets"));
        }
        if cmd == "\\df" {
            assert!(String::from_utf8_lossy(&out.stdout).contains("twice"));
        }
    }
}

//! `pgtenant serve` as a child process of the test.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

/// How long `pgtenant serve` may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `pgtenant serve`; SIGKILLed on drop. Its stdout and stderr go to a
/// temp file (see [`Proxy::log`]), which is printed if the test panics.
pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
    log: NamedTempFile,
    /// Set once listening; before that, start-up panics already include the log.
    started: bool,
}

impl Proxy {
    /// Starts `pgtenant serve` with `PGTENANT_LISTEN_ADDR=127.0.0.1:<free port>`
    /// plus `env` (which may override the listen address), and waits until it
    /// accepts TCP connections.
    pub fn start(env: &[(&str, &str)]) -> Proxy {
        let addr = listen_addr(env);
        let log = tempfile::Builder::new()
            .prefix("pgtenant-proxy-")
            .suffix(".log")
            .tempfile()
            .expect("creating the proxy log file");
        // Duplicated handles share one file offset, so stdout and stderr
        // interleave instead of overwriting each other.
        let output = || {
            log.as_file()
                .try_clone()
                .expect("duplicating the proxy log file handle for the child")
        };

        let mut cmd = super::pgtenant_command(&[]);
        cmd.arg("serve")
            .env("PGTENANT_LISTEN_ADDR", addr.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output());
        let child = cmd.spawn().expect("spawning `pgtenant serve`");

        // Constructed before waiting so that Drop kills the child if we panic.
        let mut proxy = Proxy {
            addr,
            child,
            log,
            started: false,
        };
        proxy.wait_until_listening();
        proxy.started = true;
        proxy
    }

    /// Everything the proxy has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        match fs::read(self.log.path()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})", self.log.path().display()),
        }
    }

    /// Client URL for tenant key `key` and database `db` (plain TCP).
    pub fn url(&self, key: &str, db: &str) -> String {
        format!(
            "postgres://app:{}@{}/{db}?sslmode=disable",
            super::url_encode(key),
            self.addr
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) to the proxy.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits up to `timeout` for the proxy to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling `pgtenant serve`") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until a TCP connect succeeds; panics with the log if the process
    /// exits or the timeout passes. The probe connection is closed without a
    /// startup packet, which the proxy must tolerate anyway.
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = self.child.try_wait().expect("polling `pgtenant serve`");
            if let Some(status) = exited {
                panic!(
                    "pgtenant serve exited ({status}) before listening on {}\n--- log ---\n{}",
                    self.addr,
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "pgtenant serve did not listen on {} within {STARTUP_TIMEOUT:?}\n--- log ---\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The caller's `PGTENANT_LISTEN_ADDR` if it gave one, else a free loopback port.
fn listen_addr(env: &[(&str, &str)]) -> SocketAddr {
    match env.iter().find(|(name, _)| *name == "PGTENANT_LISTEN_ADDR") {
        Some((_, value)) => value
            .parse()
            .unwrap_or_else(|e| panic!("PGTENANT_LISTEN_ADDR={value:?} is not ip:port: {e}")),
        None => SocketAddr::from((Ipv4Addr::LOCALHOST, super::free_port())),
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL; reap it so no zombie is left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A panicking test is usually explained by the proxy's log.
        if self.started && std::thread::panicking() {
            eprintln!(
                "--- pgtenant serve log ({}, last 100 lines) ---\n{}",
                self.addr,
                super::tail_of(&self.log(), 100)
            );
        }
    }
}

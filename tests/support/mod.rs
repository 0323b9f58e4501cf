//! Shared harness for the integration tests (`mod support;` in each test file).
//!
//! * [`cluster()`]: a throwaway PostgreSQL cluster, started lazily once per test
//!   binary and removed by a watchdog process when the test binary exits.
//! * [`registry()`]: a database in that cluster initialised with `pgtenant init`,
//!   plus helpers to create tenants, issue keys and start proxies against it.
//! * [`Proxy`]: a `pgtenant serve` child process, killed on drop.
//!
//! Each test binary uses only a subset of this module, hence the `allow`.
#![allow(dead_code, unused_imports)]

mod client;
mod cluster;
pub mod lifecycle;
pub mod metrics;
mod pg_binaries;
mod proxy;
pub mod raw;
mod registry;
pub mod tap;
pub mod two_tenants;

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use client::{client_at, config_at, sqlstate};
pub use cluster::{Cluster, cluster};
pub use proxy::Proxy;
pub use registry::{Registry, registry};

/// A port on 127.0.0.1 that was free a moment ago. Another process can grab it
/// before the caller binds it, so callers that can detect "address in use" retry.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("binding an ephemeral port on 127.0.0.1")
        .port()
}

/// Runs the pgtenant CLI with `args` and `env` on top of the inherited environment
/// (minus any `PGTENANT_*` variables of the developer's shell); waits for it to exit.
pub fn pgtenant_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = pgtenant_command(env);
    cmd.args(args).stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("running pgtenant {args:?}: {e}"))
}

/// A `Command` for the pgtenant binary built for this test run. Inherited
/// `PGTENANT_*` variables are removed so that a developer's shell settings
/// (e.g. a real `PGTENANT_BACKEND_URL`) can never leak into a test.
fn pgtenant_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtenant"));
    remove_env_with_prefix(&mut cmd, "PGTENANT_");
    cmd.envs(env.iter().copied());
    cmd
}

/// Removes every inherited variable whose name starts with `prefix`.
fn remove_env_with_prefix(cmd: &mut Command, prefix: &str) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(name);
        }
    }
}

/// `len` random lowercase hex digits (at most 32), from a v4 UUID so that no
/// extra dev-dependency is needed.
fn random_hex(len: usize) -> String {
    assert!(
        len <= 32,
        "random_hex supports at most 32 digits, got {len}"
    );
    uuid::Uuid::new_v4().simple().to_string()[..len].to_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for putting
/// arbitrary strings into the userinfo part of a URL.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Last `lines` lines of `text`.
pub fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Initialises `cell` once with `init`. If `init` panics, the panic message is
/// stored so that every later caller fails fast with the same message instead of
/// retrying a slow, doomed start-up in each test.
fn init_once<T: Send + Sync>(
    cell: &'static OnceLock<Result<T, String>>,
    what: &str,
    init: fn() -> T,
) -> &'static T {
    let result = cell.get_or_init(|| std::panic::catch_unwind(init).map_err(panic_message));
    match result {
        Ok(value) => value,
        Err(message) => panic!("{what} failed to start: {message}"),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Formats a finished process for a panic message.
fn describe_output(what: &str, output: &Output) -> String {
    format!(
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    )
}

/// The server connections `role` has open now (pg_stat_activity), read
/// on `su`, a superuser's connection to the registry's database.
pub async fn role_connections_on(su: &tokio_postgres::Client, role: &str) -> i64 {
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
        &[&role],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits until `query` is running on the server `su` is connected to (20 s
/// at most, however slow the machine): a cancel sent before it starts has
/// nothing to cancel.
#[allow(dead_code)] // not every test binary cancels
pub async fn until_running(su: &tokio_postgres::Client, query: &str) {
    let running = "SELECT count(*) FROM pg_catalog.pg_stat_activity \
                   WHERE query = $1 AND state = 'active'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while su
        .query_one(running, &[&query])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "{query:?} never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

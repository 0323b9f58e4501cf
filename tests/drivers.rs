//! Real drivers through the proxy: asyncpg, psycopg, pgjdbc and
//! node-postgres (server-side prepared statements in transaction mode),
//! and psql's catalog commands, with the firewall enforcing.

mod support;

use std::process::Command;

use support::{Proxy, registry};

/// Runs `program args… tests/clients/<script>` against a transaction-mode
/// proxy (its URL in `PGT_DSN`) and checks it exits 0. `scripts/test.sh`
/// installs the drivers: asyncpg and psycopg (pip), pgjdbc (Debian's, in
/// /usr/share/java), node-postgres (npm, in target/test-node).
fn workload(program: &str, args: &[&str], script: &str) -> Proxy {
    let (proxy, key) = txn_proxy();
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(program)
        .args(args)
        .arg(format!("{dir}/tests/clients/{script}"))
        .env("PGT_DSN", proxy.url(&key, "app"))
        .env("NODE_PATH", format!("{dir}/target/test-node/node_modules"))
        .output()
        .unwrap_or_else(|e| panic!("{program} (installed by scripts/test.sh): {e}"));
    assert_ok(&out, &proxy);
    proxy
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

fn txn_proxy() -> (Proxy, String) {
    let reg = registry();
    let t = reg.create_tenant("drv");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "3"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "20000"),
        ("PGTENANT_FIREWALL_MODE", "enforce"),
    ]);
    (proxy, key)
}

#[test]
fn asyncpg_prepared_statements_and_introspection_in_transaction_mode() {
    let proxy = workload("python3", &[], "asyncpg_workload.py");
    assert!(!proxy.log().contains("does not exist"), "{}", proxy.log());
}

#[test]
fn psycopg_server_side_prepares_in_transaction_mode() {
    workload("python3", &[], "psycopg_workload.py");
}

#[test]
fn pgjdbc_statements_batches_cursors_copy_and_cancel_in_transaction_mode() {
    let pgjdbc = "/usr/share/java/postgresql.jar";
    workload("java", &["-cp", pgjdbc], "JdbcWorkload.java");
}

#[test]
fn node_postgres_pool_in_transaction_mode() {
    workload("node", &[], "node_workload.js");
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

//! Real drivers through the proxy: asyncpg and psycopg (server-side
//! prepared statements in transaction mode) and psql's catalog commands
//! with the firewall enforcing.

mod support;

use std::process::Command;

use support::{Proxy, registry};

fn python(script: &str, dsn: &str) -> std::process::Output {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    Command::new("python3")
        .arg(path)
        .env("PGT_DSN", dsn)
        .output()
        .expect("python3 is installed by scripts/test.sh")
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
    ]);
    (proxy, key)
}

#[test]
fn asyncpg_prepared_statements_and_introspection_in_transaction_mode() {
    let (proxy, key) = txn_proxy();
    let out = python("asyncpg_workload.py", &proxy.url(&key, "app"));
    assert_ok(&out, &proxy);
    assert!(!proxy.log().contains("does not exist"), "{}", proxy.log());
}

#[test]
fn psycopg_server_side_prepares_in_transaction_mode() {
    let (proxy, key) = txn_proxy();
    let out = python("psycopg_workload.py", &proxy.url(&key, "app"));
    assert_ok(&out, &proxy);
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

//! Helpers of the tenant-lifecycle and CLI tests: running `pgtenant`
//! commands, logging in through a proxy and waiting for the registry's
//! changes to take effect, and snapshots of what a failed command must not
//! have changed.

use std::process::Output;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::{Proxy, registry};

/// Cache TTL and refresh interval of the proxies here (ms): 10 minutes, so
/// that anything faster is the LISTEN/NOTIFY path.
pub const LONG: &str = "600000";

pub fn env_of(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

pub fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    super::pgtenant_cli(args, env)
}

/// Runs a CLI command that must succeed; returns its stdout.
pub fn ok(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        out.status.success(),
        "pgtenant {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn ok_json(env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let text = ok(env, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Runs a CLI command that must fail with one line `pgtenant: …` that
/// contains `expect`; returns that line.
pub fn fails(env: &[(&str, &str)], args: &[&str], expect: &str) -> String {
    let out = run(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "pgtenant {args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    assert!(
        lines[0].starts_with("pgtenant: ") && lines[0].contains(expect),
        "{args:?}: {stderr:?} does not say {expect:?}"
    );
    lines[0].to_owned()
}

/// Issues a key; returns (id, key).
pub fn issue(env: &[(&str, &str)], tenant: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["key", "issue", "--tenant", tenant];
    args.extend_from_slice(extra);
    let v = ok_json(env, &args);
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

pub fn proxy(extra: &[(&str, &str)]) -> Proxy {
    let mut env = vec![
        ("PGTENANT_REGISTRY_CACHE_TTL_MS", LONG),
        ("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG),
    ];
    env.extend_from_slice(extra);
    registry().proxy(&env)
}

/// A client through the proxy whose connection task's outcome we keep:
/// a FATAL sent while the client is idle ends up there.
pub struct Session {
    pub client: Client,
    pub ended: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

pub async fn open(proxy: &Proxy, key: &str) -> Result<Session, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.addr.port())
        .user("app")
        .password(key)
        .dbname("app");
    let (client, conn) = cfg.connect(NoTls).await?;
    Ok(Session {
        client,
        ended: tokio::spawn(conn),
    })
}

pub async fn open_ok(proxy: &Proxy, key: &str) -> Session {
    open(proxy, key)
        .await
        .unwrap_or_else(|e| panic!("login failed: {e:?}\nproxy log:\n{}", proxy.log()))
}

pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e:?}"))
}

pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

/// Polls logins until one is refused; panics if that takes past `deadline`.
/// A login that raced the change (looked its key up just before, and was
/// ended by it while it waited for its first connection: 57P01) is not
/// the refusal looked for.
pub async fn refused_by(proxy: &Proxy, key: &str, deadline: Instant) -> tokio_postgres::Error {
    loop {
        match open(proxy, key).await {
            Err(e) if code(&e) == "57P01" && Instant::now() < deadline => {}
            Err(e) => return e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Ok(_) => panic!("key still accepted at the deadline\n{}", proxy.log()),
        }
    }
}

/// Polls logins until one succeeds.
pub async fn accepted_by(proxy: &Proxy, key: &str, deadline: Instant) -> Session {
    loop {
        match open(proxy, key).await {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(e) => panic!("key still refused at the deadline: {e:?}"),
        }
    }
}

/// Waits until the proxy ends an idle session; returns (SQLSTATE, message).
pub async fn terminated(s: Session, deadline: Instant) -> (String, String) {
    let wait = deadline.saturating_duration_since(Instant::now());
    let outcome = tokio::time::timeout(wait, s.ended)
        .await
        .expect("session still alive at the deadline")
        .unwrap();
    let e = outcome.expect_err("connection ended without an error");
    (code(&e), message(&e))
}

pub async fn alive(s: &Session) -> bool {
    s.client.simple_query("SELECT 1").await.is_ok()
}

pub async fn superuser(db: &str) -> Client {
    super::cluster().connect(db).await
}

/// A second registry in its own database of the test cluster (roles need a
/// prefix there: `tenant_default` exists already).
pub fn own_registry(db: &str, prefix: &str) -> Vec<(String, String)> {
    super::cluster().psql("postgres", &format!("CREATE DATABASE {db}"));
    let env = vec![
        ("PGTENANT_BACKEND_URL".to_owned(), super::cluster().url(db)),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-own".to_owned(),
        ),
    ];
    ok(&env_of(&env), &["init", "--role-prefix", prefix]);
    env
}

/// Everything a failed command must not have changed: registry rows (all
/// columns), and this registry's schemas and roles.
pub async fn snapshot(db: &str, role_like: &str) -> Vec<String> {
    let su = superuser(db).await;
    let row = su
        .query_one(
            "SELECT (SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t.id)), '') FROM pgtenant.tenants t),
                    (SELECT coalesce(md5(string_agg(u::text, ',' ORDER BY u.id)), '') FROM pgtenant.users u),
                    (SELECT coalesce(md5(string_agg(k::text, ',' ORDER BY k.id)), '') FROM pgtenant.api_keys k),
                    (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
                    (SELECT coalesce(string_agg(rolname, ',' ORDER BY rolname), '') FROM pg_roles WHERE rolname LIKE $1),
                    (SELECT count(*)::text FROM pgtenant.tenants)",
            &[&role_like],
        )
        .await
        .unwrap();
    (0..6).map(|i| row.get::<_, String>(i)).collect()
}

/// One tenant's registry rows, schema, objects and role, in a registry
/// that other tests change at the same time.
pub async fn tenant_snapshot(db: &str, tenant: &str) -> Vec<String> {
    let su = superuser(db).await;
    let row = su
        .query_one(
            "WITH t AS (SELECT * FROM pgtenant.tenants WHERE name = $1)
             SELECT (SELECT coalesce(string_agg(t::text, ','), '') FROM t),
                    (SELECT coalesce(string_agg(u::text, ',' ORDER BY u.id), '')
                       FROM pgtenant.users u WHERE u.tenant_id IN (SELECT id FROM t)),
                    (SELECT coalesce(string_agg(k::text, ',' ORDER BY k.id), '')
                       FROM pgtenant.api_keys k WHERE k.tenant_id IN (SELECT id FROM t)),
                    (SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), '')
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname IN (SELECT schema_name FROM t)),
                    (SELECT count(*)::text FROM pg_roles WHERE rolname IN (SELECT role_name FROM t))",
            &[&tenant],
        )
        .await
        .unwrap();
    let snap: Vec<String> = (0..5).map(|i| row.get::<_, String>(i)).collect();
    assert!(
        !snap[0].is_empty() && !snap[3].is_empty() && snap[4] == "1",
        "{snap:?}"
    );
    snap
}

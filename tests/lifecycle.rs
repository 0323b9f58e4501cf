//! Acceptance tests of the tenant lifecycle (issue 3) against a real
//! PostgreSQL: the CLI, live effect of registry changes on every proxy,
//! key expiry and rotation, last_used_at batching, legacy adoption, and a
//! second registry in the same cluster.
//!
//! Proxies here trust their cache for 10 minutes and refresh every 10
//! minutes unless a test says otherwise, so anything that happens within a
//! second can only be the LISTEN/NOTIFY path (or expiry tracking).

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::{Proxy, registry};
use tokio_postgres::{Client, NoTls};

const LONG: &str = "600000";

// ---------------------------------------------------------------- helpers

fn env_of(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    support::pgtenant_cli(args, env)
}

/// Runs a CLI command that must succeed; returns its stdout.
fn ok(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        out.status.success(),
        "pgtenant {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok_json(env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let text = ok(env, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Runs a CLI command that must fail with one line `pgtenant: …` that
/// contains `expect`; returns that line.
fn fails(env: &[(&str, &str)], args: &[&str], expect: &str) -> String {
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
fn issue(env: &[(&str, &str)], tenant: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["key", "issue", "--tenant", tenant];
    args.extend_from_slice(extra);
    let v = ok_json(env, &args);
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

fn proxy(extra: &[(&str, &str)]) -> Proxy {
    let mut env = vec![
        ("PGTENANT_REGISTRY_CACHE_TTL_MS", LONG),
        ("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG),
    ];
    env.extend_from_slice(extra);
    registry().proxy(&env)
}

/// A client through the proxy whose connection task's outcome we keep:
/// a FATAL sent while the client is idle ends up there.
struct Session {
    client: Client,
    ended: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

async fn open(proxy: &Proxy, key: &str) -> Result<Session, tokio_postgres::Error> {
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

async fn open_ok(proxy: &Proxy, key: &str) -> Session {
    open(proxy, key)
        .await
        .unwrap_or_else(|e| panic!("login failed: {e:?}\nproxy log:\n{}", proxy.log()))
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e:?}"))
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

/// Polls logins until one is refused; panics if that takes past `deadline`.
async fn refused_by(proxy: &Proxy, key: &str, deadline: Instant) -> tokio_postgres::Error {
    loop {
        match open(proxy, key).await {
            Err(e) => return e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Ok(_) => panic!("key still accepted at the deadline\n{}", proxy.log()),
        }
    }
}

/// Polls logins until one succeeds.
async fn accepted_by(proxy: &Proxy, key: &str, deadline: Instant) -> Session {
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
async fn terminated(s: Session, deadline: Instant) -> (String, String) {
    let wait = deadline.saturating_duration_since(Instant::now());
    let outcome = tokio::time::timeout(wait, s.ended)
        .await
        .expect("session still alive at the deadline")
        .unwrap();
    let e = outcome.expect_err("connection ended without an error");
    (code(&e), message(&e))
}

async fn alive(s: &Session) -> bool {
    s.client.simple_query("SELECT 1").await.is_ok()
}

async fn superuser(db: &str) -> Client {
    support::cluster().connect(db).await
}

/// A second registry in its own database of the test cluster (roles need a
/// prefix there: `tenant_default` exists already).
fn own_registry(db: &str, prefix: &str) -> Vec<(String, String)> {
    support::cluster().psql("postgres", &format!("CREATE DATABASE {db}"));
    let env = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            support::cluster().url(db),
        ),
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
async fn snapshot(db: &str, role_like: &str) -> Vec<String> {
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
async fn tenant_snapshot(db: &str, tenant: &str) -> Vec<String> {
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

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn revoked_key_is_refused_and_its_sessions_end_on_every_replica() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("rev");
    let (id, key) = issue(&env, &t, &[]);
    let (_, other) = issue(&env, &t, &[]);
    let (a, b) = (proxy(&[]), proxy(&[]));

    // Warm both caches, keep sessions: one idle, one busy in a query.
    let idle = open_ok(&a, &key).await;
    let busy = open_ok(&b, &key).await;
    let untouched = open_ok(&a, &other).await;
    let query = tokio::spawn(async move {
        let r = busy.client.simple_query("SELECT pg_sleep(30)").await;
        (r, busy)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let out = ok(&env, &["key", "revoke", &id]);
    assert!(out.contains("revoked"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(1);
    for p in [&a, &b] {
        let e = refused_by(p, &key, deadline).await;
        assert_eq!(code(&e), "28P01", "{e:?}");
    }
    let (c, m) = terminated(idle, deadline).await;
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("57P01", "pgtenant: API key revoked")
    );
    let (r, _busy) =
        tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), query)
            .await
            .expect("busy session still running at the deadline")
            .unwrap();
    let e = r.expect_err("the query of a revoked key's session completed");
    assert_eq!(code(&e), "57P01");
    assert_eq!(message(&e), "pgtenant: API key revoked");

    // The tenant's other key is not affected.
    assert!(alive(&untouched).await);
    open_ok(&b, &other).await;
    // Revoking again is not an error; the message says so.
    assert!(ok(&env, &["key", "revoke", &id]).contains("already revoked"));
    for p in [&a, &b] {
        assert!(!p.log().contains(&key), "a key reached the log");
    }
}

#[tokio::test]
async fn deactivated_tenant_is_refused_with_28000_and_reactivation_restores_logins() {
    let reg = registry();
    let env = reg.env_refs();
    let (t, bystander) = (reg.create_tenant("deact"), reg.create_tenant("bystander"));
    let (_, key) = issue(&env, &t, &[]);
    let (_, bkey) = issue(&env, &bystander, &[]);
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    let other = open_ok(&p, &bkey).await;

    assert!(ok(&env, &["tenant", "deactivate", &t]).contains("deactivated"));
    let deadline = Instant::now() + Duration::from_secs(1);
    let e = refused_by(&p, &key, deadline).await;
    assert_eq!(code(&e), "28000");
    assert_eq!(message(&e), format!("tenant \"{t}\" is inactive"));
    let (c, m) = terminated(s, deadline).await;
    assert_eq!(c, "57P01");
    assert_eq!(m, format!("pgtenant: tenant \"{t}\" was deactivated"));
    assert!(alive(&other).await, "another tenant's session was ended");
    let v = ok_json(&env, &["tenant", "show", &t]);
    assert_eq!(v["active"], false);

    assert!(ok(&env, &["tenant", "deactivate", &t]).contains("already inactive"));
    assert!(ok(&env, &["tenant", "activate", &t]).contains("activated"));
    let s = accepted_by(&p, &key, Instant::now() + Duration::from_secs(1)).await;
    assert!(alive(&s).await);
}

#[tokio::test]
async fn deactivated_user_loses_its_keys_and_sessions_but_not_the_tenants() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("usr");
    let user = ok_json(
        &env,
        &[
            "user",
            "add",
            "--tenant",
            &t,
            "Bob@Example.com",
            "--name",
            "Bob",
        ],
    );
    assert_eq!(user["email"], "Bob@Example.com");
    let (_, bob) = issue(&env, &t, &["--user", "bob@example.COM", "--name", "laptop"]);
    let (_, service) = issue(&env, &t, &[]);
    let p = proxy(&[]);
    let s = open_ok(&p, &bob).await;
    let svc = open_ok(&p, &service).await;

    ok(
        &env,
        &["user", "deactivate", "--tenant", &t, "BOB@example.com"],
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    let e = refused_by(&p, &bob, deadline).await;
    assert_eq!(code(&e), "28P01");
    let (c, m) = terminated(s, deadline).await;
    assert_eq!(c, "57P01");
    assert_eq!(m, "pgtenant: the API key's user was deactivated");
    assert!(alive(&svc).await);
    let users = ok_json(&env, &["user", "list", "--tenant", &t]);
    assert_eq!(users[0]["active"], false);
    // An inactive user gets no new keys.
    fails(
        &env,
        &["key", "issue", "--tenant", &t, "--user", "bob@example.com"],
        "inactive",
    );

    ok(
        &env,
        &["user", "activate", "--tenant", &t, "bob@example.com"],
    );
    accepted_by(&p, &bob, Instant::now() + Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dropped_tenant_loses_schema_role_rows_and_sessions() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("drop");
    let schema = format!("tenant_{t}");
    let (_, key) = issue(&env, &t, &[]);
    ok(&env, &["user", "add", "--tenant", &t, "x@example.com"]);
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    s.client
        .batch_execute("CREATE TABLE notes (x int); INSERT INTO notes VALUES (1)")
        .await
        .unwrap();

    fails(&env, &["tenant", "drop", &t], "without --yes");
    fails(
        &env,
        &["tenant", "drop", "default", "--yes"],
        "default tenant",
    );

    // A session inside a transaction holds a lock: the drop fails cleanly
    // after lock_timeout instead of hanging, and leaves everything in place.
    let before = tenant_snapshot(&reg.db, &t).await;
    s.client
        .batch_execute("BEGIN; LOCK TABLE notes")
        .await
        .unwrap();
    fails(&env, &["tenant", "drop", &t, "--yes"], "deactivate");
    assert_eq!(tenant_snapshot(&reg.db, &t).await, before);
    s.client.batch_execute("ROLLBACK").await.unwrap();

    let v = ok_json(&env, &["tenant", "drop", &t, "--yes"]);
    assert_eq!(v["schema"], schema.as_str());
    let deadline = Instant::now() + Duration::from_secs(1);
    let (c, m) = terminated(s, deadline).await;
    assert_eq!(c, "57P01");
    assert_eq!(m, format!("pgtenant: tenant \"{t}\" was dropped"));
    let e = refused_by(&p, &key, deadline).await;
    assert_eq!(code(&e), "28P01");

    let su = superuser(&reg.db).await;
    let row = su
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    EXISTS (SELECT 1 FROM pgtenant.tenants WHERE name = $2)",
            &[&schema, &t],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, false)
    );
    fails(&env, &["tenant", "show", &t], "no tenant named");
}

#[tokio::test]
async fn on_revoke_keep_refuses_new_logins_but_lets_sessions_run() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("keep");
    let (id, key) = issue(&env, &t, &[]);
    let p = proxy(&[("PGTENANT_REGISTRY_ON_REVOKE", "keep")]);
    let s = open_ok(&p, &key).await;
    ok(&env, &["key", "revoke", &id]);
    refused_by(&p, &key, Instant::now() + Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alive(&s).await, "on_revoke = keep ended a session");
}

#[tokio::test]
async fn periodic_refresh_catches_a_change_that_sent_no_notification() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("silent");
    let (id, key) = issue(&env, &t, &[]);
    let p = proxy(&[("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", "500")]);
    let s = open_ok(&p, &key).await;
    // session_replication_role = replica skips the registry's triggers:
    // as if the notification had been lost.
    let su = superuser(&reg.db).await;
    su.batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let id: uuid::Uuid = id.parse().unwrap();
    su.execute(
        "UPDATE pgtenant.api_keys SET active = false WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    refused_by(&p, &key, deadline).await;
    let (c, m) = terminated(s, deadline).await;
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("57P01", "pgtenant: API key revoked")
    );
}

#[tokio::test]
async fn watcher_reconnects_after_its_connection_is_killed() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("reconn");
    let (id, key) = issue(&env, &t, &[]);
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    let app = format!("pgtenant watch {}", p.pid());
    let su = superuser(&reg.db).await;
    let first: i32 = su
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("the watcher's connection is in pg_stat_activity")
        .get(0);
    su.execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    // A new watcher connection appears (backoff starts at 100 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = su
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2",
                &[&app, &first],
            )
            .await
            .unwrap();
        if again.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new watcher connection\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // LISTEN follows the connect; give it a moment, then it must work again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&env, &["key", "revoke", &id]);
    let deadline = Instant::now() + Duration::from_secs(1);
    refused_by(&p, &key, deadline).await;
    terminated(s, deadline).await;
    assert!(
        p.log().contains("registry watch interrupted"),
        "{}",
        p.log()
    );
}

#[tokio::test]
async fn expiring_key_stops_logins_and_sessions_at_its_expiry() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("exp");
    let (id, key) = issue(&env, &t, &["--expires", "2s"]);
    let issued = Instant::now();
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    let keys = ok_json(&env, &["key", "list", "--tenant", &t]);
    assert_eq!(keys[0]["id"], id.as_str());
    assert!(keys[0]["expires_at"].is_string());

    let deadline = issued + Duration::from_millis(3500);
    let e = refused_by(&p, &key, deadline).await;
    assert_eq!(code(&e), "28P01");
    assert!(
        issued.elapsed() >= Duration::from_millis(1500),
        "refused too early"
    );
    let (c, m) = terminated(s, deadline).await;
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("57P01", "pgtenant: API key expired")
    );
    let keys = ok_json(&env, &["key", "list", "--tenant", &t]);
    assert_eq!(keys[0]["status"], "expired");
    assert_eq!(keys[0]["active"], false);
}

#[tokio::test]
async fn rotated_key_and_its_successor_both_work_during_the_grace_period() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("rot");
    let (old_id, old) = issue(&env, &t, &["--name", "ci"]);
    let p = proxy(&[]);
    let s_old = open_ok(&p, &old).await;

    let v = ok_json(&env, &["key", "rotate", &old_id, "--grace", "3s"]);
    let rotated = Instant::now();
    let new = v["new"]["key"].as_str().unwrap().to_owned();
    let new_id = v["new"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["old_id"], old_id.as_str());
    assert!(v["old_valid_until"].is_string());
    assert_eq!(v["new"]["name"], "ci");
    open_ok(&p, &old).await;
    let s_new = open_ok(&p, &new).await;
    fails(&env, &["key", "rotate", &old_id], "already rotated");

    let keys = ok_json(&env, &["key", "list", "--tenant", &t]);
    let old_row = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == old_id.as_str())
        .unwrap();
    assert_eq!(old_row["replaced_by"], new_id.as_str());

    let deadline = rotated + Duration::from_millis(4500);
    refused_by(&p, &old, deadline).await;
    assert!(
        rotated.elapsed() >= Duration::from_millis(2500),
        "grace cut short"
    );
    let (c, m) = terminated(s_old, deadline).await;
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("57P01", "pgtenant: API key expired")
    );
    assert!(alive(&s_new).await);
    open_ok(&p, &new).await;

    // --grace 0s revokes the old key at once.
    let v = ok_json(&env, &["key", "rotate", &new_id, "--grace", "0s"]);
    assert!(v["old_valid_until"].is_null());
    refused_by(&p, &new, Instant::now() + Duration::from_secs(1)).await;
    open_ok(&p, v["new"]["key"].as_str().unwrap()).await;
}

#[tokio::test]
async fn last_used_at_is_written_in_batches_at_most_once_a_minute() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("used");
    let (_, key) = issue(&env, &t, &[]);
    let last_used = || {
        let keys = ok_json(&env, &["key", "list", "--tenant", &t]);
        keys[0]["last_used_at"].as_str().map(str::to_owned)
    };
    assert_eq!(last_used(), None);
    let p = proxy(&[("PGTENANT_REGISTRY_LAST_USED_FLUSH_MS", "200")]);
    drop(open_ok(&p, &key).await);
    let deadline = Instant::now() + Duration::from_secs(3);
    let first = loop {
        if let Some(t) = last_used() {
            break t;
        }
        assert!(Instant::now() < deadline, "last_used_at never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // More logins, several flushes later, still within the minute: unchanged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        drop(open_ok(&p, &key).await);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(last_used(), Some(first));
}

#[tokio::test]
async fn tenant_create_with_metadata_and_an_opaque_schema_hides_the_name() {
    let reg = registry();
    let env = reg.env_refs();
    let name = format!("opaque_secret_{}", std::process::id());
    let v = ok_json(
        &env,
        &[
            "tenant",
            "create",
            &name,
            "--opaque-schema",
            "--metadata",
            r#"{"plan": "pro", "seats": 5}"#,
        ],
    );
    let schema = v["schema"].as_str().unwrap().to_owned();
    assert!(
        schema.len() == 18
            && schema.starts_with("t_")
            && schema[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{schema}"
    );
    assert_eq!(v["role"], schema.as_str());
    let shown = ok_json(&env, &["tenant", "show", &name]);
    assert_eq!(shown["metadata"]["plan"], "pro");
    assert_eq!(shown["metadata"]["seats"], 5);
    let list = ok_json(&env, &["tenant", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == name.as_str())
    );
    assert!(ok(&env, &["tenant", "list"]).contains(&name));

    let su = superuser(&reg.db).await;
    let leaks: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM pg_roles WHERE rolname LIKE '%' || $1 || '%')",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0, "the tenant's name shows in the catalogs");

    let (_, key) = issue(&env, &name, &[]);
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    let row = s
        .client
        .query_one(
            "SELECT current_user::text, current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), schema);
    assert_eq!(row.get::<_, String>(1), schema);
}

#[tokio::test]
async fn key_list_never_shows_a_key_or_its_hash() {
    use sha2::{Digest, Sha256};
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("list");
    ok(&env, &["user", "add", "--tenant", &t, "carol@example.com"]);
    let mut secrets = Vec::new();
    for extra in [
        &["--name", "plain"][..],
        &["--user", "carol@example.com", "--expires", "30d"],
    ] {
        let (_, key) = issue(&env, &t, extra);
        secrets.push(hex::encode(Sha256::digest(key.as_bytes())));
        secrets.push(key);
    }
    let human = ok(&env, &["key", "list", "--tenant", &t]);
    let all = ok(&env, &["key", "list"]);
    let json = ok(&env, &["key", "list", "--tenant", &t, "--json"]);
    for out in [&human, &all, &json] {
        assert!(!out.contains("pgt_"), "{out}");
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "a key or hash in: {out}");
        }
    }
    for header in [
        "ID",
        "TENANT",
        "NAME",
        "USER",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ] {
        assert!(human.contains(header), "{human}");
    }
    assert!(human.contains("carol@example.com") && human.contains("plain"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for k in v.as_array().unwrap() {
        assert_eq!(k["tenant"], t.as_str());
        assert_eq!(k["active"], true);
        assert!(k.get("key").is_none() && k.get("key_hash").is_none());
    }
}

#[tokio::test]
async fn bad_input_fails_with_one_line_and_leaves_the_registry_unchanged() {
    let own = own_registry("bad_input_test", "bad_");
    let env = env_of(&own);
    ok(&env, &["tenant", "create", "acme"]);
    ok(
        &env,
        &["user", "add", "--tenant", "acme", "Dana@Example.com"],
    );
    let (key_id, _) = issue(&env, "acme", &[]);
    // A role of the same name made outside pgtenant.
    support::cluster().psql("bad_input_test", "CREATE ROLE bad_tenant_clash");
    let before = snapshot("bad_input_test", "bad\\_%").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let long = "a".repeat(57);
    let cases: &[(&[&str], &str)] = &[
        (
            &["tenant", "create", "acme"],
            "tenant \"acme\" already exists",
        ),
        (
            &["tenant", "create", "Acme"],
            "invalid tenant name \"Acme\"",
        ),
        (&["tenant", "create", "a-b"], "[a-z][a-z0-9_]*"),
        (&["tenant", "create", "pg_x"], "must not start with pg_"),
        (&["tenant", "create", "public"], "is reserved"),
        (&["tenant", "create", &long], "too long"),
        (
            &["tenant", "create", "ok1", "--schema", "Bad"],
            "invalid schema name",
        ),
        (
            &["tenant", "create", "ok1", "--schema", "tenant_acme"],
            "already used by tenant \"acme\"",
        ),
        (
            &["tenant", "create", "ok1", "--schema", "pgtenant"],
            "is reserved",
        ),
        (
            &["tenant", "create", "clash"],
            "role \"bad_tenant_clash\" already exists",
        ),
        (
            &["tenant", "create", "ok1", "--metadata", "[1]"],
            "must be a JSON object",
        ),
        (
            &["tenant", "create", "ok1", "--metadata", "{"],
            "not valid JSON",
        ),
        (&["tenant", "show", "nosuch"], "no tenant named \"nosuch\""),
        (&["tenant", "deactivate", "nosuch"], "no tenant named"),
        (&["tenant", "drop", "nosuch", "--yes"], "no tenant named"),
        (
            &["tenant", "drop", "default", "--yes"],
            "default tenant cannot be dropped",
        ),
        (&["tenant", "drop", "acme"], "without --yes"),
        (
            &["user", "add", "--tenant", "nosuch", "a@b.c"],
            "no tenant named",
        ),
        (
            &["user", "add", "--tenant", "acme", "dana@example.COM"],
            "already has a user",
        ),
        (
            &["user", "add", "--tenant", "acme", "not-an-email"],
            "invalid e-mail",
        ),
        (
            &["user", "deactivate", "--tenant", "acme", "nobody@x.y"],
            "has no user",
        ),
        (&["key", "issue", "--tenant", "nosuch"], "no tenant named"),
        (
            &["key", "issue", "--tenant", "acme", "--user", "nobody@x.y"],
            "has no user",
        ),
        (
            &[
                "key",
                "issue",
                "--tenant",
                "acme",
                "--expires",
                "2000-01-01T00:00:00Z",
            ],
            "not in the future",
        ),
        (
            &["key", "issue", "--tenant", "acme", "--expires", "10"],
            "needs a unit",
        ),
        (
            &["key", "issue", "--tenant", "acme", "--expires", "0m"],
            "not in the future",
        ),
        (&["key", "list", "--tenant", "nosuch"], "no tenant named"),
        (&["key", "revoke", &unknown], "no API key with id"),
        (&["key", "revoke", "not-a-uuid"], "no API key with id"),
        (&["key", "rotate", &unknown], "no API key with id"),
        (
            &["key", "rotate", &key_id, "--grace", "1y"],
            "invalid duration",
        ),
        (
            &["adopt-legacy", "--from-schema", "nosuch"],
            "no such schema",
        ),
        (
            &["adopt-legacy", "--from-schema", "pgtenant"],
            "system schema",
        ),
        (
            &["adopt-legacy", "--from-schema", "tenant_acme"],
            "a tenant's schema",
        ),
        (&["init", "--role-prefix", "other_"], "cannot be changed"),
    ];
    for (args, expect) in cases {
        fails(&env, args, expect);
        assert_eq!(
            snapshot("bad_input_test", "bad\\_%").await,
            before,
            "pgtenant {args:?} changed the registry"
        );
    }
    // Not initialised: a clear message, not a SQL error.
    support::cluster().psql("postgres", "CREATE DATABASE not_initialised");
    let bare = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            support::cluster().url("not_initialised"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-own".to_owned(),
        ),
    ];
    fails(&env_of(&bare), &["tenant", "list"], "pgtenant init");
    fails(
        &env_of(&bare),
        &["key", "revoke", &unknown],
        "pgtenant init",
    );
}

#[tokio::test]
async fn second_registry_in_the_cluster_needs_and_keeps_a_role_prefix() {
    let reg = registry();
    registry_created(reg);
    support::cluster().psql("postgres", "CREATE DATABASE second_registry");
    let env_owned = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            support::cluster().url("second_registry"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-two".to_owned(),
        ),
    ];
    let env = env_of(&env_owned);
    // tenant_default is the first registry's: refused, and nothing is left behind.
    fails(&env, &["init"], "--role-prefix");
    let su = superuser("second_registry").await;
    let leftover: bool = su
        .query_one("SELECT to_regnamespace('pgtenant') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!leftover, "a failed init left the registry schema behind");

    fails(
        &env,
        &["init", "--role-prefix", "Two"],
        "invalid role prefix",
    );
    assert!(ok(&env, &["init", "--role-prefix", "two_"]).contains("registry created"));
    assert!(ok(&env, &["init"]).contains("up to date"));
    fails(
        &env,
        &["init", "--role-prefix", "three_"],
        "cannot be changed",
    );
    let t = ok_json(&env, &["tenant", "create", "acme"]);
    assert_eq!(t["schema"], "tenant_acme");
    assert_eq!(t["role"], "two_tenant_acme");
    let d = ok_json(&env, &["tenant", "show", "default"]);
    assert_eq!(d["role"], "two_tenant_default");

    let (_, key) = issue(&env, "acme", &[]);
    let mut penv = env.clone();
    penv.push(("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG));
    let p = Proxy::start(&penv);
    let s = open_ok(&p, &key).await;
    let row = s
        .client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "two_tenant_acme");
    assert_eq!(row.get::<_, String>(1), "second_registry");
}

/// The shared registry exists (so `tenant_default` is taken cluster-wide).
fn registry_created(reg: &support::Registry) {
    assert_eq!(reg.db, "pgtenant_test");
}

#[tokio::test]
async fn legacy_schema_is_adopted_into_the_default_tenant_and_keeps_working() {
    let cluster = support::cluster();
    registry_created(registry());
    cluster.psql("postgres", "CREATE DATABASE legacy_test");
    let su = superuser("legacy_test").await;
    su.batch_execute(
        "CREATE TYPE status AS ENUM ('open', 'paid');
         CREATE DOMAIN money_amount AS numeric CHECK (VALUE >= 0);
         CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             customer_id int NOT NULL REFERENCES customers (id),
             amount money_amount NOT NULL,
             status status NOT NULL DEFAULT 'open');
         CREATE SEQUENCE invoice_numbers START 1000;
         CREATE VIEW customer_totals AS
             SELECT c.name, sum(o.amount) AS total FROM customers c JOIN orders o ON o.customer_id = c.id
              GROUP BY c.name;
         CREATE FUNCTION add_customer(n text) RETURNS int LANGUAGE sql
             AS $$ INSERT INTO customers (name) VALUES (n) RETURNING id $$;
         CREATE FUNCTION open_orders() RETURNS bigint LANGUAGE plpgsql
             AS $$ BEGIN RETURN (SELECT count(*) FROM orders WHERE status = 'open'); END $$;
         INSERT INTO customers (name) VALUES ('ada'), ('bob'), ('cy');
         INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'paid'), (1, 5, 'open'), (2, 7.5, 'open');
         SELECT nextval('invoice_numbers');",
    )
    .await
    .unwrap();
    // The legacy app's queries, unqualified, as it runs them today.
    const QUERIES: &[&str] = &[
        "SELECT id::text || ':' || name FROM customers ORDER BY id",
        "SELECT id::text || ':' || customer_id || ':' || amount || ':' || status FROM orders ORDER BY id",
        "SELECT name || '=' || total FROM customer_totals ORDER BY name",
        "SELECT open_orders()::text",
    ];
    let mut before = Vec::new();
    for q in QUERIES {
        before.push(column(&su, q).await);
    }

    let env_owned = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            cluster.url("legacy_test"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-leg".to_owned(),
        ),
    ];
    let env = env_of(&env_owned);
    ok(&env, &["init", "--role-prefix", "legacy_"]);

    // Dry run: lists, changes nothing.
    let catalog = "SELECT n.nspname || '.' || c.relname || ':' || pg_get_userbyid(c.relowner)
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('public', 'tenant_default') ORDER BY 1";
    let cat_before = column(&su, catalog).await;
    let dry = ok_json(&env, &["adopt-legacy", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let listed: Vec<String> = dry["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect();
    for expect in [
        "table customers",
        "table orders",
        "view customer_totals",
        "sequence invoice_numbers",
        "function add_customer(n text)",
        "function open_orders()",
        "enum type status",
        "domain money_amount",
    ] {
        assert!(
            listed.iter().any(|l| l == expect),
            "{expect} not in {listed:?}"
        );
    }
    // Owned sequences move with their table, not on their own.
    assert!(
        !listed.iter().any(|l| l.contains("customers_id_seq")),
        "{listed:?}"
    );
    let customers = dry["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "customers")
        .unwrap();
    assert_eq!(customers["moves_with"][0], "sequence customers_id_seq");
    assert!(ok(&env, &["adopt-legacy", "--dry-run"]).contains("would move"));
    assert_eq!(
        column(&su, catalog).await,
        cat_before,
        "--dry-run changed the catalog"
    );

    let done = ok_json(&env, &["adopt-legacy"]);
    assert_eq!(done["objects"].as_array().unwrap().len(), listed.len());
    assert_eq!(done["to_schema"], "tenant_default");
    assert_eq!(done["role"], "legacy_tenant_default");
    let moved = column(&su, catalog).await;
    assert!(
        moved
            .iter()
            .all(|l| l.starts_with("tenant_default.") && l.ends_with(":legacy_tenant_default")),
        "{moved:?}"
    );
    assert!(moved.contains(&"tenant_default.customers_id_seq:legacy_tenant_default".to_owned()));

    // Idempotent: the second run finds nothing and changes nothing.
    let again = ok_json(&env, &["adopt-legacy"]);
    assert_eq!(again["objects"].as_array().unwrap().len(), 0);
    assert!(ok(&env, &["adopt-legacy"]).contains("nothing to move"));
    assert_eq!(column(&su, catalog).await, moved);

    // The legacy app, unchanged, through the proxy with a default-tenant key.
    let (_, key) = issue(&env, "default", &[]);
    let mut penv = env.clone();
    penv.push(("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG));
    let p = Proxy::start(&penv);
    let app = open_ok(&p, &key).await;
    for (q, b) in QUERIES.iter().zip(&before) {
        assert_eq!(&column(&app.client, q).await, b, "{q}");
    }
    let id: i32 = app
        .client
        .query_one(
            "INSERT INTO customers (name) VALUES ('dee') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 4, "the serial continues where it was");
    let id: i32 = app
        .client
        .query_one("SELECT add_customer('eve')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 5);
    let row = app
        .client
        .query_one(
            "INSERT INTO orders (customer_id, amount) VALUES (4, 1) RETURNING id, status::text, nextval('invoice_numbers')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, String>(1), "open");
    assert_eq!(row.get::<_, i64>(2), 1001);
    let counts = column(&su, "SELECT (SELECT count(*) FROM tenant_default.customers) || '/' || (SELECT count(*) FROM tenant_default.orders)").await;
    assert_eq!(counts, ["5/4"], "rows lost or duplicated");
}

/// First column of every row, as text.
async fn column(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

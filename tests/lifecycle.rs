//! Acceptance tests of the tenant lifecycle (issue 3) against a real
//! PostgreSQL: the live effect of registry changes on every proxy, key
//! expiry and rotation, last_used_at batching. The admin CLI's own
//! behaviour is in `tests/cli.rs`.
//!
//! Proxies here trust their cache for 10 minutes and refresh every 10
//! minutes unless a test says otherwise, so anything that happens within a
//! second can only be the LISTEN/NOTIFY path (or expiry tracking).

mod support;

use std::time::{Duration, Instant};

use support::lifecycle::*;
use support::registry;

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
    // The ended session's server connection closed as it came back, not
    // kept idle for a tenant nobody may use.
    let su = support::cluster().connect(&reg.db).await;
    let role = format!("tenant_{t}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = support::role_connections_on(&su, &role).await;
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} connections of a deactivated tenant stay open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = ok_json(&env, &["tenant", "show", &t]);
    assert_eq!(v["active"], false);

    assert!(ok(&env, &["tenant", "deactivate", &t]).contains("already inactive"));
    assert!(ok(&env, &["tenant", "activate", &t]).contains("activated"));
    let s = accepted_by(&p, &key, Instant::now() + Duration::from_secs(1)).await;
    assert!(alive(&s).await);
}

/// A change to a tenant that leaves it active, with the same role and
/// schema (here its metadata), keeps its pooled connections, and so does
/// a notification that only claims a change.
#[tokio::test]
async fn a_tenant_change_that_keeps_it_active_keeps_its_pooled_connections() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("meta");
    let (_, key) = issue(&env, &t, &[]);
    let p = proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let s = open_ok(&p, &key).await;
    async fn pid(s: &Session) -> i32 {
        let row = s.client.query_one("SELECT pg_backend_pid()", &[]);
        row.await.unwrap().get(0)
    }
    let first = pid(&s).await;
    let su = support::cluster().connect(&reg.db).await;
    su.execute(
        "UPDATE pgtenant.tenants SET metadata = '{\"plan\": \"pro\"}' WHERE name = $1",
        &[&t],
    )
    .await
    .unwrap();
    // The notification arrives; the tenant's role and schema are the
    // same, so the idle connection stays, and so does the session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alive(&s).await,
        "a change that keeps the tenant active ended a session"
    );
    for _ in 0..3 {
        assert_eq!(pid(&s).await, first, "the connection was not pooled again");
    }
    // Any role may NOTIFY on the registry's channel: a claim of a change
    // costs a registry query, not the tenant's connections.
    let id: uuid::Uuid = su
        .query_one("SELECT id FROM pgtenant.tenants WHERE name = $1", &[&t])
        .await
        .unwrap()
        .get(0);
    su.batch_execute(&format!("NOTIFY pgtenant_registry, 'tenant:{id}'"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pid(&s).await, first, "a forged notification closed it");
    // A real change of what the connection is (inactive) closes it.
    su.execute(
        "UPDATE pgtenant.tenants SET active = false WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let e = refused_by(&p, &key, Instant::now() + Duration::from_secs(2)).await;
    assert_eq!(code(&e), "28000");
}

/// The registry edited by hand to give a tenant another schema: new
/// sessions get it (the pool's connections, opened with the old
/// `search_path`, are not theirs), with a pooled connection already idle;
/// a session of the old schema still running keeps the schema it logged
/// in with, on pooled connections (not a new one per transaction).
#[tokio::test]
async fn a_tenant_moved_to_another_schema_gets_it_in_new_sessions() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("moved");
    let (_, key) = issue(&env, &t, &[]);
    async fn schema_and_pid(s: &Session) -> (String, i32) {
        let sql = "SELECT current_schema()::text, pg_backend_pid()";
        let row = s.client.query_one(sql, &[]).await.unwrap();
        (row.get(0), row.get(1))
    }
    for mode in ["transaction", "session"] {
        // Two: in session mode the old session holds one, and a login
        // before the change arrives takes the other.
        let p = proxy(&[("PGTENANT_POOL_MODE", mode), ("PGTENANT_POOL_SIZE", "2")]);
        let su = support::cluster().connect(&reg.db).await;
        let now: String = su
            .query_one(
                "SELECT schema_name::text FROM pgtenant.tenants WHERE name = $1",
                &[&t],
            )
            .await
            .unwrap()
            .get(0);
        let moved = format!("{now}_x");
        let old = open_ok(&p, &key).await;
        let (got, old_pid) = schema_and_pid(&old).await;
        assert_eq!(got, now);
        su.batch_execute(&format!(
            "CREATE SCHEMA {moved} AUTHORIZATION tenant_{t}; \
             UPDATE pgtenant.tenants SET schema_name = '{moved}' WHERE name = '{t}'"
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let new = open_ok(&p, &key).await;
            let (got, pid) = schema_and_pid(&new).await;
            if got == moved {
                assert_ne!(pid, old_pid);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: new sessions still get {got}\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // (Its idle connection closed at the change: one new connection.)
        let again = schema_and_pid(&old).await;
        assert_eq!(again.0, now, "{mode}: the running session moved");
        for _ in 0..3 {
            let got = schema_and_pid(&old).await;
            assert_eq!(got, again, "{mode}: not pooled, or moved");
        }
        su.batch_execute(&format!(
            "UPDATE pgtenant.tenants SET schema_name = '{now}' WHERE name = '{t}'; \
             DROP SCHEMA {moved}"
        ))
        .await
        .unwrap();
    }
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
    let p = proxy(&[("PGTENANT_ADMIN_PASSWORD", "console-password")]);
    let console = p.client_db("console-password", "pgtenant").await.unwrap();
    let s = open_ok(&p, &key).await;
    s.client
        .batch_execute("CREATE TABLE notes (x int); INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    assert!(pool_listed(&console, &t).await);

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
    // Its pool goes too, once its last connection closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool_listed(&console, &t).await {
        assert!(Instant::now() < deadline, "the dropped tenant's pool stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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

/// Whether the admin console's SHOW POOLS has a line for `tenant`.
async fn pool_listed(console: &tokio_postgres::Client, tenant: &str) -> bool {
    let rows = console.simple_query("SHOW POOLS").await.unwrap();
    rows.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some(tenant),
        _ => false,
    })
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

/// A tenant dropped while its sessions run on, and another made under its
/// name: the new role has the old one's name, and password. A session of
/// the first must never log in to the second.
#[tokio::test]
async fn a_session_of_a_dropped_tenant_never_reaches_one_made_under_its_name() {
    let env = registry().env_refs();
    let t = registry().create_tenant("reborn");
    let (_, key) = issue(&env, &t, &[]);
    let p = proxy(&[
        ("PGTENANT_REGISTRY_ON_REVOKE", "keep"),
        ("PGTENANT_POOL_MODE", "transaction"),
    ]);
    let old = open_ok(&p, &key).await;
    assert!(alive(&old).await);
    ok(&env, &["tenant", "drop", &t, "--yes"]);
    ok(&env, &["tenant", "create", &t]);
    let (_, new_key) = issue(&env, &t, &[]);
    let new = open_ok(&p, &new_key).await;
    let table = "CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('the new tenant')";
    new.client.batch_execute(table).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the watcher has read the drop
    let read = old.client.simple_query("SELECT s FROM secrets").await;
    let e = read.expect_err("the old session read the new tenant's table");
    assert_eq!(code(&e), "57P01", "{e:?}\nproxy log:\n{}", p.log());
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
    // The proxy first, and an expiry long enough for the login to come
    // before it on a loaded machine.
    let p = proxy(&[]);
    let (id, key) = issue(&env, &t, &["--expires", "4s"]);
    let issued = Instant::now();
    let s = open_ok(&p, &key).await;
    let keys = ok_json(&env, &["key", "list", "--tenant", &t]);
    assert_eq!(keys[0]["id"], id.as_str());
    assert!(keys[0]["expires_at"].is_string());

    let deadline = issued + Duration::from_millis(5500);
    let e = refused_by(&p, &key, deadline).await;
    assert_eq!(code(&e), "28P01");
    assert!(
        issued.elapsed() >= Duration::from_millis(3500),
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

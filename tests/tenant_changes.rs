//! Acceptance tests of the tenant lifecycle (issue 3) against a real
//! PostgreSQL, for tenants: what a deactivated, edited, moved or dropped
//! tenant's sessions and pools become, on every proxy. Keys and users are
//! in `tests/lifecycle.rs`, the admin CLI's own behaviour in
//! `tests/cli.rs`.
//!
//! Proxies here trust their cache for 10 minutes and refresh every 10
//! minutes unless a test says otherwise, so anything that happens within a
//! second can only be the LISTEN/NOTIFY path.

mod support;

use std::time::{Duration, Instant};

use support::lifecycle::*;
use support::registry;

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

/// The same, with the registry's notification of the drop lost: the
/// periodic refresh reads the pooled tenants again and finds it gone.
#[tokio::test]
async fn a_dropped_tenant_whose_notification_was_lost_is_found_gone_by_the_refresh() {
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("lostdrop");
    let (_, key) = issue(&env, &t, &[]);
    let p = proxy(&[
        ("PGTENANT_REGISTRY_ON_REVOKE", "keep"),
        ("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", "300"),
        ("PGTENANT_POOL_MODE", "transaction"),
    ]);
    let old = open_ok(&p, &key).await;
    assert!(alive(&old).await);
    // session_replication_role = replica skips the registry's triggers:
    // the rows go without a notification; the role and schema as `tenant
    // drop` removes them. The old role's pooled connections end too (as
    // they would at their `server_lifetime`), so the old session's next
    // transaction needs a new one.
    let su = superuser(&reg.db).await;
    su.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'tenant_{t}'; \
         SET session_replication_role = replica; \
         DELETE FROM pgtenant.api_keys WHERE tenant_id = (SELECT id FROM pgtenant.tenants WHERE name = '{t}'); \
         DELETE FROM pgtenant.tenants WHERE name = '{t}'; \
         DROP SCHEMA tenant_{t} CASCADE; DROP OWNED BY tenant_{t}; DROP ROLE tenant_{t}"
    ))
    .await
    .unwrap();
    ok(&env, &["tenant", "create", &t]);
    let (_, new_key) = issue(&env, &t, &[]);
    let new = open_ok(&p, &new_key).await;
    let table = "CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('the new tenant')";
    new.client.batch_execute(table).await.unwrap();
    // Refreshed three times or more; and the old session's connection,
    // idle for over a second, is probed before it is handed out again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let read = old.client.simple_query("SELECT s FROM secrets").await;
    let e = read.expect_err("the old session read the new tenant's table");
    assert_eq!(
        (code(&e).as_str(), message(&e)),
        ("57P01", format!("pgtenant: tenant \"{t}\" was dropped")),
        "{e:?}\nproxy log:\n{}",
        p.log()
    );
}

//! Acceptance tests of the tenant lifecycle (issue 3) against a real
//! PostgreSQL, for keys and users: the live effect of registry changes on
//! every proxy, key expiry and rotation, last_used_at batching. Tenants'
//! own changes are in `tests/tenant_changes.rs`, the admin CLI's
//! behaviour in `tests/cli.rs`.
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

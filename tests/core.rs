//! Acceptance tests of the core proxy against a real PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use support::{registry, sqlstate};
use tokio_postgres::{Client, NoTls, error::SqlState};

/// A tokio-postgres client through the proxy, the key as the password.
async fn superuser() -> Client {
    support::cluster().connect(&registry().db).await
}

#[tokio::test]
async fn session_is_pinned_to_the_tenants_schema_and_role() {
    let reg = registry();
    let (a, b) = (reg.create_tenant("pin_a"), reg.create_tenant("pin_b"));
    let (ka, kb) = (reg.issue_key(&a), reg.issue_key(&b));
    // No firewall: this is about what Postgres itself enforces.
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "off")]);

    let ca = proxy.client_ok(&ka).await;
    let row = ca
        .query_one(
            "SELECT current_setting('search_path'), current_user::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("tenant_{a}"));
    assert_eq!(row.get::<_, String>(1), format!("tenant_{a}"));
    ca.batch_execute("CREATE TABLE t (secret text); INSERT INTO t VALUES ('marker-a')")
        .await
        .unwrap();
    let su = superuser().await;
    let schema: String = su
        .query_one(
            "SELECT schemaname::text FROM pg_tables WHERE tablename = 't' AND tableowner = $1",
            &[&format!("tenant_{a}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, format!("tenant_{a}"));

    // Role isolation holds with no firewall at all: Postgres refuses.
    let cb = proxy.client_ok(&kb).await;
    let err = cb
        .query(&format!("SELECT * FROM tenant_{a}.t"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    // …and the session is still usable afterwards.
    assert_eq!(
        cb.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

/// The schema and `standard_conforming_strings` are given at the backend
/// login, not left to the role's defaults: a role may change its own
/// (`ALTER ROLE CURRENT_USER SET …`, from dynamic SQL the firewall can't
/// read), and the next connection must still be the tenant's schema alone,
/// also after the client's `RESET ALL`.
#[tokio::test]
async fn role_defaults_can_not_move_the_schema_pin() {
    let reg = registry();
    let t = reg.create_tenant("roledefault");
    let key = reg.issue_key(&t);
    let role = format!("tenant_{t}");
    let su = superuser().await;
    su.batch_execute(&format!(
        "ALTER ROLE {role} SET search_path = public, {role}; \
         ALTER ROLE {role} SET standard_conforming_strings = off"
    ))
    .await
    .unwrap();
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "off")]);
    let c = proxy.client_ok(&key).await;
    let probe = "SELECT array_to_string(current_schemas(false), ','), \
                 current_setting('standard_conforming_strings')";
    for step in ["login", "RESET ALL", "DISCARD ALL"] {
        if step != "login" {
            c.batch_execute(step).await.unwrap();
        }
        let row = c.query_one(probe, &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), role, "{step}");
        assert_eq!(row.get::<_, String>(1), "on", "{step}");
    }
    su.batch_execute(&format!("ALTER ROLE {role} RESET ALL"))
        .await
        .unwrap();
}

#[tokio::test]
async fn key_as_startup_option_works_and_never_reaches_the_backend() {
    let reg = registry();
    let t = reg.create_tenant("opt");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.addr.port())
        .user("someone")
        .dbname("app")
        .options(format!(
            "-c pgtenant.api_key={key} -c statement_timeout=4321"
        ));
    let (client, conn) = cfg.connect(NoTls).await.expect("login with key in options");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('pgtenant.api_key', true), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("tenant_{t}"));
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "the key reached the backend"
    );
    assert_eq!(
        row.get::<_, String>(2),
        "4321ms",
        "other options are applied"
    );
    let err = client
        .simple_query("SHOW pgtenant.api_key")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT), "{err:?}");
    // Nor can it be read from the backend's view of the connection.
    let su = superuser().await;
    let leaked: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 OR application_name LIKE $1",
            &[&format!("%{key}%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn bad_keys_are_refused_with_the_right_sqlstate() {
    let reg = registry();
    let t = reg.create_tenant("bad");
    let proxy = reg.proxy(&[]);
    let unknown = format!("pgt_{}", "A".repeat(43));

    let e = proxy.client(&unknown).await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    let unknown_text = e.as_db_error().unwrap().message().to_owned();

    let e = proxy.client("not-even-a-key").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    let e = proxy.client("").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01", "{e:?}");

    // A revoked key reads exactly like an unknown one.
    let key = reg.issue_key(&t);
    proxy.client_ok(&key).await;
    let id = key_id(&key).await;
    let out = support::pgtenant_cli(&["key", "revoke", &id], &reg.env_refs());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let e = loop {
        match proxy.client(&key).await {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("revoked key still accepted after 3 s"),
        }
    };
    assert_eq!(sqlstate(&e), "28P01");
    assert_eq!(e.as_db_error().unwrap().message(), unknown_text);

    // An inactive tenant: 28000, and its name in the message.
    let t2 = reg.create_tenant("inactive");
    let key2 = reg.issue_key(&t2);
    let out = support::pgtenant_cli(&["tenant", "deactivate", &t2], &reg.env_refs());
    assert!(out.status.success());
    let e = proxy.client(&key2).await.unwrap_err();
    assert_eq!(sqlstate(&e), "28000");
    assert!(e.as_db_error().unwrap().message().contains(&t2));
    assert!(
        !proxy.log().contains(&key2) && !proxy.log().contains(&key),
        "a key reached the log"
    );
}

async fn key_id(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let id: uuid::Uuid = superuser()
        .await
        .query_one(
            "SELECT id FROM pgtenant.api_keys WHERE key_hash = $1",
            &[&hash],
        )
        .await
        .unwrap()
        .get(0);
    id.to_string()
}

#[tokio::test]
async fn session_pool_hands_the_next_client_a_clean_connection() {
    let reg = registry();
    let (a, b) = (reg.create_tenant("reuse_a"), reg.create_tenant("reuse_b"));
    let (ka, kb) = (reg.issue_key(&a), reg.issue_key(&b));
    // The firewall would refuse SET search_path / SET ROLE: off, to test the reset.
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_FIREWALL_MODE", "off"),
    ]);

    let c1 = proxy.client_ok(&ka).await;
    let pid1: i32 = c1
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    c1.batch_execute(
        "SET search_path = public; SET statement_timeout = 1234; CREATE TEMP TABLE tmp (x int);
         SELECT pg_advisory_lock(4242); LISTEN chan; PREPARE p AS SELECT 1;",
    )
    .await
    .unwrap();
    let e = c1.batch_execute("SET ROLE postgres").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    drop(c1);

    // Tenant B must never get A's connection.
    let cb = proxy.client_ok(&kb).await;
    let pid_b: i32 = cb
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid_b, pid1);

    let c2 = proxy.client_ok(&ka).await;
    let row = c2
        .query_one(
            "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('statement_timeout'),
                    to_regclass('pg_temp.tmp') IS NULL, NOT EXISTS (SELECT 1 FROM pg_listening_channels()),
                    NOT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = 'p'), current_user::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        pid1,
        "pool_size 1: the same connection is reused"
    );
    assert_eq!(row.get::<_, String>(1), format!("tenant_{a}"));
    assert_eq!(row.get::<_, String>(2), "0");
    assert!(row.get::<_, bool>(3), "temp table survived");
    assert!(row.get::<_, bool>(4), "LISTEN survived");
    assert!(row.get::<_, bool>(5), "prepared statement survived");
    assert_eq!(row.get::<_, String>(6), format!("tenant_{a}"));
    let locks: i64 = superuser()
        .await
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "advisory lock survived");
}

#[tokio::test]
async fn copy_in_and_out_match_a_direct_run_byte_for_byte() {
    use futures_util::{SinkExt, StreamExt, pin_mut};
    let reg = registry();
    let t = reg.create_tenant("copy");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let c = proxy.client_ok(&key).await;
    c.batch_execute("CREATE TABLE big (id int, body text)")
        .await
        .unwrap();

    let mut data = Vec::new();
    for i in 0..100_000 {
        data.extend_from_slice(format!("{i}\trow {i} with some text \\t and a tab\n").as_bytes());
    }
    let sink = c.copy_in("COPY big FROM STDIN").await.unwrap();
    pin_mut!(sink);
    for chunk in data.chunks(64 * 1024) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 100_000);

    async fn copy_out(c: &Client, sql: &str) -> Vec<u8> {
        let stream = c.copy_out(sql).await.unwrap();
        pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }
    let via_proxy = copy_out(&c, "COPY (SELECT * FROM big ORDER BY id) TO STDOUT").await;
    let direct = copy_out(
        &superuser().await,
        &format!("COPY (SELECT * FROM tenant_{t}.big ORDER BY id) TO STDOUT"),
    )
    .await;
    assert_eq!(via_proxy.len(), data.len());
    assert!(
        via_proxy == direct && via_proxy == data,
        "COPY output differs"
    );
}

#[tokio::test]
async fn cancel_request_reaches_only_the_right_query() {
    let reg = registry();
    let t = reg.create_tenant("cancel");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);

    // A forged cancel (right pid, wrong secret) cancels nothing.
    let (mut s, pid, secret) = support::raw::startup(proxy.addr, &key).await;
    support::raw::query(&mut s, "SELECT pg_sleep(1.5)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::raw::cancel(proxy.addr, pid, secret.wrapping_add(1)).await;
    support::raw::cancel(proxy.addr, pid.wrapping_add(1), secret).await;
    assert_eq!(
        support::raw::until_ready(&mut s).await,
        None,
        "a forged cancel cancelled the query"
    );

    // The real key cancels a 30 s sleep at once.
    let started = Instant::now();
    support::raw::query(&mut s, "SELECT pg_sleep(30)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::raw::cancel(proxy.addr, pid, secret).await;
    let err = support::raw::until_ready(&mut s)
        .await
        .expect("the query was cancelled");
    assert!(err.contains("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // tokio-postgres' own cancel token works too.
    let c = proxy.client_ok(&key).await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let e = c.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED));
    canceller.await.unwrap().unwrap();
}

/// A cancel that races the end of its statement (a driver's timeout)
/// lands after it: the connection it goes to is not handed to the next
/// client meanwhile, whose statement it would stop. A tap between the
/// proxy and PostgreSQL holds cancel requests back for a second.
#[tokio::test]
async fn a_late_cancel_never_stops_the_next_clients_statement() {
    use support::tap::{Event, Tap};
    let cluster = support::cluster();
    let reg = registry();
    let tap = Tap::start_with(cluster.port, Duration::ZERO, Duration::from_secs(1)).await;
    let url = tap.url(&cluster.url(&reg.db), cluster.port);
    let t = reg.create_tenant("latecancel");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_BACKEND_URL", url.as_str()),
        ("PGTENANT_BACKEND_TLS", "disable"),
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let (mut a, pid, secret) = support::raw::startup(proxy.addr, &key).await;
    support::raw::query(&mut a, "SELECT pg_sleep(0.4)").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cancel = tokio::spawn(support::raw::cancel(proxy.addr, pid, secret));
    // The statement ends before its cancel reaches the server.
    assert_eq!(support::raw::until_ready(&mut a).await, None);
    let b = proxy.client_ok(&key).await;
    let slept = b.simple_query("SELECT pg_sleep(1.5)").await;
    assert!(
        slept.is_ok(),
        "the late cancel stopped the next client's statement: {slept:?}"
    );
    cancel.await.unwrap();
    // It was forwarded (found the statement running), and landed late.
    let forwarded = tap
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Opened { code: 80877102, .. }))
        .count();
    assert_eq!(forwarded, 1, "{:?}", tap.events());
}

async fn open_transactions_of(role: &str) -> i64 {
    superuser()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND (xact_start IS NOT NULL OR state <> 'idle')",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_client_killed_mid_transaction_leaves_nothing_behind() {
    let reg = registry();
    let t = reg.create_tenant("kill");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let role = format!("tenant_{t}");
    let c = proxy.client_ok(&key).await;
    c.batch_execute(
        "CREATE TABLE acct (id int primary key, n int); INSERT INTO acct VALUES (1, 0)",
    )
    .await
    .unwrap();
    drop(c);

    // Idle in a transaction holding a row lock, then the socket just closes.
    let (mut s, _, _) = support::raw::startup(proxy.addr, &key).await;
    support::raw::query(&mut s, "BEGIN; UPDATE acct SET n = n + 1 WHERE id = 1;").await;
    assert_eq!(support::raw::until_ready(&mut s).await, None);
    drop(s);
    // Mid-query this time: a long statement still running when the socket closes.
    let (mut s, _, _) = support::raw::startup(proxy.addr, &key).await;
    support::raw::query(&mut s, "BEGIN; LOCK TABLE acct; SELECT pg_sleep(30);").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);

    let deadline = Instant::now() + Duration::from_secs(5);
    while open_transactions_of(&role).await > 0 {
        assert!(
            Instant::now() < deadline,
            "a transaction of {role} is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The row is unlocked and the update was rolled back.
    let c = proxy.client_ok(&key).await;
    c.batch_execute("SET lock_timeout = '1s'").await.unwrap();
    let n: i32 = c
        .query_one("UPDATE acct SET n = n WHERE id = 1 RETURNING n", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// The server refusing the tenant role's own login (its password changed
/// behind the proxy's back) is the proxy's failure: the client gets 08006
/// and a pointer to the proxy's log, not a 28P01 that says its key is
/// wrong, and the role's name stays out of the message.
#[tokio::test]
async fn a_backend_login_refusal_is_not_passed_off_as_a_bad_key() {
    let reg = registry();
    let t = reg.create_tenant("rolepw");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    superuser()
        .await
        .batch_execute(&format!(
            "ALTER ROLE tenant_{t} PASSWORD 'changed-behind-its-back'"
        ))
        .await
        .unwrap();
    let e = proxy.client(&key).await.expect_err("no backend login");
    assert_eq!(sqlstate(&e), "08006", "{e:?}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("refused the tenant's backend login"), "{msg}");
    assert!(!msg.contains(&format!("tenant_{t}")), "{msg}");
    assert!(
        proxy
            .log()
            .contains("the server refused the tenant role's login"),
        "{}",
        proxy.log()
    );
}

/// Any other failure to open a server connection reaches the client with
/// the server's code and goes to the proxy's log (here the role's
/// connection limit: the operator, not the client, can fix that).
#[tokio::test]
async fn a_failed_server_connection_is_logged() {
    let reg = registry();
    let t = reg.create_tenant("connlimit");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let su = superuser().await;
    su.batch_execute(&format!("ALTER ROLE tenant_{t} CONNECTION LIMIT 0"))
        .await
        .unwrap();
    let e = proxy.client(&key).await.expect_err("no backend login");
    su.batch_execute(&format!("ALTER ROLE tenant_{t} CONNECTION LIMIT -1"))
        .await
        .unwrap();
    assert_eq!(sqlstate(&e), "53300", "{e:?}");
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|l| l.contains("server connection failed") && l.contains(&t)),
        "{log}"
    );
    proxy.client_ok(&key).await;
}

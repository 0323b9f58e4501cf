//! Transaction pooling against a real PostgreSQL: many clients over few
//! connections and their waits for one, named prepared statements across
//! connections, pinning.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use support::registry;
use tokio_postgres::Client;

/// Samples how many backend connections `role` has until `stop`; returns the peak.
fn watch_connections(role: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let su = support::cluster().connect(&registry().db).await;
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(support::role_connections_on(&su, &role).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_five_connections() {
    let reg = registry();
    let t = reg.create_tenant("many");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "5"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "30000"),
    ]);
    let setup = proxy.client_ok(&key).await;
    setup
        .batch_execute("CREATE TABLE counter (id int PRIMARY KEY, n bigint); INSERT INTO counter VALUES (1, 0); CREATE TABLE log (client int, i int)")
        .await
        .unwrap();
    drop(setup);

    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_connections(format!("tenant_{t}"), stop.clone());
    let expected = Arc::new(AtomicI64::new(0));
    let mut clients = Vec::new();
    for c in 0..200 {
        let (addr_proxy, key, expected) = (proxy.addr, key.clone(), expected.clone());
        clients.push(tokio::spawn(async move {
            let mut client = support::client_at(addr_proxy.port(), &key, "app")
                .await
                .expect("connect");
            for i in 0..5 {
                let tx = client.transaction().await.unwrap();
                tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[])
                    .await
                    .unwrap();
                tx.execute("INSERT INTO log VALUES ($1, $2)", &[&c, &i])
                    .await
                    .unwrap();
                let n: i64 = tx
                    .query_one("SELECT count(*) FROM log WHERE client = $1", &[&c])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, i as i64 + 1, "client {c} sees its own rows");
                tx.commit().await.unwrap();
                expected.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for c in clients {
        c.await.expect("client task");
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let check = proxy.client_ok(&key).await;
    let n: i64 = check
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    assert_eq!(expected.load(Ordering::Relaxed), 1000);
    assert!(
        peak <= 5,
        "Postgres saw {peak} connections of the tenant (pool_size 5)"
    );
    assert!(peak >= 1);
    // Short transactions back to back too: a connection handed on to a
    // waiting client is not closed and replaced by a new login, so the
    // same five serve everything.
    let pids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (port, key, pids) = (proxy.addr.port(), key.clone(), pids.clone());
        clients.push(tokio::spawn(async move {
            let client = support::client_at(port, &key, "app").await.unwrap();
            for _ in 0..50 {
                let row = client.query_one("SELECT pg_backend_pid()", &[]).await;
                pids.lock().unwrap().insert(row.unwrap().get::<_, i32>(0));
            }
        }));
    }
    for c in clients {
        c.await.expect("client task");
    }
    let pids = pids.lock().unwrap().len();
    assert!(
        pids <= 5,
        "{pids} server connections served the transactions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_work_across_connections() {
    let reg = registry();
    let t = reg.create_tenant("prep");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "3"),
        ("PGTENANT_PREPARED_STATEMENTS_PER_CONNECTION", "4"),
    ]);
    let setup = proxy.client_ok(&key).await;
    setup
        .batch_execute("CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..12 {
        let (proxy_port, key) = (proxy.addr.port(), key.clone());
        tasks.push(tokio::spawn(async move {
            let client = support::client_at(proxy_port, &key, "app")
                .await
                .expect("connect");
            // tokio-postgres prepares named statements ("s0", "s1", …) and
            // reuses them; more distinct statements than the per-connection
            // cache holds forces evictions and re-prepares.
            let stmts = [
                client
                    .prepare("SELECT v FROM kv WHERE k = $1")
                    .await
                    .unwrap(),
                client
                    .prepare("SELECT count(*) FROM kv WHERE k < $1")
                    .await
                    .unwrap(),
                client
                    .prepare("SELECT k FROM kv WHERE v = $1::text")
                    .await
                    .unwrap(),
                client
                    .prepare("UPDATE kv SET v = v WHERE k = $1")
                    .await
                    .unwrap(),
                client
                    .prepare(&format!("SELECT {c} + $1::int"))
                    .await
                    .unwrap(),
            ];
            for i in 1..=40i32 {
                let k = (i * 7 + c) % 100 + 1;
                let v: String = client.query_one(&stmts[0], &[&k]).await.unwrap().get(0);
                assert_eq!(v, format!("v{k}"));
                let n: i64 = client.query_one(&stmts[1], &[&k]).await.unwrap().get(0);
                assert_eq!(n, (k - 1) as i64);
                let back: i32 = client
                    .query_one(&stmts[2], &[&format!("v{k}")])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(back, k);
                assert_eq!(client.execute(&stmts[3], &[&k]).await.unwrap(), 1);
                let sum: i32 = client.query_one(&stmts[4], &[&i]).await.unwrap().get(0);
                assert_eq!(sum, c + i);
            }
            // Closing a statement is answered by the proxy; the others still work.
            drop(stmts);
            let again = client
                .prepare("SELECT v FROM kv WHERE k = $1")
                .await
                .unwrap();
            let v: String = client.query_one(&again, &[&5i32]).await.unwrap().get(0);
            assert_eq!(v, "v5");
        }));
    }
    for t in tasks {
        t.await.expect("prepared-statement client");
    }
}

/// A DISCARD ALL or DEALLOCATE that fails leaves the server's prepared
/// statements in place: preparing them again must not fail with 42P05,
/// for this client or the next one on the connection.
#[tokio::test]
async fn a_failed_discard_or_deallocate_leaves_prepared_statements_usable() {
    let reg = registry();
    let t = reg.create_tenant("undrop");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let plus_one = async |c: &Client, n: i32| -> i32 {
        let st = c.prepare("SELECT $1::int + 1").await.unwrap();
        match c.query_one(&st, &[&n]).await {
            Ok(row) => row.get(0),
            Err(e) => panic!("{e:?}\n{}", proxy.log()),
        }
    };
    let c = proxy.client_ok(&key).await;
    assert_eq!(plus_one(&c, 1).await, 2);
    let e = c.batch_execute("BEGIN; DISCARD ALL").await.unwrap_err();
    assert_eq!(support::sqlstate(&e), "25001", "{e:?}");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(plus_one(&c, 2).await, 3);
    let e = c.batch_execute("DEALLOCATE pgt_0").await.unwrap_err();
    assert_eq!(support::sqlstate(&e), "26000", "{e:?}");
    assert_eq!(plus_one(&c, 3).await, 4);
    drop(c);
    let next = proxy.client_ok(&key).await;
    assert_eq!(plus_one(&next, 4).await, 5);
}

#[tokio::test]
async fn session_state_never_reaches_the_next_client() {
    let reg = registry();
    let t = reg.create_tenant("leak");
    let key = reg.issue_key(&t);
    // Firewall off: SET search_path is one of the leaks under test.
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_FIREWALL_MODE", "off"),
    ]);
    let probe = "SELECT pg_backend_pid(), current_setting('statement_timeout'), current_setting('search_path'),
                        NOT EXISTS (SELECT 1 FROM pg_listening_channels()),
                        NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
                        to_regclass('pg_temp.tmp') IS NULL";
    let first = proxy.client_ok(&key).await;
    let pid: i32 = first
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(first);

    for leaves in [
        "SET statement_timeout = 1234",
        "SET search_path = public",
        "SELECT pg_advisory_lock(77)",
        "LISTEN chan",
        "CREATE TEMP TABLE tmp (x int)",
        "SELECT 1 AS x INTO TEMP tmp",
        "CREATE TABLE pg_temp.tmp (x int)",
        "EXPLAIN ANALYZE CREATE TEMP TABLE tmp AS SELECT 1",
        "DO $$BEGIN CREATE TEMP TABLE tmp (x int); END$$",
        "DO $$DECLARE n int; BEGIN CREATE TEMP TABLE tmp (x int); END$$",
        "SELECT 1 AS x INTO pg_temp.tmp",
        "/* /* */ x */ CREATE TEMP TABLE tmp (x int)",
        "/* report */ SELECT 1 AS x INTO TEMP tmp",
        // One statement per line, each its own Query: an unqualified
        // CREATE TABLE is temporary behind a search_path through pg_temp.
        "SET search_path = pg_temp, public\nCREATE TABLE tmp (x int)",
        "BEGIN\nSET LOCAL search_path = pg_temp\nCREATE TABLE tmp (x int)\nCOMMIT",
        "SELECT set_config('search_path', 'pg_temp', false)\nCREATE TABLE tmp (x int)",
    ] {
        let c = proxy.client_ok(&key).await;
        for statement in leaves.lines() {
            c.batch_execute(statement).await.unwrap();
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = proxy.client_ok(&key).await;
        let row = next.query_one(probe, &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), pid, "pool of one: same connection");
        assert_eq!(row.get::<_, String>(1), "0", "after {leaves}");
        assert_eq!(
            row.get::<_, String>(2),
            format!("tenant_{t}"),
            "after {leaves}"
        );
        assert!(row.get::<_, bool>(3), "LISTEN leaked after {leaves}");
        assert!(row.get::<_, bool>(4), "advisory lock leaked after {leaves}");
        assert!(row.get::<_, bool>(5), "temp table leaked after {leaves}");
    }

    // A client killed mid-transaction: its transaction is gone for the next one.
    let c = proxy.client_ok(&key).await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS acct (id int PRIMARY KEY, n int); INSERT INTO acct VALUES (1, 0) ON CONFLICT DO NOTHING")
        .await
        .unwrap();
    c.batch_execute("BEGIN; UPDATE acct SET n = n + 1 WHERE id = 1")
        .await
        .unwrap();
    drop(c);
    let next = proxy.client_ok(&key).await;
    next.batch_execute("SET LOCAL lock_timeout = '2s'")
        .await
        .unwrap();
    let n: i32 = next
        .query_one("SELECT n FROM acct WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the killed client's update was rolled back");
}

#[tokio::test]
async fn pgbench_prepared_runs_clean_in_transaction_mode() {
    let reg = registry();
    let t = reg.create_tenant("pgb");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "2"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "5000"),
    ]);
    let pgbench = support::cluster().bindir.join("pgbench");
    let run = |args: &[&str]| {
        std::process::Command::new(&pgbench)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &proxy.addr.port().to_string(),
                "-U",
                "app",
            ])
            .args(args)
            .arg("app")
            .env("PGPASSWORD", &key)
            .output()
            .expect("run pgbench")
    };
    let init = run(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&init.stderr),
        proxy.log()
    );
    // Eight clients on one thread over two connections: pgbench -M
    // prepared prepares synchronously, blocking its whole thread; the
    // proxy answers that prepare without a connection, so clients of the
    // same thread that hold both connections can go on.
    for mode in ["simple", "extended", "prepared"] {
        let out = run(&["-M", mode, "-c", "8", "-j", "1", "-t", "50"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "-M {mode}: {text}\n{}", proxy.log());
        assert!(
            text.contains("number of failed transactions: 0") || !text.contains("failed"),
            "{text}"
        );
        assert!(
            text.contains("number of transactions actually processed: 400/400"),
            // 8 clients x 50
            "-M {mode}: {text}"
        );
    }
}

/// A bare prepare (Parse … Sync) with no connection attached is answered
/// by the proxy: refusals and ParseComplete as the server would send them;
/// a statement the server rejects fails where it is first used.
#[tokio::test]
async fn a_bare_prepare_is_answered_without_a_connection() {
    use postgres_protocol::message::frontend;
    use support::raw;
    let reg = registry();
    let t = reg.create_tenant("bareprep");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", "transaction")]);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    let parse = |b: &mut bytes::BytesMut, name: &str, sql: &str| {
        frontend::parse(name, sql, [], b).unwrap();
    };
    raw::send(&mut s, |b| {
        parse(b, "one", "SELECT 1");
        parse(b, "two", "SELECT 2");
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "11Z");
    // Refused by the firewall: the rest up to Sync is skipped, as the
    // server would; the statement before it stands.
    raw::send(&mut s, |b| {
        parse(b, "three", "SELECT 3");
        parse(b, "other", "SELECT * FROM tenant_other.t");
        parse(b, "four", "SELECT 4");
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1EZ");
    let run = |name: &'static str| {
        move |b: &mut bytes::BytesMut| {
            raw::bind_execute(b, name, 1);
            frontend::sync(b);
        }
    };
    raw::send(&mut s, run("two")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    raw::send(&mut s, run("three")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    raw::send(&mut s, run("four")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "EZ", "never prepared");
    // The server's own error for a bad statement comes at first use.
    raw::send(&mut s, |b| {
        parse(b, "bad", "SELECT * FROM no_such_table");
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, run("bad")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "EZ");
    raw::query(&mut s, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None, "the session goes on");
}

#[tokio::test]
async fn large_statements_and_results_cross_lent_buffers_intact_in_transaction_mode() {
    let reg = registry();
    let t = reg.create_tenant("bulk");
    let key = reg.issue_key(&t);
    // One server connection: both clients' transactions take turns on it,
    // and each takes and gives back a reply buffer every time.
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    let text = "x".repeat(200_000);
    for round in 0..3i32 {
        // A statement far larger than an idle client's read buffer.
        let n: i32 = a
            .query_one(&format!("SELECT length('{text}') + {round}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 200_000 + round);
        // A result far larger than a reply buffer, a query pipelined behind it.
        let (rows, small) = tokio::join!(
            a.query(
                "SELECT i, repeat('y', 100) FROM generate_series(1, 20000) i",
                &[]
            ),
            a.query_one("SELECT 42", &[]),
        );
        let rows = rows.unwrap();
        assert_eq!(rows.len(), 20_000);
        assert_eq!(rows[19_999].get::<_, i32>(0), 20_000);
        assert_eq!(rows[0].get::<_, &str>(1), "y".repeat(100));
        assert_eq!(small.unwrap().get::<_, i32>(0), 42);
        // The other client, on the same server connection in between.
        let m: i64 = b
            .query_one("SELECT count(*) FROM generate_series(1, 10)", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(m, 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_connection_ends_at_query_wait_timeout_and_the_pool_goes_on() {
    let reg = registry();
    let t = reg.create_tenant("waits");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "300"),
    ]);
    // Logged in first: a login in transaction mode takes the connection
    // for a moment too.
    let holder = proxy.client_ok(&key).await;
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(proxy.client_ok(&key).await);
    }
    let next = proxy.client_ok(&key).await;
    let late = proxy.client_ok(&key).await;
    // The one connection, held by an open transaction.
    holder.batch_execute("BEGIN").await.unwrap();
    // Two clients queue behind it; neither gets it in time.
    let mut waiters = Vec::new();
    for c in queued {
        waiters.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            (e, started.elapsed())
        }));
    }
    for w in waiters {
        let (e, waited) = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the wait never ended")
            .unwrap();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(db.code().code(), "53300", "{db:?}");
        assert!(
            db.message().contains("within 300 ms") && db.message().contains(&t),
            "{db:?}"
        );
        assert!(
            waited >= Duration::from_millis(300),
            "ended before its deadline: {waited:?}"
        );
    }
    // The holder is untouched, and once it commits the next client is served.
    let one: i32 = holder.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    holder.batch_execute("COMMIT").await.unwrap();
    let two: i32 = next.query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
    // A client that waits and is served in time is not cut off later by the
    // timer set for the expired ones.
    next.batch_execute("BEGIN").await.unwrap();
    let served = tokio::spawn(async move { late.query_one("SELECT 3", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    next.batch_execute("COMMIT").await.unwrap();
    let three: i32 = served.await.unwrap().unwrap().get(0);
    assert_eq!(three, 3);
}

/// A connection closed without a goodbye (here: past its lifetime) keeps
/// its place under `max_backend_connections` until the server has let it
/// go: the connection opened in its place never finds PostgreSQL still
/// counting the old one (with the budget at the server's limit, it would
/// be refused). A tap between proxy and server holds each server close
/// back from the proxy for 300 ms.
#[tokio::test]
async fn a_retired_connection_keeps_its_budget_place_until_the_server_lets_go() {
    use support::tap::{Event, Tap};
    let cluster = support::cluster();
    let reg = registry();
    let tap = Tap::start(cluster.port, Duration::from_millis(300)).await;
    let url = tap.url(&cluster.url(&reg.db), cluster.port);
    let t = reg.create_tenant("retire");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_BACKEND_URL", url.as_str()),
        ("PGTENANT_BACKEND_TLS", "disable"),
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_MAX_BACKEND_CONNECTIONS", "1"),
        ("PGTENANT_SERVER_LIFETIME_MS", "300"),
    ]);
    let c = proxy.client_ok(&key).await;
    c.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // past its lifetime
    c.simple_query("SELECT 2").await.unwrap();
    let data_plane: Vec<Event> = {
        let events = tap.events();
        let ids: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                Event::Opened {
                    id, user: Some(u), ..
                } if u != "postgres" => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 2, "{events:?}");
        events
            .into_iter()
            .filter(|e| match e {
                Event::Opened { id, .. } | Event::ServerClosed { id, .. } => ids.contains(id),
            })
            .collect()
    };
    let (first, second) = match &data_plane[..] {
        [Event::Opened { id: a, .. }, rest @ ..] => {
            let closed = rest.iter().find_map(|e| match e {
                Event::ServerClosed { id, at } if id == a => Some(*at),
                _ => None,
            });
            let opened = rest.iter().find_map(|e| match e {
                Event::Opened { id, at, .. } if id != a => Some(*at),
                _ => None,
            });
            (
                closed.expect("the first connection closed"),
                opened.unwrap(),
            )
        }
        other => panic!("{other:?}"),
    };
    assert!(
        second >= first + Duration::from_millis(250),
        "the second connection opened {:?} after the first one's server closed",
        second.checked_duration_since(first)
    );
}

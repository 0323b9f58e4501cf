//! What a client may leave half done, or send at a size the relay must
//! not choke on, against a real PostgreSQL: a pipeline without its Sync,
//! a statement larger than the relay's window, a killed client that
//! stopped reading, a goodbye mid-pipeline, a message type nobody knows.
//! In each, the connection must not reach another client dirty, and no
//! session may hang. (COPY: `copy.rs`; transaction mode's statement
//! bookkeeping: `statements.rs`.)

mod support;

use std::time::Duration;

use postgres_protocol::message::frontend;
use support::{raw, registry, sqlstate};

const ADMIN_PASSWORD: &str = "admin-password-for-relay-edges";

#[tokio::test]
async fn an_unsynced_pipeline_keeps_its_connection_until_its_sync() {
    let reg = registry();
    let t = reg.create_tenant("unsynced");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "500"),
    ]);
    proxy
        .client_ok(&key)
        .await
        .batch_execute("CREATE TABLE t (n int)")
        .await
        .unwrap();
    // A new client each time: a wait that times out ends its session.
    let count = || async {
        let c = proxy.client(&key).await?;
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };

    // Run but not synced: the server holds an open implicit transaction,
    // whatever its last ReadyForQuery said. Nobody else may have it.
    let (mut a, _, _) = raw::startup(proxy.addr, &key).await;
    raw::send(&mut a, |b| raw::run_unsynced(b, "INSERT INTO t VALUES (1)")).await;
    assert_eq!(raw::tags(&mut a, 3).await, "12C");
    let e = count()
        .await
        .expect_err("another client ran inside the pipeline");
    assert_eq!(sqlstate(&e), "53300", "{e:?}");
    raw::send(&mut a, frontend::sync).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "Z");
    assert_eq!(count().await.unwrap(), 1, "committed at the Sync");

    // The same after an error: the server skips everything up to the Sync.
    raw::send(&mut a, |b| {
        raw::run_unsynced(b, "SELECT * FROM no_such_table")
    })
    .await;
    assert_eq!(raw::tags(&mut a, 1).await, "E");
    let e = count()
        .await
        .expect_err("another client's query went to a server skipping to Sync");
    assert_eq!(sqlstate(&e), "53300", "{e:?}");
    raw::send(&mut a, frontend::sync).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "Z");
    assert_eq!(count().await.unwrap(), 1);

    // A simple Query ends the pipeline as a Sync does (asyncpg prepares
    // with Flush, then may send only a Query such as COPY).
    raw::send(&mut a, |b| raw::run_unsynced(b, "INSERT INTO t VALUES (3)")).await;
    assert_eq!(raw::tags(&mut a, 3).await, "12C");
    raw::query(&mut a, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut a).await, None);
    assert_eq!(
        count().await.unwrap(),
        2,
        "committed by the Query, and given back"
    );
    raw::query(&mut a, "DELETE FROM t WHERE n = 3").await;
    assert_eq!(raw::until_ready(&mut a).await, None);

    // A client that leaves mid-pipeline: its connection is closed, not
    // handed on with the insert pending (the next statement would commit it).
    raw::send(&mut a, |b| raw::run_unsynced(b, "INSERT INTO t VALUES (2)")).await;
    assert_eq!(raw::tags(&mut a, 3).await, "12C");
    drop(a);
    let mut n = count().await;
    for _ in 0..20 {
        if n.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = count().await;
    }
    assert_eq!(n.unwrap(), 1, "the left client's insert was committed");
}

#[tokio::test]
async fn a_statement_larger_than_the_relay_window_passes_whole() {
    let reg = registry();
    let t = reg.create_tenant("bigstmt");
    let key = reg.issue_key(&t);
    let text = "x".repeat(1_000_000);
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", mode)]);
        let c = proxy.client_ok(&key).await;
        let sql = format!("SELECT length('{text}')");
        let n: i32 = tokio::time::timeout(Duration::from_secs(30), c.query_one(&sql, &[]))
            .await
            .unwrap_or_else(|_| panic!("{mode} mode: a 1 MB statement never completed"))
            .unwrap()
            .get(0);
        assert_eq!(n, 1_000_000, "{mode} mode");
        // Simple protocol too, and the session goes on.
        let rows = c.simple_query(&sql).await.unwrap();
        assert!(
            matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r)
            if r.get(0) == Some("1000000"))
        );
        let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

#[tokio::test]
async fn a_killed_client_that_stopped_reading_frees_its_connection() {
    let reg = registry();
    let t = reg.create_tenant("stuck");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "8000"),
    ]);
    // A reply of hundreds of megabytes that the client never reads: the
    // proxy's buffer and both sockets fill, and the server waits.
    let (mut stuck, _, _) = raw::startup(proxy.addr, &key).await;
    raw::query(
        &mut stuck,
        "SELECT repeat('x', 1000) FROM generate_series(1, 300000)",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = proxy.client_db(ADMIN_PASSWORD, "pgtenant").await.unwrap();
    admin.simple_query(&format!("KILL {t}")).await.unwrap();
    // The one connection comes free: the kill does not wait for ever on a
    // client that won't take the rest of its reply.
    let next = async {
        let c = proxy.client(&key).await?;
        c.query_one("SELECT 7", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    };
    let seven = tokio::time::timeout(Duration::from_secs(15), next)
        .await
        .expect("the next client never got a connection")
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.log()));
    assert_eq!(seven, 7);
    drop(stuck);
}

/// A message type PostgreSQL doesn't know makes it end the session
/// (FATAL), and the server connection with it; the proxy refuses it the
/// same way first, so the next client of that connection is not the one
/// that finds it closed.
#[tokio::test]
async fn an_unknown_message_type_ends_only_its_own_session() {
    let reg = registry();
    let t = reg.create_tenant("unknowntag");
    let key = reg.issue_key(&t);
    // Refused where PostgreSQL refuses them: a type at its first byte, a
    // control message's length at its header (the rest never comes).
    for (mode, bad, says) in [
        ("session", &b"z\0\0\0\x04"[..], "type 122"),
        ("transaction", b"z\0\0\0\x04", "type 122"),
        ("session", b"z", "type 122"),
        ("transaction", b"S\0\0\x40\0", "limit of 10001 bytes"),
    ] {
        let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", mode), ("PGTENANT_POOL_SIZE", "1")]);
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        raw::query(&mut s, "SELECT 1").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        use tokio::io::AsyncWriteExt;
        s.write_all(bad).await.unwrap();
        let (tag, body) = tokio::time::timeout(Duration::from_secs(10), raw::read_msg(&mut s))
            .await
            .unwrap_or_else(|_| panic!("{mode}: no answer"))
            .expect("an error");
        assert_eq!(tag, b'E', "{mode}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("C08P01") && text.contains(says),
            "{mode}: {text}"
        );
        let end = tokio::time::timeout(Duration::from_secs(10), raw::read_msg(&mut s)).await;
        assert!(matches!(end, Ok(None)), "{mode}: the session goes on");
        let row = tokio::time::timeout(Duration::from_secs(10), async {
            proxy.client_ok(&key).await.query_one("SELECT 2", &[]).await
        })
        .await
        .unwrap_or_else(|_| panic!("{mode}: the next client hangs"));
        assert_eq!(
            row.map(|r| r.get::<_, i32>(0)).ok(),
            Some(2),
            "{mode}\n{}",
            proxy.log()
        );
    }
}

/// Messages in the same write before a bad one run first, as on
/// PostgreSQL: a query before it commits and is answered; a pipeline
/// without its Sync is answered and rolled back (its connection is
/// closed); then the session ends with 08P01 and the pool's one connection
/// serves the next client. Also for a bad length instead of a bad type.
#[tokio::test]
async fn messages_before_a_bad_one_are_answered_first() {
    let reg = registry();
    let t = reg.create_tenant("beforebad");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = one_connection_and_table(&key, mode, "before_bad").await;
        for (bad, what) in [
            (&b"z\0\0\0\x04"[..], "type 122"),
            (b"Q\0\0\0\x01", "length 1"),
        ] {
            let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
            let committed = format!("{mode} {what} query");
            let rolled_back = format!("{mode} {what} pipeline");
            raw::send(&mut s, |b| {
                frontend::query(&format!("INSERT INTO before_bad VALUES ('{committed}')"), b)
                    .unwrap();
                let insert = format!("INSERT INTO before_bad VALUES ('{rolled_back}')");
                frontend::parse("", &insert, [], b).unwrap();
                raw::bind_execute(b, "", 1);
                b.extend_from_slice(bad);
            })
            .await;
            let answered = tokio::time::timeout(Duration::from_secs(10), raw::tags(&mut s, 5))
                .await
                .unwrap_or_else(|_| panic!("{mode} {what}: no answer\n{}", proxy.log()));
            assert_eq!(answered, "CZ12C", "{mode} {what}");
            let (tag, body) = raw::read_msg(&mut s).await.expect("the error");
            let text = String::from_utf8_lossy(&body);
            assert!(
                tag == b'E' && text.contains("C08P01") && text.contains(what),
                "{mode}: {text}"
            );
            let end = tokio::time::timeout(Duration::from_secs(10), raw::read_msg(&mut s)).await;
            assert!(
                matches!(end, Ok(None)),
                "{mode} {what}: the session goes on"
            );
            let c = tokio::time::timeout(Duration::from_secs(10), proxy.client_ok(&key))
                .await
                .unwrap_or_else(|_| panic!("{mode} {what}: the next client hangs"));
            let count = |m: &str| format!("SELECT count(*) FROM before_bad WHERE m = '{m}'");
            let n = |sql: String| {
                let c = &c;
                async move { c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
            };
            assert_eq!(
                n(count(&committed)).await,
                1,
                "{mode} {what}: the query was lost"
            );
            assert_eq!(
                n(count(&rolled_back)).await,
                0,
                "{mode} {what}: the pipeline committed"
            );
        }
    }
}

/// A bad message behind messages the server never answers — CopyData or
/// a Flush outside a COPY, a Query the server skips after an error in the
/// extended protocol — still ends the session, with what was answered
/// and 08P01, and frees its connection (it waited, before, for a reply
/// that never came, holding the connection after the client left).
#[tokio::test]
async fn a_bad_message_behind_unanswered_ones_still_ends_the_session() {
    let reg = registry();
    let t = reg.create_tenant("unanswered");
    let key = reg.issue_key(&t);
    let copy_data = |b: &mut bytes::BytesMut| {
        frontend::CopyData::new(&b"1\n"[..]).unwrap().write(b);
    };
    let skipped_query = |b: &mut bytes::BytesMut| {
        frontend::parse("", "SELECT nope", [], b).unwrap();
        frontend::query("SELECT 1", b).unwrap();
    };
    type Build<'a> = &'a dyn Fn(&mut bytes::BytesMut);
    let cases: [(&str, Build, &str); 3] = [
        ("CopyData", &copy_data, "E"),
        ("Flush", &frontend::flush, "E"),
        ("a skipped Query", &skipped_query, "EE"),
    ];
    for mode in ["session", "transaction"] {
        let proxy = one_connection_and_table(&key, mode, "unanswered").await;
        for (what, before, tags) in &cases {
            let case = format!("{mode}, {what}");
            let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
            raw::send(&mut s, |b| {
                before(b);
                b.extend_from_slice(b"z\0\0\0\x04");
            })
            .await;
            let mut got = String::new();
            let ended = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some((tag, body)) = raw::read_msg(&mut s).await {
                    got.push(tag as char);
                    if got.len() == tags.len() {
                        let text = String::from_utf8_lossy(&body);
                        assert!(text.contains("C08P01"), "{case}: {text}");
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "{case}: the session hangs\n{}", proxy.log());
            assert_eq!(&got, tags, "{case}");
            tokio::time::timeout(Duration::from_secs(10), proxy.client_ok(&key))
                .await
                .unwrap_or_else(|_| panic!("{case}: the next client waits"))
                .query_one("SELECT 1", &[])
                .await
                .unwrap();
        }
    }
}

/// A Query sent inside an extended-protocol pipeline that fails before it
/// is skipped by the server up to the Sync: the client gets the error and
/// one ReadyForQuery, keeps its connection until that Sync (the server
/// still skips), then gives it back in transaction mode.
#[tokio::test]
async fn a_query_skipped_after_a_pipeline_error_is_not_waited_for() {
    let reg = registry();
    let t = reg.create_tenant("skippedq");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "500"),
    ]);
    let setup = proxy.client_ok(&key).await;
    setup
        .batch_execute("CREATE TABLE skipped_q (m text)")
        .await
        .unwrap();
    drop(setup);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    raw::send(&mut s, |b| {
        frontend::parse("", "SELECT nope", [], b).unwrap();
        frontend::query("INSERT INTO skipped_q VALUES ('skipped')", b).unwrap();
        frontend::flush(b);
    })
    .await;
    assert_eq!(raw::tags(&mut s, 1).await, "E");
    // The server still skips to the Sync: the connection is this client's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = proxy.client(&key).await;
    let e = match waiting {
        Ok(c) => c.simple_query("SELECT 1").await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(e.map_err(|e| sqlstate(&e)), Err("53300".into()));
    raw::send(&mut s, frontend::sync).await;
    let tags = tokio::time::timeout(Duration::from_secs(5), raw::tags_until_ready(&mut s)).await;
    assert_eq!(tags.as_deref(), Ok("Z"));
    let next = tokio::time::timeout(Duration::from_secs(5), proxy.client_ok(&key))
        .await
        .expect("the connection was given back");
    let n: i64 = next
        .query_one("SELECT count(*) FROM skipped_q", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the skipped Query did not run");
    raw::query(&mut s, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
}

/// A client that sends a statement and says goodbye without waiting
/// (`PQsendQuery` then `PQfinish`): the statement runs to its end and
/// commits, as it would on PostgreSQL itself. Both modes.
#[tokio::test]
async fn a_statement_sent_before_goodbye_still_commits() {
    let reg = registry();
    let t = reg.create_tenant("goodbye");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = one_connection_and_table(&key, mode, "late").await;
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        let insert = format!("INSERT INTO late SELECT '{mode}' FROM pg_sleep(0.3)");
        raw::send(&mut s, |b| {
            frontend::query(&insert, b).unwrap();
            frontend::terminate(b);
        })
        .await;
        drop(s);
        // Session mode: served once the goodbye's session has ended.
        let c = proxy.client_ok(&key).await;
        let count = format!("SELECT count(*) FROM late WHERE m = '{mode}'");
        let mut n = 0;
        for _ in 0..50 {
            n = c.query_one(&count, &[]).await.unwrap().get::<_, i64>(0);
            if n > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(n, 1, "{mode}: the insert sent before the goodbye was lost");
    }
}

/// A goodbye behind an unsynced pipeline (libpq's `PQfinish` in pipeline
/// mode without a sync): the server holds the replies until a Sync or
/// Flush that never comes, so the proxy asks for them; the pipeline is not
/// committed (its connection is closed, as PostgreSQL rolls it back), and
/// the pool's one connection serves the next client.
#[tokio::test]
async fn a_goodbye_behind_an_unsynced_pipeline_frees_its_connection() {
    let reg = registry();
    let t = reg.create_tenant("unsyncedbye");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = one_connection_and_table(&key, mode, "piped").await;
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        let insert = format!("INSERT INTO piped VALUES ('{mode}')");
        raw::send(&mut s, |b| {
            frontend::parse("", &insert, [], b).unwrap();
            raw::bind_execute(b, "", 1);
            frontend::terminate(b);
        })
        .await;
        drop(s);
        let next = tokio::time::timeout(Duration::from_secs(15), proxy.client(&key))
            .await
            .unwrap_or_else(|_| panic!("{mode}: the next client hangs"))
            .unwrap_or_else(|e| panic!("{mode}: the connection was kept: {e:?}"));
        let n: i64 = next
            .query_one("SELECT count(*) FROM piped WHERE m = $1", &[&mode])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{mode}: an unsynced pipeline was committed");
    }
}

/// A transaction left idle holds its connection and its locks: past
/// `pool.idle_transaction_timeout_ms` its session ends with 25P03, the
/// transaction is rolled back and the connection serves the next client.
/// A transaction that is busy (a long statement) or done is not idle.
#[tokio::test]
async fn a_transaction_left_idle_ends_its_session_and_frees_its_connection() {
    let reg = registry();
    let t = reg.create_tenant("idletx");
    let key = reg.issue_key(&t);
    for mode in ["transaction", "session"] {
        let proxy = reg.proxy(&[
            ("PGTENANT_POOL_MODE", mode),
            ("PGTENANT_POOL_SIZE", "1"),
            ("PGTENANT_IDLE_TRANSACTION_TIMEOUT_MS", "300"),
        ]);
        let c = proxy.client_ok(&key).await;
        c.batch_execute("CREATE TABLE IF NOT EXISTS t (n int)")
            .await
            .unwrap();
        c.batch_execute("BEGIN; SELECT pg_sleep(0.6); INSERT INTO t VALUES (0); COMMIT")
            .await
            .expect("a busy transaction is not idle");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.batch_execute("SELECT 1")
            .await
            .expect("idle outside a transaction");
        drop(c); // session mode: its connection goes back
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        raw::query(&mut s, "BEGIN; INSERT INTO t VALUES (1)").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        // Messages the proxy answers itself count as activity too.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw::send(&mut s, |b| {
                frontend::close(b'S', "never_prepared", b).unwrap();
                frontend::sync(b);
            })
            .await;
            assert_eq!(raw::until_ready(&mut s).await, None, "{mode}: still there");
        }
        ended_idle_in_transaction(&mut s, mode).await;
        // A batch without its Sync is a transaction too.
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        raw::send(&mut s, |b| {
            frontend::parse("", "INSERT INTO t VALUES (2)", [], b).unwrap();
            raw::bind_execute(b, "", 0);
            frontend::flush(b);
        })
        .await;
        assert_eq!(raw::tags(&mut s, 3).await, "12C", "{mode}");
        ended_idle_in_transaction(&mut s, mode).await;
        if mode == "transaction" {
            // An unnamed statement parsed and not yet bound keeps its
            // connection too.
            let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
            raw::send(&mut s, |b| {
                frontend::parse("", "SELECT 1", [], b).unwrap();
                frontend::sync(b);
            })
            .await;
            assert_eq!(raw::tags(&mut s, 2).await, "1Z");
            ended_idle_in_transaction(&mut s, mode).await;
        }
        let other = proxy.client_ok(&key).await;
        let n: i64 = other
            .query_one("SELECT count(*) FROM t WHERE n IN (1, 2)", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{mode}: the idle transaction was rolled back");
    }
}

/// The next message is FATAL 25P03, and then the proxy closes.
async fn ended_idle_in_transaction(s: &mut tokio::net::TcpStream, mode: &str) {
    let (tag, body) = tokio::time::timeout(Duration::from_secs(3), raw::read_msg(s))
        .await
        .expect("ended within the limit")
        .expect("an error before the close");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(tag, b'E', "{mode}: {body}");
    assert!(
        body.contains("C25P03") && body.contains("idle-in-transaction"),
        "{body}"
    );
    assert!(raw::read_msg(s).await.is_none(), "{mode}: closed after it");
}

/// A proxy in `mode` with one server connection, and `table (m text)` in
/// the tenant's schema.
async fn one_connection_and_table(key: &str, mode: &str, table: &str) -> support::Proxy {
    let proxy = registry().proxy(&[("PGTENANT_POOL_MODE", mode), ("PGTENANT_POOL_SIZE", "1")]);
    proxy
        .client_ok(key)
        .await
        .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {table} (m text)"))
        .await
        .unwrap();
    proxy
}

//! COPY FROM STDIN through the proxy, against a real PostgreSQL: data
//! after an Execute whose Sync the server ignores, data ahead of the
//! server's CopyInResponse, a copy that fails or whose Sync comes later,
//! and a goodbye mid-copy. In each, the replies stay in step and the
//! connection reaches no other client while the server is mid-copy or
//! waits for a Sync.

mod support;

use std::time::Duration;

use postgres_protocol::message::frontend;

use support::{Proxy, raw, registry, sqlstate};

/// A new tenant's key, and a proxy in transaction mode whose pool has one
/// connection, for which clients wait up to `wait_ms`.
fn one_connection(prefix: &str, wait_ms: &str) -> (Proxy, String) {
    let reg = registry();
    let key = reg.issue_key(&reg.create_tenant(prefix));
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", wait_ms),
    ]);
    (proxy, key)
}

/// COPY FROM STDIN through the extended protocol (tokio-postgres'
/// `copy_in`, libpq's `PQexecParams`) sends a Sync the server ignores while
/// it waits for the data: the replies after it stay in step (a refusal is
/// the firewall's, not a syntax error), and in transaction mode the
/// connection goes back to the pool.
#[tokio::test]
async fn copy_in_through_the_extended_protocol_keeps_replies_in_step() {
    use futures_util::{SinkExt, pin_mut};
    let (proxy, key) = one_connection("copyin", "3000");
    let c = proxy.client_ok(&key).await;
    c.batch_execute("CREATE TABLE items (id int, name text)")
        .await
        .unwrap();
    for round in 1..=2i64 {
        let sink = c.copy_in("COPY items FROM STDIN").await.unwrap();
        pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\ta\n2\tb\n"))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
        let n: i64 = c
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2 * round);
        let e = c
            .query("SELECT * FROM tenant_other.t", &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
    }
    // Another client gets the pool's one connection while this one stays.
    let other = proxy.client_ok(&key).await;
    match other.query_one("SELECT count(*) FROM items", &[]).await {
        Ok(row) => assert_eq!(row.get::<_, i64>(0), 4),
        Err(e) => panic!("the connection was kept: {e:?}\n{}", proxy.log()),
    }
    c.query_one("SELECT 1", &[]).await.unwrap();
}

/// COPY FROM STDIN with its data, its end and the next Sync sent before
/// the server's CopyInResponse (a client that streams without waiting):
/// the server ignores only the Sync sent inside the copy, so each pipeline
/// gets exactly the replies PostgreSQL sends and, in transaction mode, the
/// pool's one connection is free for the next client after each.
#[tokio::test]
async fn a_copy_pipelined_ahead_of_its_start_keeps_replies_in_step() {
    let (proxy, key) = one_connection("copyahead", "3000");
    let c = proxy.client_ok(&key).await;
    c.batch_execute("CREATE TABLE ahead (x int)").await.unwrap();
    drop(c);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    let copy = |b: &mut bytes::BytesMut, table: &str, end: bool| {
        frontend::parse("", &format!("COPY {table} FROM STDIN"), [], b).unwrap();
        raw::bind_execute(b, "", 0);
        frontend::sync(b); // ignored by a server in COPY
        frontend::CopyData::new(&b"1\n2\n"[..]).unwrap().write(b);
        if end {
            frontend::copy_done(b);
        } else {
            frontend::copy_fail("changed my mind", b).unwrap();
        }
        frontend::sync(b);
    };
    let cases: [(&str, bool, &str); 3] = [
        // Copied: CopyInResponse, then the one Sync's answer.
        ("ahead", true, "12GCZ"),
        // The client's CopyFail: its error, then Ready.
        ("ahead", false, "12GEZ"),
        // No such table (found at Execute): the error skips to the first
        // Sync, which is answered; the data and CopyDone then arrive
        // outside any COPY (ignored), and the second Sync is answered too.
        ("missing", true, "12EZZ"),
    ];
    for (table, end, want) in cases {
        raw::send(&mut s, |b| copy(b, table, end)).await;
        let mut got = String::new();
        for _ in 0..want.matches('Z').count() {
            got += &raw::tags_until_ready(&mut s).await;
        }
        assert_eq!(got, want, "{table}, end {end}");
        // The next client gets the one connection: nothing kept it.
        let other = proxy.client_ok(&key).await;
        let n: i64 = tokio::time::timeout(
            Duration::from_secs(10),
            other.query_one("SELECT count(*) FROM ahead", &[]),
        )
        .await
        .unwrap_or_else(|_| panic!("{table}: the connection was kept\n{}", proxy.log()))
        .unwrap()
        .get(0);
        assert_eq!(n, 2, "{table}, end {end}");
    }
    // The same through a Query: no Sync involved.
    raw::send(&mut s, |b| {
        frontend::query("COPY ahead FROM STDIN", b).unwrap();
        frontend::CopyData::new(&b"3\n"[..]).unwrap().write(b);
        frontend::copy_done(b);
        frontend::query("SELECT 1", b).unwrap();
    })
    .await;
    let mut got = raw::tags_until_ready(&mut s).await;
    got += &raw::tags_until_ready(&mut s).await;
    assert_eq!(got, "GCZTDCZ");
    let other = proxy.client_ok(&key).await;
    let n: i64 = other
        .query_one("SELECT count(*) FROM ahead", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

/// A client that ends its session in the middle of COPY FROM STDIN (a
/// Terminate, as libpq's PQfinish sends, then its close): the server waits
/// for data that will never come, so the proxy must not wait for its reply.
/// The connection is cancelled and closed, and the pool's one place serves
/// the next client. Both modes.
#[tokio::test]
async fn a_client_that_quits_mid_copy_frees_its_connection() {
    let reg = registry();
    let t = reg.create_tenant("quitcopy");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[
            ("PGTENANT_POOL_MODE", mode),
            ("PGTENANT_POOL_SIZE", "1"),
            ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "5000"),
        ]);
        let c = proxy.client_ok(&key).await;
        c.batch_execute("CREATE TABLE IF NOT EXISTS sink (x int)")
            .await
            .unwrap();
        drop(c);
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        raw::query(&mut s, "COPY sink FROM STDIN").await;
        assert_eq!(raw::tags(&mut s, 1).await, "G");
        raw::send(&mut s, |b| {
            frontend::CopyData::new(&b"1\n"[..]).unwrap().write(b);
            frontend::terminate(b);
        })
        .await;
        drop(s);
        let next = proxy.client_ok(&key).await;
        match next.query_one("SELECT count(*) FROM sink", &[]).await {
            Ok(row) => assert_eq!(row.get::<_, i64>(0), 0, "{mode}: the copy ran"),
            Err(e) => panic!("{mode}: the connection was kept: {e:?}\n{}", proxy.log()),
        }
    }
}

/// A COPY run by an Execute that fails (bad data) leaves the server
/// skipping every message up to a Sync sent after the copy (the one before
/// it, the server ignored). Until the client sends it, in transaction mode
/// the connection stays the client's: given to the next client, it would
/// swallow that client's statements. The next client waits for the Sync,
/// then gets a connection outside any transaction. Also when the Sync
/// behind the Execute comes only once the copy has begun (the server
/// ignores it there too). (A copy that succeeds is answered only at that
/// Sync: the server holds its CommandComplete in its buffer until then.)
#[tokio::test]
async fn a_failed_copy_run_by_an_execute_keeps_its_connection_until_the_sync_after_it() {
    let (proxy, key) = one_connection("copysync", "10000");
    let mut other = proxy.client_ok(&key).await;
    other
        .batch_execute("CREATE TABLE later (x int)")
        .await
        .unwrap();
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    let probe = "SELECT pg_current_xact_id_if_assigned() IS NULL, count(*) FROM later";
    // Whether the Sync behind the Execute comes after the CopyInResponse.
    for late in [false, true] {
        raw::send(&mut s, |b| {
            frontend::parse("", "COPY later FROM STDIN", [], b).unwrap();
            raw::bind_execute(b, "", 0);
            if late {
                frontend::flush(b);
            } else {
                frontend::sync(b); // ignored by a server in COPY
            }
        })
        .await;
        assert_eq!(raw::tags(&mut s, 3).await, "12G");
        if late {
            raw::send(&mut s, frontend::sync).await; // ignored too
        }
        raw::send(&mut s, |b| {
            frontend::CopyData::new(&b"1\nnot a number\n"[..])
                .unwrap()
                .write(b);
            frontend::copy_done(b);
        })
        .await;
        assert_eq!(raw::tags(&mut s, 1).await, "E", "late Sync: {late}");
        let next = tokio::spawn(async move {
            let row = other.query_one(probe, &[]).await;
            (
                other,
                row.map(|r| (r.get::<_, bool>(0), r.get::<_, i64>(1))),
            )
        });
        // The next client waits for the connection meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
        raw::send(&mut s, frontend::sync).await;
        assert_eq!(raw::tags(&mut s, 1).await, "Z", "late Sync: {late}");
        let (back, row) = tokio::time::timeout(Duration::from_secs(15), next)
            .await
            .unwrap_or_else(|_| panic!("late Sync {late}: the next client hangs\n{}", proxy.log()))
            .unwrap();
        other = back;
        let (fresh, n) = row.unwrap_or_else(|e| panic!("late Sync {late}: {e:?}"));
        assert!(
            fresh,
            "late Sync {late}: the next client ran inside the copy's transaction"
        );
        assert_eq!(n, 0, "late Sync {late}");
    }
    // The session goes on.
    raw::query(&mut s, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
}

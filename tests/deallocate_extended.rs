//! Transaction mode's SQL `DEALLOCATE name` sent through the extended
//! protocol (Parse, Bind, Execute), against a real PostgreSQL: the server
//! knows a client's statements by the proxy's names, so the proxy runs an
//! empty statement in the portal's place and answers it as the
//! `DEALLOCATE`, with PostgreSQL's errors in PostgreSQL's order where it
//! would not run.

mod support;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use support::raw;
use support::raw::{behind_an_error, bind_portal};

/// `DEALLOCATE name` through the extended protocol (libpq's
/// `PQsendQueryParams`: what psycopg 3 sends in pipeline mode with libpq
/// before 17 to evict a statement), unnamed or prepared: answered as
/// PostgreSQL would, the name gone once its Execute runs and free for a
/// new Parse. Skipped, refused in a failed transaction, or closed before
/// its Execute, it drops nothing and gets PostgreSQL's error.
#[tokio::test]
async fn an_extended_deallocate_by_name_drops_the_clients_statement() {
    let (_proxy, mut s) = raw::tx_session("deallocname", "2").await;
    // Parse, Bind, Describe of the portal, Execute, as psycopg sends them.
    let dealloc = |name: &'static str| {
        move |b: &mut BytesMut| {
            frontend::parse("", &format!("DEALLOCATE {name}"), [], b).unwrap();
            bind_portal(b, "", "");
            frontend::describe(b'P', "", b).unwrap();
            frontend::execute("", 0, b).unwrap();
            frontend::sync(b);
        }
    };
    raw::send(&mut s, raw::prepares("_pg3_0", "SELECT 1")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, dealloc("_pg3_0")).await;
    assert_eq!(raw::tags(&mut s, 3).await, "12n");
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!((tag, &body[..]), (b'C', &b"DEALLOCATE\0"[..]));
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!((tag, &body[..]), (b'Z', &b"I"[..]));
    raw::fails_with(&mut s, "26000", raw::runs("_pg3_0")).await;
    raw::fails_with(&mut s, "26000", dealloc("_pg3_0")).await;
    // Free again: a new Parse of it is no duplicate.
    raw::send(&mut s, raw::prepares("_pg3_0", "SELECT 2")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    assert_eq!(raw::value_of(&mut s, "_pg3_0").await, "2");
    // Prepared, then run: the same; its portal runs once, as on PostgreSQL.
    raw::send(&mut s, raw::prepares("d", "DEALLOCATE _pg3_0")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, |b| {
        bind_portal(b, "p", "d");
        frontend::execute("p", 0, b).unwrap();
        frontend::execute("p", 0, b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags(&mut s, 2).await, "2C");
    let err = raw::until_ready(&mut s).await.expect("run once");
    assert!(err.contains("55000"), "{err}");
    raw::fails_with(&mut s, "26000", raw::runs("_pg3_0")).await;
    // Skipped behind an error, or refused at its Bind in a failed
    // transaction: the statement stays.
    raw::send(&mut s, raw::prepares("_pg3_0", "SELECT 3")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    behind_an_error(&mut s, |b| {
        frontend::parse("", "DEALLOCATE _pg3_0", [], b).unwrap();
        raw::bind_execute(b, "", 0);
    })
    .await;
    raw::query(&mut s, "BEGIN; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.is_some());
    raw::fails_with(&mut s, "25P02", raw::runs("d")).await;
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    assert_eq!(raw::value_of(&mut s, "_pg3_0").await, "3");
    // Closed between its Bind and its Execute: 26000, as PostgreSQL says.
    raw::send(&mut s, |b| {
        bind_portal(b, "p", "d");
        frontend::close(b'S', "_pg3_0", b).unwrap();
        frontend::execute("p", 0, b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags(&mut s, 2).await, "23");
    let err = raw::until_ready(&mut s)
        .await
        .expect("closed before it ran");
    assert!(err.contains("26000") && err.contains("_pg3_0"), "{err}");
    // Its portal ends with its transaction: PostgreSQL's 34000 after.
    raw::send(&mut s, raw::prepares("_pg3_0", "SELECT 4")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::query(&mut s, "BEGIN").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    let run_p = |b: &mut BytesMut| {
        frontend::execute("p", 0, b).unwrap();
        frontend::sync(b);
    };
    raw::send(&mut s, |b| {
        bind_portal(b, "p", "d");
        run_p(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2CZ");
    raw::query(&mut s, "COMMIT").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    raw::fails_with(&mut s, "34000", run_p).await;
}

/// What PostgreSQL checks before it runs a `DEALLOCATE` through the
/// extended protocol is checked first here too: a transaction that failed
/// after its portal was bound (25P02), a `DEALLOCATE ALL` ahead of it in
/// the pipeline (26000), an unnamed Parse of it that failed (26000); and
/// parameter types declared for it are taken, as PostgreSQL takes them.
#[tokio::test]
async fn an_extended_deallocate_meets_what_postgresql_checks_first() {
    let (_proxy, mut s) = raw::tx_session("deallocfirst", "2").await;
    let stays = |name: &'static str| raw::prepares(name, "SELECT 1");
    raw::send(&mut s, stays("x")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, raw::prepares("d", "DEALLOCATE x")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    // Bound, then the transaction fails, then run.
    raw::query(&mut s, "BEGIN").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    raw::send(&mut s, |b| {
        bind_portal(b, "p", "d");
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2Z");
    raw::query(&mut s, "SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.is_some());
    raw::send(&mut s, |b| {
        frontend::execute("p", 0, b).unwrap();
        frontend::sync(b);
    })
    .await;
    let err = raw::until_ready(&mut s).await.expect("refused");
    assert!(err.contains("25P02"), "{err}");
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    assert_eq!(raw::value_of(&mut s, "x").await, "1");
    // An unnamed Parse of it that failed leaves no statement to bind.
    raw::query(&mut s, "BEGIN; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.is_some());
    raw::send(&mut s, |b| {
        frontend::parse("", "DEALLOCATE x", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "EZ");
    raw::fails_with(&mut s, "26000", raw::runs("")).await;
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    assert_eq!(raw::value_of(&mut s, "x").await, "1");
    // Behind a DEALLOCATE ALL in the same pipeline: already gone.
    raw::send(&mut s, |b| {
        frontend::query("DEALLOCATE ALL", b).unwrap();
        frontend::parse("", "DEALLOCATE x", [], b).unwrap();
        raw::bind_execute(b, "", 0);
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    let err = raw::until_ready(&mut s).await.expect("gone with ALL");
    assert!(err.contains("26000"), "{err}");
    // Declared with a parameter type, bound with a value.
    raw::send(&mut s, stays("x")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, |b| {
        frontend::parse("", "DEALLOCATE x", [23], b).unwrap();
        frontend::bind(
            "",
            "",
            [0],
            [Some(&b"5"[..])],
            |v: Option<&[u8]>, buf| {
                buf.extend_from_slice(v.unwrap());
                Ok(postgres_protocol::IsNull::No)
            },
            [],
            b,
        )
        .map_err(|_| ())
        .unwrap();
        frontend::execute("", 0, b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "12CZ");
    raw::fails_with(&mut s, "26000", raw::runs("x")).await;
    // A failed transaction that a message still awaited may end: run as
    // PostgreSQL would, and a refused run is no run. (`d` went with the
    // DEALLOCATE ALL.)
    raw::send(&mut s, stays("x")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, raw::prepares("d", "DEALLOCATE x")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::query(&mut s, "BEGIN; SAVEPOINT a; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.is_some());
    raw::send(&mut s, |b| {
        frontend::parse("", "ROLLBACK TO SAVEPOINT a", [], b).unwrap();
        raw::bind_execute(b, "", 0);
        bind_portal(b, "p", "d");
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "12C2Z");
    raw::query(&mut s, "SAVEPOINT b; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.is_some());
    let run_p = |b: &mut BytesMut| {
        frontend::execute("p", 0, b).unwrap();
        frontend::sync(b);
    };
    raw::fails_with(&mut s, "25P02", run_p).await;
    raw::send(&mut s, |b| {
        frontend::parse("", "ROLLBACK TO SAVEPOINT b", [], b).unwrap();
        raw::bind_execute(b, "", 0);
        run_p(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "12CCZ");
    raw::query(&mut s, "COMMIT").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    raw::fails_with(&mut s, "26000", raw::runs("x")).await;
}

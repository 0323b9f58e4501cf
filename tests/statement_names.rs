//! Transaction mode's names of prepared statements, against a real
//! PostgreSQL: the proxy keeps each client's named statements itself (the
//! server knows them by the proxy's names), so it answers as PostgreSQL
//! would where a name is taken (42P05) and where a statement it answered
//! for turns out to be one PostgreSQL would never have had.

mod support;

use postgres_protocol::message::frontend;
use support::raw;

/// A Parse of a name the client has gets PostgreSQL's 42P05 and leaves
/// the first statement, whether the proxy answers the batch itself or the
/// server gets it with others (before, the new text replaced the old); in
/// a failed transaction, 25P02, as PostgreSQL reads that first, also where
/// the status the client last saw is older. A name whose own Parse, or a
/// `DEALLOCATE ALL` sent after it, is still unanswered may be free by the
/// time the server reads the new Parse: pipelined there, the new one is
/// taken (here the name is free; where it is not, PostgreSQL's 42P05 is
/// missed).
#[tokio::test]
async fn a_parse_of_a_name_the_client_has_gets_42p05() {
    // One connection: it has every text parsed before.
    let (_proxy, mut s) = raw::tx_session("dupname", "1").await;
    // Described: the server reads it (a bare prepare, answered by the
    // proxy alone, is the next test's).
    raw::send(&mut s, |b| {
        frontend::parse("dup", "SELECT 1", [], b).unwrap();
        frontend::describe(b'S', "dup", b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1tTZ");
    raw::send(&mut s, raw::prepares("dup", "SELECT 2")).await;
    let err = raw::until_ready(&mut s).await.expect("a duplicate");
    assert!(err.contains("42P05") && err.contains("\"dup\""), "{err}");
    raw::send(&mut s, |b| {
        frontend::parse("dup", "SELECT 2", [], b).unwrap();
        raw::bind_execute(b, "dup", 0);
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "EZ");
    assert_eq!(raw::value_of(&mut s, "dup").await, "1");
    raw::query(&mut s, "BEGIN; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("22012"));
    raw::send(&mut s, raw::prepares("dup", "SELECT 2")).await;
    let err = raw::until_ready(&mut s).await.expect("transaction failed");
    assert!(err.contains("25P02"), "{err}");
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    assert_eq!(raw::value_of(&mut s, "dup").await, "1");
    // Pipelined behind the Query that fails the transaction, and behind
    // its ROLLBACK: a text the connection has is not answered at once
    // (the server's 25P02; the name stays free), and a duplicate is told
    // as such once the transaction is over.
    raw::send(&mut s, |b| {
        frontend::query("BEGIN; SELECT 1/0", b).unwrap();
        frontend::parse("known", "SELECT 1", [], b).unwrap();
        frontend::sync(b);
        frontend::query("ROLLBACK", b).unwrap();
        frontend::parse("dup", "SELECT 2", [], b).unwrap();
        frontend::sync(b);
        frontend::parse("known", "SELECT 1", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("22012"));
    assert!(raw::until_ready(&mut s).await.unwrap().contains("25P02"));
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    assert!(raw::until_ready(&mut s).await.unwrap().contains("42P05"));
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    assert_eq!(raw::value_of(&mut s, "known").await, "1");
    assert_eq!(raw::value_of(&mut s, "dup").await, "1");
    // Free again behind its own failed Parse (described, so that the
    // proxy can't answer it itself), and behind DEALLOCATE ALL.
    raw::send(&mut s, |b| {
        frontend::parse("again", "SELECT nope", [], b).unwrap();
        frontend::describe(b'S', "again", b).unwrap();
        frontend::sync(b);
        frontend::parse("again", "SELECT 3", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("42703"));
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    assert_eq!(raw::value_of(&mut s, "again").await, "3");
    raw::send(&mut s, |b| {
        frontend::query("DEALLOCATE ALL", b).unwrap();
        frontend::parse("dup", "SELECT 4", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    assert_eq!(raw::value_of(&mut s, "dup").await, "4");
}

/// A bare prepare (Parse and Sync, libpq's `PQprepare`) made between
/// transactions is answered by the proxy, which has no connection to ask.
/// Until a server has read its text, PostgreSQL might have refused it (a
/// table not made yet): each use reports the server's error and works
/// once the text does, and a new Parse of the name replaces it. Once a
/// server has read it, the name is taken (42P05).
#[tokio::test]
async fn a_bare_prepare_takes_its_name_once_a_server_read_it() {
    let (_proxy, mut s) = raw::tx_session("bareprep", "1").await;
    raw::send(&mut s, raw::prepares("early", "SELECT n FROM made_later")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    for _ in 0..2 {
        raw::send(&mut s, raw::runs("early")).await;
        let err = raw::until_ready(&mut s).await.expect("no table yet");
        assert!(err.contains("42P01"), "{err}");
    }
    raw::query(
        &mut s,
        "CREATE TABLE made_later (n int); INSERT INTO made_later VALUES (6)",
    )
    .await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    assert_eq!(raw::value_of(&mut s, "early").await, "6");
    raw::send(
        &mut s,
        raw::prepares("early", "SELECT n + 1 FROM made_later"),
    )
    .await;
    let err = raw::until_ready(&mut s).await.expect("a server read it");
    assert!(err.contains("42P05"), "{err}");
    // Replaced while no server has read it.
    for sql in ["SELECT n FROM nowhere", "SELECT n + 2 FROM made_later"] {
        raw::send(&mut s, raw::prepares("late", sql)).await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    }
    assert_eq!(raw::value_of(&mut s, "late").await, "8");
    // Read by a server in a pipeline whose error made the server skip a
    // Close of it: back, and proven.
    raw::send(&mut s, raw::prepares("div", "SELECT 1/0")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, |b| {
        raw::bind_execute(b, "div", 0);
        frontend::close(b'S', "div", b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("22012"));
    raw::send(&mut s, raw::prepares("div", "SELECT 2")).await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("42P05"));
}

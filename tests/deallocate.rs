//! Transaction mode's `DEALLOCATE`, Close and failed Parse, against a real
//! PostgreSQL: the server knows a client's named statements by the proxy's
//! names, so SQL `DEALLOCATE name` and a Close are answered by the proxy,
//! and the client's names go when a `DEALLOCATE ALL` or `DISCARD ALL` runs
//! (as a Query or through the extended protocol), never when the server
//! refuses or skips it; a Parse the server fails or skips leaves none.

mod support;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use support::raw;

/// SQL `DEALLOCATE name` of a named statement (what psycopg 3 with libpq
/// before 17 and pgx v4 send to evict one): the server knows it by the
/// proxy's name, or not at all, so the proxy answers for it, with the
/// transaction status the server reports; the name is gone after it, as
/// after `DEALLOCATE ALL`.
#[tokio::test]
async fn deallocate_by_name_drops_the_clients_statement() {
    let (_proxy, mut s) = session("dealloc").await;
    for (sql, status) in [
        ("DEALLOCATE _pg3_0", "I"),
        ("deallocate prepare \"_PG3_0\"", "I"),
        ("BEGIN; SELECT 1", "T"),
    ] {
        let name = if sql.contains("_PG3") {
            "_PG3_0"
        } else {
            "_pg3_0"
        };
        raw::send(&mut s, raw::prepares(name, "SELECT 1")).await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
        if status == "T" {
            raw::query(&mut s, sql).await;
            assert_eq!(raw::tags_until_ready(&mut s).await, "CTDCZ");
            raw::query(&mut s, &format!("DEALLOCATE {name}")).await;
        } else {
            raw::query(&mut s, sql).await;
        }
        let (tag, body) = raw::read_msg(&mut s).await.unwrap();
        assert_eq!((tag, &body[..]), (b'C', &b"DEALLOCATE\0"[..]), "{sql}");
        let (tag, body) = raw::read_msg(&mut s).await.unwrap();
        assert_eq!((tag, body[0]), (b'Z', status.as_bytes()[0]), "{sql}");
        raw::send(&mut s, raw::runs(name)).await;
        let err = raw::until_ready(&mut s).await.expect("the name is gone");
        assert!(err.contains("26000"), "{sql}: {err}");
    }
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    // Pipelined behind a query that fails its transaction: PostgreSQL's
    // 25P02, and the statements stay; behind one that doesn't, they go.
    for (opening, fails) in [("BEGIN; SELECT 1/0", true), ("BEGIN; SELECT 1", false)] {
        for name in ["piped", "piped2"] {
            raw::send(&mut s, raw::prepares(name, "SELECT 1")).await;
            // The second time, still there from the first: 42P05.
            let answer = if fails { "1Z" } else { "EZ" };
            assert_eq!(raw::tags_until_ready(&mut s).await, answer);
        }
        raw::send(&mut s, |b| {
            frontend::query(opening, b).unwrap();
            frontend::query("DEALLOCATE piped", b).unwrap();
            frontend::query("DEALLOCATE piped2", b).unwrap();
        })
        .await;
        assert_eq!(raw::until_ready(&mut s).await.is_some(), fails);
        let answers = [
            raw::until_ready(&mut s).await,
            raw::until_ready(&mut s).await,
        ];
        raw::query(&mut s, "ROLLBACK").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        for (name, answer) in ["piped", "piped2"].into_iter().zip(answers) {
            raw::send(&mut s, raw::runs(name)).await;
            let ran = raw::until_ready(&mut s).await;
            if fails {
                let err = answer.expect("refused in the failed transaction");
                assert!(err.contains("25P02"), "{err}");
                assert_eq!(ran, None, "{name} stayed");
            } else {
                assert_eq!(answer, None);
                assert!(ran.expect("gone").contains("26000"));
            }
        }
    }
    // Given back before a DEALLOCATE ALL behind them drops it.
    raw::send(&mut s, raw::prepares("piped", "SELECT 1")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, |b| {
        for sql in [
            "BEGIN; SELECT 1/0",
            "DEALLOCATE piped",
            "ROLLBACK",
            "DEALLOCATE ALL",
        ] {
            frontend::query(sql, b).unwrap();
        }
    })
    .await;
    for _ in 0..4 {
        raw::until_ready(&mut s).await;
    }
    raw::send(&mut s, raw::runs("piped")).await;
    let err = raw::until_ready(&mut s).await.expect("DEALLOCATE ALL ran");
    assert!(err.contains("26000"), "{err}");
    raw::send(&mut s, raw::prepares("kept", "SELECT 1")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::query(&mut s, "DEALLOCATE ALL").await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    raw::send(&mut s, raw::runs("kept")).await;
    let err = raw::until_ready(&mut s).await.expect("DEALLOCATE ALL");
    assert!(err.contains("26000"), "{err}");
}

/// A new tenant's transaction-mode proxy (two connections), and a client
/// logged in to it.
async fn session(tenant: &str) -> (support::Proxy, tokio::net::TcpStream) {
    raw::tx_session(tenant, "2").await
}

/// A transaction-mode session (two connections) that prepared `kept`
/// (`SELECT 1`) and `dealloc` (`DEALLOCATE ALL`); and its proxy.
async fn kept_and_dealloc(tenant: &str) -> (support::Proxy, tokio::net::TcpStream) {
    let (proxy, mut s) = session(tenant).await;
    raw::send(&mut s, |b| {
        frontend::parse("kept", "SELECT 1", [], b).unwrap();
        frontend::parse("dealloc", "DEALLOCATE ALL", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "11Z");
    (proxy, s)
}

/// `DEALLOCATE ALL` and `DISCARD ALL` that the server refuses (in a failed
/// transaction, or `DISCARD ALL` inside one) drop nothing, as in
/// PostgreSQL; nor does a named Parse of one, which runs nothing; and a
/// statement parsed behind a `DEALLOCATE ALL` that runs is still there.
#[tokio::test]
async fn only_a_deallocate_all_that_runs_drops_the_clients_statements() {
    let (_proxy, mut s) = kept_and_dealloc("deallocall").await;
    raw::send(&mut s, raw::runs("kept")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ", "a Parse ran");
    for failing in [
        "BEGIN; SELECT 1/0; DEALLOCATE ALL",
        "BEGIN; SELECT 1/0; DISCARD ALL",
        "BEGIN; DISCARD ALL",
    ] {
        raw::query(&mut s, failing).await;
        assert!(raw::until_ready(&mut s).await.is_some(), "{failing}");
        raw::query(&mut s, "ROLLBACK").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        raw::send(&mut s, raw::runs("kept")).await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ", "{failing}");
    }
    // Runs, with a statement parsed behind it in the same write.
    raw::send(&mut s, |b| {
        frontend::query("DEALLOCATE ALL", b).unwrap();
        frontend::parse("after", "SELECT 2", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, raw::runs("after")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    raw::send(&mut s, raw::runs("kept")).await;
    let err = raw::until_ready(&mut s).await.expect("DEALLOCATE ALL ran");
    assert!(err.contains("26000"), "{err}");
}

/// The same through the extended protocol (pgjdbc runs its SQL so): the
/// names go when an Execute of `DEALLOCATE ALL` or `DISCARD ALL` is
/// answered as done, not at its Parse or Bind, which a failed transaction
/// refuses; named and unnamed statements and portals alike.
#[tokio::test]
async fn an_extended_deallocate_all_drops_names_only_when_it_runs() {
    let (_proxy, mut s) = kept_and_dealloc("deallocext").await;
    let unnamed = |sql: &'static str| {
        move |b: &mut BytesMut| {
            frontend::parse("", sql, [], b).unwrap();
            raw::bind_execute(b, "", 0);
            frontend::sync(b);
        }
    };
    // A named statement's Bind, an unnamed one's Parse: refused in the block.
    for (opening, sql, code) in [
        ("BEGIN; SELECT 1/0", None, "25P02"),
        ("BEGIN; SELECT 1/0", Some("DEALLOCATE ALL"), "25P02"),
        ("BEGIN", Some("DISCARD ALL"), "25001"),
    ] {
        raw::query(&mut s, opening).await;
        raw::until_ready(&mut s).await;
        match sql {
            None => raw::send(&mut s, raw::runs("dealloc")).await,
            Some(sql) => raw::send(&mut s, unnamed(sql)).await,
        }
        let err = raw::until_ready(&mut s)
            .await
            .expect("refused in the block");
        assert!(err.contains(code), "{err}");
        raw::query(&mut s, "ROLLBACK").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        raw::send(&mut s, raw::runs("kept")).await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ", "{code}");
    }
    // Runs, bound to a named portal, with another bound to a reset and
    // the unnamed one to another statement, and a statement parsed behind
    // it in the same pipeline.
    raw::send(&mut s, |b| {
        frontend::parse("reset", "RESET ALL", [], b).unwrap();
        for (portal, statement) in [("p", "dealloc"), ("r", "reset")] {
            raw::bind_portal(b, portal, statement);
        }
        raw::bind_execute(b, "kept", 0);
        frontend::execute("p", 0, b).unwrap();
        frontend::parse("after", "SELECT 2", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1222DCC1Z");
    raw::send(&mut s, raw::runs("after")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    for gone in ["kept", "dealloc"] {
        raw::send(&mut s, raw::runs(gone)).await;
        let err = raw::until_ready(&mut s).await.expect("DEALLOCATE ALL ran");
        assert!(err.contains("26000"), "{gone}: {err}");
    }
    // The unnamed statement's, run.
    raw::send(&mut s, unnamed("DISCARD ALL")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "12CZ");
    raw::send(&mut s, raw::runs("after")).await;
    let err = raw::until_ready(&mut s).await.expect("DISCARD ALL ran");
    assert!(err.contains("26000"), "{err}");
}

/// A `DEALLOCATE name` sent as a Query behind an extended-protocol
/// message that fails is skipped by the server, up to the Sync: the
/// statement stays, and binds afterwards.
#[tokio::test]
async fn a_deallocate_the_server_skips_drops_nothing() {
    let (_proxy, mut s) = session("deallocskip").await;
    raw::send(&mut s, raw::prepares("kept", "SELECT 1")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::behind_an_error(&mut s, |b| frontend::query("DEALLOCATE kept", b).unwrap()).await;
    raw::send(&mut s, raw::runs("kept")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
}

/// So is a Close behind a message that fails: PostgreSQL skips it with the
/// rest of the pipeline, and the statement binds afterwards. A Close the
/// server reached before the error still drops the name.
#[tokio::test]
async fn a_close_the_server_skips_drops_nothing() {
    let (_proxy, mut s) = session("closeskip").await;
    raw::send(&mut s, |b| {
        frontend::parse("kept", "SELECT 1", [], b).unwrap();
        frontend::parse("gone", "SELECT 2", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "11Z");
    raw::send(&mut s, |b| {
        frontend::parse("", "SELECT 0", [], b).unwrap();
        frontend::close(b'S', "gone", b).unwrap();
        frontend::parse("", "SELECT nope", [], b).unwrap();
        frontend::close(b'S', "kept", b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "13EZ");
    raw::send(&mut s, raw::runs("kept")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    raw::send(&mut s, raw::runs("gone")).await;
    let err = raw::until_ready(&mut s)
        .await
        .expect("closed before the error");
    assert!(err.contains("26000"), "{err}");
    // Behind a Query the error made the server skip as well.
    raw::behind_an_error(&mut s, |b| {
        frontend::query("SELECT 1", b).unwrap();
        frontend::close(b'S', "kept", b).unwrap();
    })
    .await;
    raw::send(&mut s, raw::runs("kept")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
}

/// A named Parse that the server fails (a missing table) or skips (behind
/// an error in its pipeline) leaves no statement, as on PostgreSQL: a Bind
/// of it gets 26000. A Close and a Parse of one name, both skipped, leave
/// it as it was.
#[tokio::test]
async fn a_parse_the_server_fails_or_skips_leaves_no_statement() {
    // One connection: `five`, run, is on it when `also_five` comes.
    let (_proxy, mut s) = raw::tx_session("parsefail", "1").await;
    // (Described: a Parse and Sync alone the proxy answers itself.)
    raw::send(&mut s, |b| {
        frontend::parse("missing", "SELECT * FROM no_such_table", [], b).unwrap();
        frontend::describe(b'S', "missing", b).unwrap();
        frontend::sync(b);
    })
    .await;
    let err = raw::until_ready(&mut s).await.expect("no such table");
    assert!(err.contains("42P01"), "{err}");
    raw::send(&mut s, |b| {
        frontend::parse("one", "SELECT 1", [], b).unwrap();
        frontend::parse("five", "SELECT 5", [], b).unwrap();
        raw::bind_execute(b, "five", 0);
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "112DCZ");
    raw::behind_an_error(&mut s, |b| {
        frontend::parse("skipped", "SELECT 3", [], b).unwrap();
        // A text the connection has already (answered by the proxy).
        frontend::parse("also_five", "SELECT 5", [], b).unwrap();
        frontend::close(b'S', "one", b).unwrap();
        frontend::parse("one", "VALUES (1), (2)", [], b).unwrap();
        frontend::parse("closed", "SELECT 6", [], b).unwrap();
        frontend::close(b'S', "closed", b).unwrap();
    })
    .await;
    for gone in ["missing", "skipped", "also_five", "closed"] {
        raw::send(&mut s, raw::runs(gone)).await;
        let err = raw::until_ready(&mut s).await.expect("never parsed");
        assert!(err.contains("26000"), "{gone}: {err}");
    }
    // The first `one` (one row), not the skipped one (two).
    raw::send(&mut s, raw::runs("one")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    raw::send(&mut s, raw::runs("five")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    // One text parsed twice in a pipeline, failing, then working: each
    // Parse gets the server's own answer, and the last one decides what
    // the connection has (so the next Parse of it is answered at once).
    let described = |name: &'static str| {
        move |b: &mut BytesMut| {
            frontend::parse(name, "SELECT * FROM made_later", [], b).unwrap();
            frontend::describe(b'S', name, b).unwrap();
            frontend::sync(b);
        }
    };
    raw::send(&mut s, |b| {
        described("early")(b);
        frontend::query("CREATE TABLE made_later (n int)", b).unwrap();
        described("late")(b);
    })
    .await;
    let err = raw::until_ready(&mut s).await.expect("not made yet");
    assert!(err.contains("42P01"), "{err}");
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    assert_eq!(raw::tags_until_ready(&mut s).await, "1tTZ");
    raw::send(&mut s, described("again")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1tTZ");
    raw::send(&mut s, raw::runs("again")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2CZ");
    // Twice in a pipeline, working: the second is no duplicate (42P05)
    // on the server, and binds.
    raw::send(&mut s, |b| {
        frontend::parse("first", "SELECT 7", [], b).unwrap();
        frontend::parse("second", "SELECT 7", [], b).unwrap();
        raw::bind_execute(b, "second", 0);
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "112DCZ");
    raw::send(&mut s, raw::runs("first")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
    // In a failed transaction, even a text the connection has: 25P02.
    raw::query(&mut s, "BEGIN; SELECT 1/0").await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("22012"));
    raw::send(&mut s, raw::prepares("in_failed", "SELECT 5")).await;
    let err = raw::until_ready(&mut s).await.expect("transaction failed");
    assert!(err.contains("25P02"), "{err}");
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "CZ");
    raw::send(&mut s, raw::runs("in_failed")).await;
    let err = raw::until_ready(&mut s).await.expect("never parsed");
    assert!(err.contains("26000"), "{err}");
    raw::send(&mut s, raw::runs("five")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
}

/// Failed Parses don't count against the session's limit of statements:
/// a client that names each attempt anew (asyncpg numbers its statements,
/// and describes each) and keeps failing (a column a migration has yet to
/// add) can still prepare past it.
#[tokio::test]
async fn failed_parses_never_fill_the_session() {
    let (_proxy, mut s) = session("parsefill").await;
    const LIMIT: usize = 10_000;
    let failing = |first: usize, n: usize| {
        move |b: &mut BytesMut| {
            for i in first..first + n {
                let name = format!("__stmt_{i}__");
                frontend::parse(&name, "SELECT not_yet_a_column", [], b).unwrap();
                frontend::describe(b'S', &name, b).unwrap();
                frontend::sync(b);
            }
        }
    };
    for first in (0..=LIMIT).step_by(500) {
        let n = (LIMIT + 1 - first).min(500);
        raw::send(&mut s, failing(first, n)).await;
        for _ in 0..n {
            let err = raw::until_ready(&mut s).await.expect("no such column");
            assert!(err.contains("42703"), "{err}");
        }
    }
    // One short of the limit, by prepares alone (which the proxy answers
    // itself, without a server), then one more failure: the next prepare
    // still fits.
    for first in (0..LIMIT - 1).step_by(500) {
        let n = (LIMIT - 1 - first).min(500);
        raw::send(&mut s, |b| {
            for i in first..first + n {
                frontend::parse(&format!("ok_{i}"), "SELECT 1", [], b).unwrap();
            }
            frontend::sync(b);
        })
        .await;
        assert_eq!(raw::tags(&mut s, n + 1).await, "1".repeat(n) + "Z");
    }
    raw::send(&mut s, failing(LIMIT + 1, 1)).await;
    assert!(raw::until_ready(&mut s).await.unwrap().contains("42703"));
    raw::send(&mut s, raw::prepares("works", "SELECT 1")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    raw::send(&mut s, raw::runs("works")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ");
}

//! Transaction mode's bookkeeping of statements, against a real
//! PostgreSQL: named statements per session (bounded), the unnamed
//! statement across round trips, what the server skips after an error,
//! and the replies the proxy gives itself (backpressure, and a batch past
//! their cap). A client's statements must never run on another's behalf,
//! nor a connection's cache say something the server doesn't hold.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use support::{raw, registry, sqlstate};

/// Transaction mode keeps each named statement for the session: past
/// 10,000 a Parse gets 54000, and the session goes on; closing one makes
/// room.
#[tokio::test]
async fn a_session_holds_a_bounded_number_of_prepared_statements() {
    let reg = registry();
    let t = reg.create_tenant("manystmts");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", "transaction")]);
    let c = proxy.client_ok(&key).await;
    let mut kept = Vec::new();
    for i in 0..10_000 {
        kept.push(c.prepare(&format!("SELECT {i}")).await.unwrap());
    }
    let e = c.prepare("SELECT 'one too many'").await.unwrap_err();
    assert_eq!(sqlstate(&e), "54000", "{e:?}");
    let n: i32 = c.query_one(&kept[42], &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    drop(kept.pop());
    let st = c.prepare("SELECT 'room again'").await.unwrap();
    let v: String = c.query_one(&st, &[]).await.unwrap().get(0);
    assert_eq!(v, "room again");
}

/// The names count too: a client's name for a statement is kept with it,
/// and can be as long as a message. 64 one-MiB names fill the budget.
#[tokio::test]
async fn long_statement_names_count_toward_the_sessions_budget() {
    let reg = registry();
    let t = reg.create_tenant("longnames");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", "transaction")]);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    for i in 0..70 {
        let name = format!("{i:02}{}", "n".repeat(1 << 20));
        raw::send(&mut s, |b| {
            frontend::parse(&name, "SELECT 1", [], b).unwrap();
            frontend::sync(b);
        })
        .await;
        if let Some(e) = raw::until_ready(&mut s).await {
            assert!(e.contains("54000"), "{e}");
            assert!(i < 64, "refused only at statement {i}");
            return;
        }
    }
    panic!("70 statements with one-MiB names were kept");
}

/// Parse (named), Bind and Execute of `sql`, then Sync.
fn run_named(b: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, [], b).unwrap();
    raw::bind_execute(b, name, 1);
    frontend::sync(b);
}

/// A proxy in transaction mode with one server connection for the two
/// clients (logged in) it returns.
async fn two_clients_one_connection(
    tenant: &str,
) -> (support::Proxy, tokio::net::TcpStream, tokio::net::TcpStream) {
    let reg = registry();
    let t = reg.create_tenant(tenant);
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let (a, _, _) = raw::startup(proxy.addr, &key).await;
    let (b, _, _) = raw::startup(proxy.addr, &key).await;
    (proxy, a, b)
}

/// Binds and runs the unnamed statement: the reply's tags, and each row's
/// first column or error's fields.
async fn run_unnamed(s: &mut tokio::net::TcpStream) -> (String, Vec<String>) {
    raw::send(s, |b| {
        raw::bind_execute(b, "", 0);
        frontend::sync(b);
    })
    .await;
    let (mut tags, mut rows) = (String::new(), Vec::new());
    loop {
        let (tag, body) = raw::read_msg(s).await.expect("reply");
        tags.push(tag as char);
        match tag {
            b'D' => rows.push(String::from_utf8_lossy(&body[6..]).into_owned()),
            b'E' => rows.push(String::from_utf8_lossy(&body).into_owned()),
            b'Z' => return (tags, rows),
            _ => {}
        }
    }
}

/// An error in an unsynced pipeline makes the server skip everything up
/// to the client's next Sync, also what the client sends after the error
/// arrived. Transaction mode prepares named statements under names of its
/// own: a Parse the server skipped must not count as prepared, or the
/// same statement later gets 26000 (and every client of that connection
/// with it).
#[tokio::test]
async fn messages_the_server_skips_after_an_error_are_not_counted_as_done() {
    let reg = registry();
    let t = reg.create_tenant("skipped");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    raw::send(&mut s, |b| {
        raw::run_unsynced(b, "SELECT * FROM no_such_table")
    })
    .await;
    assert_eq!(raw::tags(&mut s, 1).await, "E");
    raw::send(&mut s, |b| run_named(b, "s1", "SELECT 42")).await;
    assert_eq!(
        raw::tags(&mut s, 1).await,
        "Z",
        "all but the Sync was skipped"
    );
    raw::send(&mut s, |b| run_named(b, "s1", "SELECT 42")).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "12DCZ");
    // Another client of the one connection prepares the same text.
    let c = proxy.client_ok(&key).await;
    let row = c.query_one("SELECT 42", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}

/// Transaction mode answers a Close of a statement itself: a client that
/// streams them behind a slow query and never reads must meet
/// backpressure, as it would from PostgreSQL, not grow the proxy without
/// bound.
#[tokio::test]
async fn replies_the_proxy_gives_itself_meet_backpressure() {
    use tokio::io::AsyncWriteExt;
    const TOTAL: usize = 48 << 20;
    let reg = registry();
    let t = reg.create_tenant("noreader");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", "transaction")]);
    let (s, _, _) = raw::startup(proxy.addr, &key).await;
    let (_read, mut write) = s.into_split();
    let mut batch = BytesMut::new();
    frontend::query("SELECT pg_sleep(5)", &mut batch).unwrap();
    write.write_all(&batch).await.unwrap();
    batch.clear();
    while batch.len() < 64 * 1024 {
        frontend::close(b'S', "s", &mut batch).unwrap();
    }
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = written.clone();
    let writer = tokio::spawn(async move {
        while count.load(std::sync::atomic::Ordering::Relaxed) < TOTAL {
            if write.write_all(&batch).await.is_err() {
                return;
            }
            count.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = written.load(std::sync::atomic::Ordering::Relaxed);
    writer.abort();
    assert!(
        n < TOTAL / 2,
        "{} MiB taken from a client that reads nothing",
        n >> 20
    );
    // The proxy serves others meanwhile.
    let c = proxy.client_ok(&key).await;
    c.simple_query("SELECT 1").await.unwrap();
}

/// Transaction mode: the unnamed statement lives on one server connection.
/// A client that prepares it in one round trip (Parse, Describe, Sync) and
/// runs it in the next (`PQprepare(conn, "", …)` then `PQexecPrepared`,
/// pgx's describe-then-execute) keeps its connection in between: another
/// client's unnamed statement never runs in its place.
#[tokio::test]
async fn an_unnamed_statement_prepared_in_one_round_trip_runs_in_the_next() {
    let (_proxy, mut a, mut b) = two_clients_one_connection("unnamed").await;
    raw::send(&mut a, |b| {
        frontend::parse("", "SELECT 'a'::text", [], b).unwrap();
        frontend::describe(b'S', "", b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "1tTZ");
    // Another client runs its own unnamed statement meanwhile.
    let other = tokio::spawn(async move {
        raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
        raw::tags_until_ready(&mut b).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw::send(&mut a, |b| {
        raw::bind_execute(b, "", 0);
        frontend::sync(b);
    })
    .await;
    let mut rows = Vec::new();
    loop {
        let (tag, body) = raw::read_msg(&mut a).await.expect("reply");
        match tag {
            b'D' => rows.push(body),
            b'E' => panic!("{}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].ends_with(b"a"),
        "ran another client's statement: {:?}",
        rows[0]
    );
    assert_eq!(
        other.await.unwrap(),
        "12DCZ",
        "the other client is served after"
    );
}

/// PostgreSQL keeps the unnamed statement across transactions, until the
/// next unnamed Parse or simple Query: bound again in a later transaction
/// it runs, though its connection ran another client's unnamed statement
/// meanwhile, or a read-back of settings that drops it, and what it does
/// to settings is read back each time. After a Query, a Close or a Parse
/// the server refused, there is none (26000), as there.
#[tokio::test]
async fn an_unnamed_statement_is_bound_again_in_a_later_transaction() {
    let (_proxy, mut a, mut b) = two_clients_one_connection("unnamedlater").await;
    raw::send(&mut a, |b| run_named(b, "", "SELECT 'a'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
    raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    assert_eq!(run_unnamed(&mut a).await, ("2DCZ".into(), vec!["a".into()]));

    // Pipelined: the Describe's Parse again is skipped after the error;
    // the Bind after the Sync does not take b's statement for a's. (Both
    // without settings of their own: no Query of the proxy's drops b's.)
    raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    raw::send(&mut a, |buf| run_named(buf, "", "SELECT 'a'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
    raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    raw::send(&mut a, |buf| {
        raw::bind_execute(buf, "no_such_statement", 0);
        frontend::describe(b'S', "", buf).unwrap();
        frontend::sync(buf);
        raw::bind_execute(buf, "", 0);
        frontend::sync(buf);
    })
    .await;
    assert!(raw::until_ready(&mut a).await.is_some());
    let (mut tags, mut rows) = (String::new(), Vec::new());
    while !tags.ends_with('Z') {
        let (tag, body) = raw::read_msg(&mut a).await.expect("reply");
        tags.push(tag as char);
        if tag == b'D' {
            rows.push(String::from_utf8_lossy(&body[6..]).into_owned());
        }
    }
    assert_eq!((tags.as_str(), &rows[..]), ("2DCZ", &["a".to_owned()][..]));

    // A statement that changes a setting: read back after each run, by a
    // Query of the proxy's that drops the unnamed one; b's transactions in
    // between get the connection without it, a's with it.
    let bump = "SELECT set_config('app.n', (coalesce(nullif(current_setting('app.n', true), \
                ''), '0')::int + 1)::text, false)";
    raw::send(&mut a, |b| run_named(b, "", bump)).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
    for n in ["2", "3"] {
        // (b never sees a's setting.)
        raw::send(&mut b, |buf| {
            run_named(
                buf,
                "",
                "SELECT coalesce(current_setting('app.n', true), '')",
            )
        })
        .await;
        let mut got = Vec::new();
        loop {
            let (tag, body) = raw::read_msg(&mut b).await.expect("reply");
            match tag {
                b'D' => got.push(body[6..].to_vec()),
                b'Z' => break,
                _ => {}
            }
        }
        assert_eq!(got, vec![Vec::<u8>::new()]);
        let (tags, rows) = run_unnamed(&mut a).await;
        assert_eq!(rows, vec![n], "{tags}");
    }

    // Longer than the buffer kept between transactions: kept within one,
    // for a Bind pipelined behind the Parse's Sync, and after it.
    let long = format!("SELECT 'long'::text /* {} */", "x".repeat(9000));
    raw::send(&mut a, |buf| {
        frontend::parse("", &long, [], buf).unwrap();
        frontend::sync(buf);
        raw::bind_execute(buf, "", 0);
        frontend::sync(buf);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "1Z");
    assert_eq!(raw::tags_until_ready(&mut a).await, "2DCZ");
    raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    assert_eq!(
        run_unnamed(&mut a).await,
        ("2DCZ".into(), vec!["long".into()])
    );

    /// What drops the unnamed statement, and the messages that do it.
    type Drop = (&'static str, fn(&mut BytesMut));
    let gone: [Drop; 3] = [
        ("a Query", |b| frontend::query("SELECT 1", b).unwrap()),
        ("a Close", |b| {
            frontend::close(b'S', "", b).unwrap();
            frontend::sync(b);
        }),
        ("a failed Parse", |b| {
            frontend::parse("", "SELEC 1", [], b).unwrap();
            frontend::sync(b);
        }),
    ];
    for (what, message) in gone {
        raw::send(&mut a, |b| run_named(b, "", "SELECT 'a'::text")).await;
        assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
        raw::send(&mut a, message).await;
        raw::tags_until_ready(&mut a).await;
        // b's statement where a's was: a has none to parse again.
        raw::send(&mut b, |buf| run_named(buf, "", "SELECT 'b'::text")).await;
        assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
        let (tags, rows) = run_unnamed(&mut a).await;
        assert_eq!(tags, "EZ", "after {what}: {rows:?}");
        assert!(rows[0].contains("C26000"), "after {what}: {rows:?}");
    }
}

/// A message other than COPY's inside a COPY FROM STDIN: PostgreSQL fails
/// the copy there, then answers the Sync it ignored during the copy,
/// which would put the proxy's reckoning of replies, and of whose unnamed
/// statement the connection holds, out of step. The session ends with
/// 08P01; the next client gets a clean connection.
#[tokio::test]
async fn a_statement_sent_inside_a_copy_ends_the_session() {
    let (_proxy, mut a, mut b) = two_clients_one_connection("copyparse").await;
    raw::query(&mut b, "CREATE TABLE copied (v text)").await;
    assert!(raw::until_ready(&mut b).await.is_none());
    raw::query(&mut a, "COPY copied FROM STDIN").await;
    assert_eq!(raw::read_msg(&mut a).await.expect("CopyInResponse").0, b'G');
    raw::send(&mut a, |buf| {
        buf.extend_from_slice(b"d\0\0\0\x06x\n");
        frontend::parse("", "SELECT 1", [], buf).unwrap();
        frontend::sync(buf);
    })
    .await;
    let mut err = String::new();
    while let Some((tag, body)) = raw::read_msg(&mut a).await {
        if tag == b'E' {
            err = String::from_utf8_lossy(&body).into_owned();
        }
    }
    assert!(
        err.contains("C08P01") && err.contains("during COPY"),
        "{err}"
    );
    raw::send(&mut b, |buf| {
        run_named(buf, "", "SELECT count(*)::text FROM copied")
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    let (tags, rows) = run_unnamed(&mut b).await;
    assert_eq!(rows, vec!["0"], "{tags}");
}

/// The unnamed statement holds its connection only while there is one to
/// bind: after the server refused its Parse, or the client closed it, the
/// connection goes back (another client is served).
#[tokio::test]
async fn an_unnamed_statement_that_is_gone_holds_nothing() {
    let reg = registry();
    let t = reg.create_tenant("unnamedgone");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "3000"),
    ]);
    let (mut a, _, _) = raw::startup(proxy.addr, &key).await;
    let other = proxy.client_ok(&key).await;
    // (Parse and Describe first: the unnamed statement holds the
    // connection; then what ends it; then another client is served.)
    /// Parse and Describe first?, the message, its reply's tags, what it is.
    type Step = (bool, fn(&mut BytesMut), &'static str, &'static str);
    let steps: [Step; 3] = [
        (
            false,
            |b| frontend::parse("", "SELEC 1", [], b).unwrap(),
            "EZ",
            "a failed Parse",
        ),
        (
            true,
            |b| frontend::close(b'S', "", b).unwrap(),
            "3Z",
            "a Close",
        ),
        // The firewall refuses it: gone on the server too.
        (
            true,
            |b| frontend::parse("", "SELECT * FROM tenant_other.t", [], b).unwrap(),
            "EZ",
            "a refused Parse",
        ),
    ];
    for (unbound_first, message, tags, what) in steps {
        if unbound_first {
            raw::send(&mut a, |b| {
                frontend::parse("", "SELECT 1", [], b).unwrap();
                frontend::describe(b'S', "", b).unwrap();
                frontend::sync(b);
            })
            .await;
            assert_eq!(raw::tags_until_ready(&mut a).await, "1tTZ");
        }
        raw::send(&mut a, |b| {
            message(b);
            frontend::sync(b);
        })
        .await;
        assert_eq!(raw::tags_until_ready(&mut a).await, tags, "{what}");
        if let Err(e) = other.simple_query("SELECT 1").await {
            panic!("held after {what}: {e}");
        }
    }
}

/// Past its cap on awaited replies the proxy stops reading the client; the
/// answers it gives itself (here to Closes) wait behind a reply the server
/// holds until a Sync or Flush, and the Sync is unread behind the cap: the
/// proxy asks the server to flush, and the batch completes.
#[tokio::test]
async fn a_batch_past_the_reply_cap_completes() {
    const CLOSES: usize = 20_000;
    let reg = registry();
    let t = reg.create_tenant("manycloses");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", "transaction")]);
    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    raw::send(&mut s, |b| {
        frontend::parse("s1", "SELECT 1", [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "1Z");
    let (mut read, mut write) = s.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut b = BytesMut::new();
        raw::bind_execute(&mut b, "s1", 1);
        for _ in 0..CLOSES {
            frontend::close(b'S', "nothing", &mut b).unwrap();
        }
        frontend::sync(&mut b);
        write.write_all(&b).await.unwrap();
        write
    });
    let tags = tokio::time::timeout(Duration::from_secs(30), async {
        let mut tags = String::new();
        loop {
            let (tag, _) = raw::read_msg(&mut read).await.expect("reply");
            tags.push(tag as char);
            if tag == b'Z' {
                return tags;
            }
        }
    })
    .await
    .expect("the batch hangs");
    assert_eq!(tags, format!("2DC{}Z", "3".repeat(CLOSES)));
    drop(writer.await.unwrap());
}

/// A named Parse the firewall refuses leaves the unnamed statement alone,
/// as PostgreSQL's failed named Parse does. Both modes.
#[tokio::test]
async fn a_refused_named_parse_keeps_the_unnamed_statement() {
    let reg = registry();
    let t = reg.create_tenant("refusednamed");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", mode)]);
        let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
        raw::send(&mut s, |b| {
            frontend::parse("", "SELECT 42", [], b).unwrap();
            frontend::sync(b);
        })
        .await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "1Z", "{mode}");
        raw::send(&mut s, |b| {
            frontend::parse("s1", "SELECT * FROM tenant_other.t", [], b).unwrap();
            frontend::sync(b);
        })
        .await;
        let err = raw::until_ready(&mut s).await.expect("refused");
        assert!(err.contains("cross_schema"), "{mode}: {err}");
        raw::send(&mut s, |b| {
            raw::bind_execute(b, "", 0);
            frontend::sync(b);
        })
        .await;
        assert_eq!(raw::tags_until_ready(&mut s).await, "2DCZ", "{mode}");
    }
}

/// Transaction mode: the unnamed statement lives on the connection its
/// Parse went to. A client that binds it again in a later transaction
/// gets its own parsed again there, or PostgreSQL's answer for a missing
/// one (26000), never the unnamed statement another client parsed there
/// since.
#[tokio::test]
async fn a_client_never_binds_another_clients_unnamed_statement() {
    let (_proxy, mut a, mut b) = two_clients_one_connection("unnamedowner").await;
    let run = |sql: &'static str| move |buf: &mut BytesMut| run_named(buf, "", sql);
    raw::send(&mut a, run("SELECT 'a' AS col_a")).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
    raw::send(&mut b, run("SELECT 'b' AS col_b")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    let (tags, rows) = run_unnamed(&mut a).await;
    assert_eq!((tags.as_str(), &rows[..]), ("2DCZ", &["a".to_owned()][..]));
    raw::send(&mut b, run("SELECT 'b' AS col_b")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    raw::send(&mut a, |buf| {
        frontend::describe(b'S', "", buf).unwrap();
        frontend::sync(buf);
    })
    .await;
    let mut described = String::new();
    loop {
        let (tag, body) = raw::read_msg(&mut a).await.expect("reply");
        described.push(tag as char);
        if tag == b'T' {
            assert!(body.windows(5).any(|w| w == b"col_a"), "{body:?}");
        }
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(described, "tTZ");
    raw::send(&mut a, run("SELECT 'a'")).await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "12DCZ");
    // An unnamed Parse the server skips (an error before it in the
    // pipeline) makes nothing a's: b's statement stays b's.
    raw::send(&mut b, run("SELECT 'b'")).await;
    assert_eq!(raw::tags_until_ready(&mut b).await, "12DCZ");
    raw::send(&mut a, |buf| {
        raw::bind_execute(buf, "no_such_statement", 0);
        frontend::parse("", "SELECT 'a'", [], buf).unwrap();
        frontend::sync(buf);
    })
    .await;
    let err = raw::until_ready(&mut a).await.expect("no such statement");
    assert!(err.contains("26000"), "{err}");
    raw::send(&mut a, |buf| {
        raw::bind_execute(buf, "", 0);
        frontend::sync(buf);
    })
    .await;
    let err = raw::until_ready(&mut a).await.expect("not a's statement");
    assert!(err.contains("unnamed prepared statement"), "{err}");
    // Unless a's next Parse was already on its way: then it is a's.
    raw::send(&mut a, |buf| {
        raw::bind_execute(buf, "no_such_statement", 0);
        frontend::parse("", "SELECT 'skipped'", [], buf).unwrap();
        frontend::sync(buf);
        frontend::parse("", "SELECT 'a2'", [], buf).unwrap();
        frontend::describe(b'S', "", buf).unwrap();
        frontend::sync(buf);
    })
    .await;
    assert!(raw::until_ready(&mut a).await.is_some());
    assert_eq!(raw::tags_until_ready(&mut a).await, "1tTZ");
    raw::send(&mut a, |buf| {
        raw::bind_execute(buf, "", 0);
        frontend::sync(buf);
    })
    .await;
    assert_eq!(raw::tags_until_ready(&mut a).await, "2DCZ");
}

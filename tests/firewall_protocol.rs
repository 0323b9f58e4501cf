//! The firewall at the level of protocol messages: what a session may
//! remember of verdicts (repeated Parse and Query texts, inner NULs), the
//! FunctionCall message, a server that stops reading SQL as the firewall
//! does, and long texts, read off the event loop.

mod support;

use support::metrics::{metric, metrics_addr, scrape_until};
use support::registry;
use support::two_tenants::{Two, direct_as, fill, rows, two_tenants};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

/// A session that sends the same unnamed Parse again (what drivers do for
/// every execution), or a simple query that differs only in its numbers,
/// gets the verdict it got last without a new look, but only for a text
/// that was cleared and has no session effect: a refused text is refused
/// every time, and in transaction mode a text that changes settings is
/// read every time.
#[tokio::test]
async fn only_cleared_texts_are_remembered() {
    let two = two_tenants().await;
    let reg = registry();
    let allowed = "SELECT secret FROM t WHERE secret LIKE $1";
    let refused = fill("SELECT secret FROM {B}.t WHERE secret LIKE $1", &two);
    let setting = "SELECT set_config('application_name', $1, false)";
    // Session mode doesn't track session effects: the setting's text is
    // remembered there too.
    for (mode, repeats) in [("session", 5.0), ("transaction", 4.0)] {
        let maddr = metrics_addr();
        let proxy = reg.proxy(&[
            ("PGTENANT_FIREWALL_MODE", "enforce"),
            ("PGTENANT_POOL_MODE", mode),
            ("PGTENANT_METRICS_ADDR", &maddr),
        ]);
        let c = proxy.client_ok(&two.key_a).await;
        let like = [(&"marker%" as &(dyn ToSql + Sync), Type::TEXT)];
        for round in 0..3 {
            let rows = c.query_typed(allowed, &like).await.unwrap();
            let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(got.len(), 1, "{mode}, round {round}: {got:?}");
            assert!(got[0].starts_with("marker-a-"), "{mode}: {got:?}");
            let e = c.query_typed(&refused, &like).await.expect_err(&refused);
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
        }
        // Simple queries that differ only in their numbers.
        for n in [1, 22, 333] {
            let sql = format!("SELECT secret FROM t WHERE length(secret) > 1 LIMIT {n}");
            assert_eq!(rows(&c.simple_query(&sql).await.unwrap()).len(), 1, "{sql}");
            let sql = fill(
                &format!("SELECT secret FROM {{B}}.t WHERE length(secret) > {n}"),
                &two,
            );
            let e = c.simple_query(&sql).await.expect_err(&sql);
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
        }
        for name in ["one", "two"] {
            c.query_typed(setting, &[(&name, Type::TEXT)])
                .await
                .unwrap();
        }
        let shown = rows(&c.simple_query("SHOW application_name").await.unwrap());
        assert_eq!(shown, vec![vec![Some("two".into())]], "{mode}");
        let body = scrape_until(&maddr, "the repeats counter", |t| {
            metric(t, "pgtenant_firewall_repeats_total", &[]).is_some()
        })
        .await;
        assert_eq!(
            metric(&body, "pgtenant_firewall_repeats_total", &[]),
            Some(repeats),
            "{mode}"
        );
    }
}

/// Repeats are looked up on a message's raw bytes, before its NUL is
/// searched for: a Query whose text before an inner NUL repeats a
/// remembered one, or a Parse whose remembered text runs on before its
/// NUL, is no repeat. What follows an inner NUL never runs: PostgreSQL
/// refuses such a message whole.
#[tokio::test]
async fn a_nul_inside_a_message_never_makes_a_repeat() {
    use bytes::BufMut;
    use postgres_protocol::message::frontend;
    use support::raw;

    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    let (mut s, _, _) = raw::startup(proxy.addr, &two.key_a).await;
    // An ErrorResponse's SQLSTATE and message.
    let fields = |e: Option<String>| {
        let e = e.unwrap_or_default();
        let field = |k: char| {
            e.split('\0')
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or("")
                .to_string()
        };
        (field('C'), field('M'))
    };

    // Remembered: a cleared simple query and a cleared Parse.
    raw::query(&mut s, "SELECT secret FROM t LIMIT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    let parse = "SELECT secret FROM t WHERE secret LIKE $1";
    raw::send(&mut s, |b| {
        frontend::parse("", parse, [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    assert_eq!(raw::until_ready(&mut s).await, None);

    // The remembered query but for its number, a NUL, then a statement
    // on the other tenant: refused by PostgreSQL as a whole.
    let body = fill("SELECT secret FROM t LIMIT 2\0DELETE FROM {B}.t", &two);
    raw::send(&mut s, |b| {
        b.put_u8(b'Q');
        b.put_i32(4 + body.len() as i32 + 1);
        b.put_slice(body.as_bytes());
        b.put_u8(0);
    })
    .await;
    let (code, message) = fields(raw::until_ready(&mut s).await);
    assert_eq!(code, "08P01", "{message}");

    // The remembered Parse text running on before its NUL: read, and
    // refused by the firewall (not only by the backend role).
    let longer = fill(&format!("{parse} UNION SELECT secret FROM {{B}}.t"), &two);
    raw::send(&mut s, |b| {
        frontend::parse("", &longer, [], b).unwrap();
        frontend::sync(b);
    })
    .await;
    let (code, message) = fields(raw::until_ready(&mut s).await);
    assert_eq!(code, "42501", "{message}");
    assert!(message.starts_with("pgtenant: "), "{message}");

    // The session goes on, and the other tenant's row is still there.
    raw::query(&mut s, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    assert_b_untouched(&two).await;
}

/// B's table holds its marker row and nothing else.
async fn assert_b_untouched(two: &Two) {
    let b = direct_as(&two.b).await;
    let left = b
        .query(&fill("SELECT secret FROM {B}.t", two), &[])
        .await
        .unwrap();
    let left: Vec<String> = left.iter().map(|r| r.get(0)).collect();
    assert_eq!(left, vec![two.marker_b.clone()]);
}

/// A FunctionCall message (libpq's `PQfn`) names its function by OID and
/// carries no SQL: only the large-object functions may be called so.
#[tokio::test]
async fn the_function_call_message_reaches_only_large_objects() {
    use bytes::BufMut;
    use support::raw;

    let two = two_tenants().await;
    let maddr = metrics_addr();
    let proxy = registry().proxy(&[
        ("PGTENANT_FIREWALL_MODE", "enforce"),
        ("PGTENANT_METRICS_ADDR", &maddr),
    ]);
    // The allowed OIDs are PostgreSQL's own for those names.
    let c = proxy.client_ok(&two.key_a).await;
    for (oid, name) in pgtenant::firewall::rules::FASTPATH_FUNCTIONS {
        let found: String = c
            .query_one(
                "SELECT proname::text FROM pg_catalog.pg_proc WHERE oid = $1",
                &[oid],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, *name, "OID {oid}");
    }
    let (mut s, _, _) = raw::startup(proxy.addr, &two.key_a).await;
    // One int4 argument in binary, binary result.
    let call = |oid: u32, arg: i32| {
        move |b: &mut bytes::BytesMut| {
            b.put_u8(b'F');
            b.put_i32(4 + 4 + 2 + 2 + 2 + 4 + 4 + 2);
            b.put_u32(oid);
            b.put_i16(1);
            b.put_i16(1);
            b.put_i16(1);
            b.put_i32(4);
            b.put_i32(arg);
            b.put_i16(1);
        }
    };
    // pg_backend_pid() would do no harm, but set_config, pg_notify or
    // query_to_xml would: nothing but large objects passes.
    raw::send(&mut s, call(2026, 0)).await; // pg_backend_pid
    let err = raw::until_ready(&mut s).await.expect("refused");
    assert!(
        err.contains("42501") && err.contains("function_call") && err.contains("2026"),
        "{err}"
    );
    // lo_creat(-1) creates a large object and returns its OID.
    raw::query(&mut s, "BEGIN").await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    raw::send(&mut s, call(957, -1)).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "VZ");
    raw::query(&mut s, "ROLLBACK").await;
    assert_eq!(raw::until_ready(&mut s).await, None, "the session goes on");
    // Text the firewall can't read as UTF-8 is refused too.
    raw::send(&mut s, |b| {
        let sql = b"SELECT '\xff'\0";
        b.put_u8(b'Q');
        b.put_i32(4 + sql.len() as i32);
        b.put_slice(sql);
    })
    .await;
    let err = raw::until_ready(&mut s).await.expect("refused");
    assert!(err.contains("22021") && err.contains("encoding"), "{err}");
    raw::query(&mut s, &fill("SELECT secret FROM {B}.t", &two)).await;
    let err = raw::until_ready(&mut s).await.expect("refused");
    assert!(err.contains("cross_schema"), "{err}");
    // Each counted once by its rule (SHOW FIREWALL reads these).
    let counted = |text: &str| {
        ["function_call", "encoding", "cross_schema"]
            .iter()
            .all(|rule| {
                metric(
                    text,
                    "pgtenant_firewall_verdicts_total",
                    &[("rule", rule), ("outcome", "refused")],
                ) == Some(1.0)
            })
    };
    scrape_until(&maddr, "the three refusals", counted).await;
}

/// Dynamic SQL in a DO block or a function runs text the firewall never
/// sees. When it makes the server read SQL differently from the firewall
/// (`standard_conforming_strings` off, a client-only encoding), the
/// server reports it, and the session ends before another statement.
#[tokio::test]
async fn a_server_that_stops_reading_sql_as_the_firewall_does_ends_the_session() {
    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    for (setting, sql) in [
        (
            "standard_conforming_strings",
            "DO $$BEGIN EXECUTE 'SET standard_conforming_strings = o' || 'ff'; END$$",
        ),
        (
            "client_encoding",
            "DO $$BEGIN EXECUTE 'SET client_encoding = ' || quote_literal('SJ' || 'IS'); END$$",
        ),
    ] {
        let c = proxy.client_ok(&two.key_a).await;
        let e = c.batch_execute(sql).await.expect_err(setting);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{db:?}");
        assert!(db.message().contains(setting), "{db:?}");
        assert!(c.is_closed() || c.simple_query("SELECT 1").await.is_err());
    }
    // A single-byte encoding reads ASCII as UTF-8 does: the session goes on.
    let c = proxy.client_ok(&two.key_a).await;
    c.batch_execute(
        "DO $$BEGIN EXECUTE 'SET client_encoding = ' || quote_literal('LAT' || 'IN1'); END$$",
    )
    .await
    .unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}

/// A text long enough that its parse takes a while (a bulk `INSERT …
/// VALUES` of decimals) is read off the event loop: while the firewall
/// reads one client's, another client is answered. Its verdict is the one
/// the loop would give: a long text that reaches another tenant is refused
/// as a Query, as an unnamed Parse and as a named Parse the proxy answers
/// itself (transaction mode); an allowed one runs.
#[tokio::test]
async fn a_long_statement_is_read_off_the_event_loop() {
    use postgres_protocol::message::frontend;
    use support::raw;

    let two = two_tenants().await;
    let reg = registry();
    // `.` in the decimals keeps the lexical pre-check from clearing them.
    let values = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("({i}.5)")).collect();
        v.join(",")
    };
    let insert = |n: usize| {
        let sql = format!(
            "INSERT INTO {{B}}.t SELECT x::text FROM (VALUES {}) v(x)",
            values(n)
        );
        fill(&sql, &two)
    };
    // ~4 MB: seconds of pg_query in a debug build; ~40 KB and ~5 KB:
    // past the size that goes off the loop, the shorter one short enough
    // for the verdict cache (its second verdict is the cached one).
    let (huge, long, medium) = (insert(250_000), insert(3_000), insert(700));
    let count = format!("SELECT count(*) FROM (VALUES {}) v(x)", values(3_000));
    let code = |e: Option<String>| {
        let e = e.unwrap_or_default();
        let field = |k: char| e.split('\0').find_map(|f| f.strip_prefix(k)).unwrap_or("");
        format!("{} {}", field('C'), field('M'))
    };
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[
            ("PGTENANT_FIREWALL_MODE", "enforce"),
            ("PGTENANT_POOL_MODE", mode),
        ]);
        let other = proxy.client_ok(&two.key_a).await;
        let (mut s, _, _) = raw::startup(proxy.addr, &two.key_a).await;
        raw::query(&mut s, &huge).await;
        // Its last bytes are read in milliseconds; its parse takes seconds.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = other.simple_query("SELECT 1").await.unwrap();
        assert_eq!(rows(&answer), vec![vec![Some("1".to_owned())]], "{mode}");
        let mut byte = [0u8; 1];
        let pending = s.try_read(&mut byte);
        assert!(
            matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{mode}: the long text was answered before another client: {pending:?}"
        );
        let refused = code(raw::until_ready(&mut s).await);
        assert!(refused.starts_with("42501 pgtenant: "), "{mode}: {refused}");

        // As an unnamed Parse, and as a named one alone with its Sync.
        for (name, sql) in [("", &long), ("bulk", &long), ("", &medium), ("", &medium)] {
            raw::send(&mut s, |b| {
                frontend::parse(name, sql, [], b).unwrap();
                frontend::sync(b);
            })
            .await;
            let refused = code(raw::until_ready(&mut s).await);
            assert!(refused.starts_with("42501 "), "{mode} {name:?}: {refused}");
        }
        // Allowed long texts run, both ways.
        raw::query(&mut s, &count).await;
        let mut got = String::new();
        loop {
            let (tag, body) = raw::read_msg(&mut s).await.expect("reply");
            match tag {
                b'D' => got = String::from_utf8_lossy(&body[6..]).into_owned(),
                b'E' => panic!("{mode}: {}", String::from_utf8_lossy(&body)),
                b'Z' => break,
                _ => {}
            }
        }
        assert_eq!(got, "3000", "{mode}");
        let st = other.prepare(&count).await.unwrap();
        let n: i64 = other.query_one(&st, &[]).await.unwrap().get(0);
        assert_eq!(n, 3000, "{mode}");
    }
    // Nothing reached the other tenant.
    assert_b_untouched(&two).await;
}

//! The statement firewall through a real proxy: refused statements never
//! reach PostgreSQL, the other tenant's rows never come back, allowed
//! statements behave as on a direct connection, and with the firewall off
//! the backend roles still hold.

mod support;

use support::metrics::{metric, metrics_addr, scrape_until};
use support::registry;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

struct Two {
    a: String,
    b: String,
    key_a: String,
    marker_b: String,
}

/// Tenants A and B, each with a table `t` holding a marker row.
async fn two_tenants() -> Two {
    let reg = registry();
    let (a, b) = (reg.create_tenant("fwa"), reg.create_tenant("fwb"));
    let (key_a, key_b) = (reg.issue_key(&a), reg.issue_key(&b));
    let marker_b = format!("marker-b-{b}");
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "off")]);
    for (key, marker) in [
        (&key_a, format!("marker-a-{a}")),
        (&key_b, marker_b.clone()),
    ] {
        let c = proxy.client_ok(key).await;
        c.batch_execute(&format!(
            "CREATE TABLE t (secret text); INSERT INTO t VALUES ('{marker}');
             CREATE SEQUENCE s; CREATE TYPE mytype AS (x int);"
        ))
        .await
        .unwrap();
    }
    Two {
        a: format!("tenant_{a}"),
        b: format!("tenant_{b}"),
        key_a,
        marker_b,
    }
}

/// A's own role, straight to PostgreSQL: the reference behaviour.
async fn direct_as(role: &str) -> Client {
    let reg = registry();
    let secret = &reg
        .env
        .iter()
        .find(|(k, _)| k == "PGTENANT_BACKEND_SECRET")
        .unwrap()
        .1;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(support::cluster().port)
        .user(role)
        .password(pgtenant::registry::admin::role_password(secret, role))
        .dbname(&reg.db);
    let (c, conn) = cfg
        .connect(NoTls)
        .await
        .expect("direct login as the tenant role");
    tokio::spawn(conn);
    c
}

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

const REFUSED: &[&str] = &[
    "SELECT * FROM {B}.t",
    "select * from \"{B}\".t",
    "SELECT * FROM {BU}.T",
    "SELECT * FROM /* hide */ {B} /* me */ . /* please */ t",
    "SELECT 1; SELECT 2; SELECT * FROM {B}.t",
    "WITH x AS (SELECT * FROM {B}.t) SELECT * FROM x",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM {B}.t)",
    "SELECT (SELECT secret FROM {B}.t LIMIT 1)",
    "SELECT * FROM t JOIN {B}.t bt ON true",
    "EXPLAIN ANALYZE SELECT * FROM {B}.t",
    "PREPARE p_bad AS SELECT * FROM {B}.t",
    "DECLARE c CURSOR FOR SELECT * FROM {B}.t",
    "CREATE VIEW v_bad AS SELECT * FROM {B}.t",
    "CREATE TABLE t_bad AS SELECT * FROM {B}.t",
    "COPY (SELECT * FROM {B}.t) TO STDOUT",
    "INSERT INTO {B}.t VALUES ('x')",
    "UPDATE {B}.t SET secret = 'x'",
    "DELETE FROM {B}.t",
    "SELECT '{B}.t'::regclass",
    "SELECT to_regclass('{B}.t')",
    "SELECT nextval('{B}.s')",
    "SELECT NULL::{B}.mytype",
    "SELECT $$x$$ FROM {B}.t",
    "SET search_path = {B}",
    "SET search_path TO {A}, {B}",
    "SELECT set_config('search_path', '{B}', false)",
    "SET ROLE {B}",
    "SET SESSION AUTHORIZATION {B}",
    "CREATE SCHEMA evil",
    "DROP SCHEMA {B} CASCADE",
    "ALTER ROLE {A} SET search_path = {B}",
    "ALTER TABLE t SET SCHEMA {B}",
    "GRANT ALL ON ALL TABLES IN SCHEMA {B} TO {A}",
    "COPY t TO '/tmp/pgtenant-fw-test'",
    "COPY t FROM PROGRAM 'id'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT query_to_xml('select * from t', true, true, '')",
    "SELECT pg_terminate_backend(1)",
    "SELECT * FROM pg_stat_activity",
    "LOAD 'auto_explain'",
    "CREATE FUNCTION f_bad() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM {B}.t $$",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "CREATE ROLE evil",
];

const ALLOWED: &[&str] = &[
    "SELECT secret FROM t",
    "SELECT secret FROM {A}.t",
    "SELECT count(*) > 0 FROM pg_catalog.pg_class",
    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = '{A}' ORDER BY 1",
    "SELECT 'tenant_b.t is just text'",
    "WITH c AS (SELECT secret FROM t) SELECT * FROM c",
    "SELECT t.secret FROM t WHERE t.secret LIKE 'marker%'",
    "SELECT nextval('s') > 0",
    "SELECT NULL::mytype IS NULL",
    "SELECT 1 + 1; SELECT 'two'",
    "SELECT current_schema()::text",
    "SELECT upper(secret) FROM t",
];

fn fill(sql: &str, two: &Two) -> String {
    sql.replace("{A}", &two.a)
        .replace("{BU}", &two.b.to_uppercase())
        .replace("{B}", &two.b)
}

#[tokio::test]
async fn refused_statements_never_reach_the_backend_or_leak() {
    let two = two_tenants().await;
    let reg = registry();
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    // Every statement A's sessions run is written to the server log, so a
    // refused statement that slipped through would show up there.
    let su = support::cluster().connect(&reg.db).await;
    su.batch_execute(&format!("ALTER ROLE {} SET log_statement = 'all'", two.a))
        .await
        .unwrap();
    let log_path = support::cluster().dir.join("postgres.log");
    let log_before = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) as usize;
    let c = proxy.client_ok(&two.key_a).await;
    c.simple_query("SELECT 'logging works'").await.unwrap();

    for sql in REFUSED {
        let sql = fill(sql, &two);
        // Simple protocol…
        let e = c.simple_query(&sql).await.expect_err(&sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), "42501", "{sql}: {}", db.message());
        assert!(
            db.message().starts_with("pgtenant: "),
            "{sql}: {}",
            db.message()
        );
        assert!(db.hint().is_some(), "{sql}: no hint");
        // …and the extended protocol (Parse is refused before Bind/Execute).
        if !sql.contains(';') {
            let e = c.query(&sql, &[]).await.expect_err(&sql);
            assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e:?}");
        }
        // The session stays usable.
        assert_eq!(
            rows(&c.simple_query("SELECT 1").await.unwrap()),
            vec![vec![Some("1".into())]]
        );
    }

    // Nothing that named B's schema reached PostgreSQL.
    let log = std::fs::read(&log_path).unwrap();
    let log = String::from_utf8_lossy(&log[log_before..]);
    assert!(
        log.contains("logging works"),
        "statement logging is not on:\n{log}"
    );
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains(&two.b)).collect();
    assert!(
        leaked.is_empty(),
        "refused statements reached PostgreSQL:\n{}",
        leaked.join("\n")
    );
    su.batch_execute(&format!("ALTER ROLE {} RESET log_statement", two.a))
        .await
        .unwrap();
}

#[tokio::test]
async fn allowed_statements_behave_as_on_a_direct_connection() {
    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    let via = proxy.client_ok(&two.key_a).await;
    let direct = direct_as(&two.a).await;
    for sql in ALLOWED {
        let sql = fill(sql, &two);
        let got = via
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let want = direct.simple_query(&sql).await.unwrap();
        // nextval moves on; everything else must match exactly.
        if !sql.contains("nextval") {
            assert_eq!(rows(&got), rows(&want), "{sql}");
        }
        let text = format!("{:?}", rows(&got));
        assert!(!text.contains(&two.marker_b), "{sql} leaked B's marker");
    }
}

#[tokio::test]
async fn a_refusal_inside_a_transaction_fails_it_like_postgres_would() {
    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
    let c = proxy.client_ok(&two.key_a).await;
    c.batch_execute("CREATE TABLE tx_probe (x int)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO tx_probe VALUES (1)")
        .await
        .unwrap();
    let e = c
        .query(&fill("SELECT * FROM {B}.t", &two), &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    // Postgres' rule: the transaction is now aborted…
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "{e:?}");
    // …and COMMIT rolls it back.
    c.batch_execute("COMMIT").await.unwrap();
    let n = rows(
        &c.simple_query("SELECT count(*) FROM tx_probe")
            .await
            .unwrap(),
    );
    assert_eq!(n, vec![vec![Some("0".into())]]);
}

#[tokio::test]
async fn monitor_mode_forwards_and_the_role_still_refuses() {
    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "monitor")]);
    let c = proxy.client_ok(&two.key_a).await;
    let e = c
        .simple_query(&fill("SELECT * FROM {B}.t", &two))
        .await
        .unwrap_err();
    // Forwarded: Postgres answers, with its own permission error.
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(!db.message().starts_with("pgtenant"), "{}", db.message());
    // Logged from the relay, which runs outside the client's span: the
    // line still names the client's tenant, and so does the session's end.
    let tenant = format!("tenant=\"{}\"", two.a.strip_prefix("tenant_").unwrap());
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains("would refuse"));
    assert!(line.is_some_and(|l| l.contains(&tenant)), "{log}");
    drop(c);
    let ended = || {
        let log = proxy.log();
        log.lines()
            .any(|l| l.contains("session ended") && l.contains(&tenant))
    };
    for _ in 0..100 {
        if ended() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ended(), "{}", proxy.log());
}

#[tokio::test]
async fn with_the_firewall_off_backend_roles_still_isolate_tenants() {
    let two = two_tenants().await;
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "off")]);
    let c = proxy.client_ok(&two.key_a).await;
    c.batch_execute(
        "CREATE FUNCTION peek(s text) RETURNS SETOF text LANGUAGE plpgsql AS
         $$ BEGIN RETURN QUERY EXECUTE format('SELECT secret FROM %I.t', s); END $$",
    )
    .await
    .unwrap();
    for sql in [
        format!("DO $$ BEGIN EXECUTE 'SELECT * FROM {}.t'; END $$", two.b),
        format!("SELECT * FROM peek('{}')", two.b),
        format!(
            "SELECT query_to_xml('SELECT * FROM {}.t', true, true, '')",
            two.b
        ),
        format!("SELECT * FROM {}.t", two.b),
    ] {
        let e = c.simple_query(&sql).await.expect_err(&sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), "42501", "{sql}: {}", db.message());
        assert!(
            db.message().contains("permission denied"),
            "{sql}: {}",
            db.message()
        );
        assert!(!format!("{e:?}").contains(&two.marker_b));
    }
}

/// The firewall's whole statement corpus (src/firewall/corpus.rs) through a
/// real proxy: tenants `a` and `b` own schemas `tenant_a` and `tenant_b`
/// exactly as the corpus expects (this test binary has its own cluster).
#[tokio::test]
async fn the_whole_corpus_through_a_real_proxy() {
    use pgtenant::firewall::corpus::{DRIVERS, PSQL15, cases};
    let reg = registry();
    for t in ["a", "b"] {
        let out = support::pgtenant_cli(&["tenant", "create", t], &reg.env_refs());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let key_a = reg.issue_key("a");
    let key_b = reg.issue_key("b");
    let su = support::cluster().connect(&reg.db).await;
    su.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS extensions; GRANT USAGE ON SCHEMA extensions TO PUBLIC;
         ALTER ROLE tenant_a SET log_statement = 'all'",
    )
    .await
    .unwrap();
    let proxy = reg.proxy(&[
        ("PGTENANT_FIREWALL_MODE", "enforce"),
        ("PGTENANT_FIREWALL_SHARED_SCHEMAS", "extensions"),
    ]);
    let b = proxy.client_ok(&key_b).await;
    b.batch_execute("CREATE TABLE t (id int, v text, secret text); INSERT INTO t VALUES (1, 'x', 'marker-b-corpus')")
        .await
        .unwrap();
    let a = proxy.client_ok(&key_a).await;
    a.batch_execute("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    let log_path = support::cluster().dir.join("postgres.log");
    let log_start = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) as usize;

    let allowed = DRIVERS.iter().chain(PSQL15).map(|s| (*s, None));
    let mut wrong = Vec::new();
    let mut refused = Vec::new();
    for (sql, want) in cases().into_iter().chain(allowed) {
        // COPY … STDIN/STDOUT would need the copy sub-protocol; the verdict
        // for those texts is covered by the unit corpus.
        if want.is_none() && sql.trim_start().to_ascii_uppercase().starts_with("COPY") {
            continue;
        }
        let got = match a.simple_query(sql).await {
            Ok(msgs) => {
                assert!(
                    !format!("{msgs:?}").contains("marker-b"),
                    "{sql} leaked B's rows"
                );
                None
            }
            Err(e) => {
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_default();
                assert!(!msg.contains("marker-b"), "{sql} leaked B's rows");
                msg.strip_prefix("pgtenant: ")
                    .and_then(|m| m.split(':').next())
                    .map(str::to_owned)
            }
        };
        if got.as_deref() != want {
            wrong.push(format!("{sql:?}: want {want:?}, got {got:?}"));
        }
        if want.is_some() {
            refused.push(sql);
        }
        // Whatever the statement left open is closed before the next one.
        let _ = a.simple_query("ROLLBACK").await;
        assert!(
            !a.is_closed(),
            "the session died after {sql:?}\n{}",
            proxy.log()
        );
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(refused.len() >= 200, "only {} refused cases", refused.len());

    let log = std::fs::read(&log_path).unwrap();
    let log = String::from_utf8_lossy(&log[log_start..]);
    // log_statement writes `statement: <the whole text>`; a refused text may
    // legitimately appear inside an allowed one (a string, a DO body).
    let reached: Vec<&&str> = refused
        .iter()
        .filter(|sql| log.contains(&format!("statement: {sql}\n")))
        .collect();
    assert!(
        reached.is_empty(),
        "refused statements reached PostgreSQL: {reached:?}"
    );
}

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
    let b = direct_as(&two.b).await;
    let left = b
        .query(&fill("SELECT secret FROM {B}.t", &two), &[])
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
    let proxy = registry().proxy(&[("PGTENANT_FIREWALL_MODE", "enforce")]);
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

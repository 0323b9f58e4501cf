use super::*;
use crate::lexical::scan;

#[test]
fn only_a_nonzero_idle_session_timeout_pins() {
    let pins = |v: &str| settings_pin(&[("idle_session_timeout".into(), v.into())]).is_some();
    for off in ["0", "0ms", "0s", " 0 min", "-0", "0.0"] {
        assert!(!pins(off), "{off:?}");
    }
    for on in ["200", "1ms", "5s", "1min", "0.5s"] {
        assert!(pins(on), "{on:?}");
    }
    assert!(settings_pin(&[("statement_timeout".into(), "5s".into())]).is_none());
    let path = |v: &str| settings_pin(&[("search_path".into(), v.into())]);
    assert_eq!(path("pg_temp, tenant_a"), Some("temporary table"));
    assert_eq!(path("tenant_a, pg_catalog"), None);
}

fn session_effect(sql: &[u8]) -> Effect {
    super::session_effect(sql, &scan(sql, true))
}

#[test]
fn pins_session_state_only() {
    for (sql, pins) in [
        ("SELECT 1", false),
        ("set statement_timeout = 5", false),
        ("/* x */ SET search_path = a", false),
        ("SET LOCAL statement_timeout = 5", false),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false),
        ("BEGIN; SET LOCAL x.y = 1; COMMIT", false),
        (
            "DO $$BEGIN EXECUTE 'CREATE TE' || 'MP TABLE a (id int)'; END$$",
            true,
        ),
        ("DO $$BEGIN PERFORM 1; END$$", false),
        ("LISTEN chan", true),
        ("PREPARE p AS SELECT 1", true),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", true),
        ("DECLARE c CURSOR FOR SELECT 1", false),
        ("CREATE TEMP TABLE t (x int)", true),
        ("create local temporary table t (x int)", true),
        ("CREATE TABLE t (x int)", false),
        ("CREATE TABLE pg_temp.accounts (id int)", true),
        ("CREATE UNLOGGED TABLE pg_temp.accounts (id int)", true),
        ("EXPLAIN ANALYZE CREATE TEMP TABLE a AS SELECT 1", true),
        ("EXPLAIN SELECT * FROM temp", false),
        ("DO $$BEGIN CREATE TEMP TABLE a (id int); END$$", true),
        (
            "DO $$DECLARE n int; BEGIN CREATE TEMP TABLE a (id int); END$$",
            true,
        ),
        ("SELECT 1 AS x INTO pg_temp.t", true),
        ("EXPLAIN ANALYZE SELECT 1 AS x INTO TEMP t", true),
        ("/* /* */ x */ CREATE TEMP TABLE a (id int)", true),
        ("/* /* */ x */ LISTEN chan", true),
        ("/* /* */ LISTEN x */ SELECT 1", false),
        ("SELECT pg_advisory_lock(1)", true),
        ("SELECT pg_advisory_xact_lock(1)", false),
        ("SELECT set_config('a.b', '1', false)", false),
        ("UPDATE settings SET value = 1", false),
        ("-- SET x\nSELECT 1", false),
        // What asyncpg's pool sends when a connection is released.
        (
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
            false,
        ),
        ("DISCARD ALL", false),
        ("SELECT 1 AS x INTO TEMP t", true),
        (
            "with a as (select 1) select * into temporary table t from a",
            true,
        ),
        ("SELECT * INTO t FROM a", false),
        ("INSERT INTO temp (x) VALUES (1)", false),
        ("SELECT 1 INTO /* c */ TEMP t", true),
        ("/* report */ SELECT 1 AS x INTO TEMP t", true),
        ("-- report\nSELECT 1 AS x INTO TEMP t", true),
        ("(SELECT 1 AS x INTO TEMP t)", true),
        ("SELECT 1; /* c */ SELECT 1 AS x INTO pg_temp.t", true),
        ("/* c */ SELECT * INTO t FROM a", false),
        // A `;` in a comment or a quote ends no statement; one in a
        // comment must not hide the statement after it.
        ("/* a; b */ LISTEN c", true),
        ("-- x; y\nLISTEN c", true),
        ("SELECT ';' AS s; LISTEN c", true),
        ("SELECT E'\\';' AS s; LISTEN c", true),
        ("SELECT $q$;$q$ AS s; LISTEN c", true),
        ("SELECT '/*'; LISTEN c", true),
        ("SELECT $1; LISTEN c", true),
        // A `;` inside a plain string or a comment ends nothing; what
        // follows one in a string with backslashes, or in a dollar
        // quote, is read too (the server might read those otherwise).
        ("SELECT 'a; LISTEN c'", false),
        ("SELECT 1 -- ; LISTEN c", false),
        ("SELECT 'a\\'; LISTEN c'", true),
        // As PostgreSQL reads them: `name'\'` is a standard string, a
        // `--` comment ends at `\r`, `x$$a$` is one identifier.
        ("SELECT name'\\'; LISTEN c; SELECT 'x'", true),
        ("SELECT 1 --c\r; LISTEN c", true),
        ("SELECT 1 AS x$$a$; LISTEN c; SELECT 2 AS y$$a$", true),
        (
            "DO $$BEGIN PERFORM 1; END$$; CREATE TEMP TABLE a (x int)",
            true,
        ),
        ("SELECT 1 AS x INTO LOCAL TEMP t", true),
        ("SELECT 1 AS x INTO GLOBAL TEMPORARY t", true),
        ("SELECT 1 AS x INTO TABLE pg_temp.t", true),
        ("CREATE TABLE pg_temp_3.t (x int)", true),
        ("SELECT 1 AS x INTO TABLE t", false),
        ("SET ROLE other", true),
        ("set session authorization other", true),
        ("SELECT set_config('role', 'other', false)", true),
        ("RESET ROLE", false),
        ("SET LOCAL ROLE other", false),
        ("SET SESSION ROLE other", true),
        ("SET role TO other", true),
        ("SET SESSION SESSION AUTHORIZATION other", true),
        ("SET ROLE NONE", false),
        ("SET search_path = a; SELECT role FROM t", false),
        // A search_path through pg_temp may make any CREATE TABLE
        // temporary.
        ("SET search_path = pg_temp, tenant_a", true),
        ("SET LOCAL search_path TO \"pg_temp\"", true),
        ("SELECT set_config('search_path', 'PG_TEMP,a', false)", true),
        ("DO $$BEGIN SET search_path = pg_temp; END$$", true),
        ("SET search_path = tenant_a, pg_catalog", false),
        ("SET search_path = pg_temp_3", true),
        ("SET search_path = pg_temporary, pg_temp_x", false),
        // Npgsql's reset when a connection goes back to its pool.
        (
            "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;CLOSE ALL;UNLISTEN *;\
             SELECT pg_advisory_unlock_all();DISCARD SEQUENCES;DISCARD TEMP",
            false,
        ),
        ("DO $$BEGIN SET ROLE other; END$$", true),
        ("SELECT U&\"pg\\005Fadvisory\\005Flock\"(1)", true),
        // Whole words only, however they are delimited.
        ("SELECT pg_catalog.pg_advisory_lock(1)", true),
        ("SELECT \"pg_advisory_lock\"(1)", true),
        ("SELECT pg_advisory_lock_shared(1)", true),
        (
            "SELECT xpg_advisory_lock(1), my_pg_try_advisory_lock(2)",
            false,
        ),
    ] {
        assert_eq!(session_effect(sql.as_bytes()).pins.is_some(), pins, "{sql}");
    }
}

#[test]
fn the_random_seed_is_noticed() {
    for (sql, reseeds) in [
        ("SELECT setseed(0.5)", true),
        ("select pg_catalog.SETSEED(0.1), random()", true),
        ("SET seed = 0.5", true),
        ("SET LOCAL seed TO 0.5", true),
        ("SELECT set_config('seed', '0.5', true)", true),
        ("DO $$BEGIN PERFORM setseed(0.5); END$$", true),
        ("DO $$BEGIN SET seed = 0.5; END$$", true),
        ("SELECT 1; SET seed = 0.5", true),
        ("UPDATE t SET seed = 1", false),
        ("SELECT seed FROM t", false),
        ("CREATE TABLE t (seed int)", false),
        ("SELECT set_config('application_name', 'seed', false)", true),
        ("SELECT set_config('application_name', 'x', false)", false),
        ("SELECT random()", false),
        // Names the proxy can't read count.
        ("SET U&\"\\0073eed\" TO 0.5", true),
        ("SELECT set_config(E'se\\145d', '0.5', false)", true),
        (
            "DO $$BEGIN EXECUTE format('SELECT %s(0.5)', 'set' || 'seed'); END$$",
            true,
        ),
        ("DO $$BEGIN PERFORM 1; END$$", false),
    ] {
        let e = session_effect(sql.as_bytes());
        assert_eq!(e.reseeds, reseeds, "{sql}");
        // Transaction mode keeps the client on its sequence.
        assert_eq!(e.pins.is_some(), reseeds, "{sql}");
    }
}

#[test]
fn the_one_pass_flags_what_the_full_reading_needs() {
    for sql in [
        "SET x = 1",
        "select 1; listen c",
        " \n\tprepare p as select 1",
        "/* c */ SELECT 1",
        "(SELECT 1)",
        "SELECT 1 INTO TEMP t",
        "SELECT pg_advisory_lock(1)",
        "SELECT set_config('a.b', '1', false)",
    ] {
        assert!(
            scan(sql.as_bytes(), true).may_have_session_effect(),
            "{sql}"
        );
    }
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
        "INSERT INTO t VALUES (1); UPDATE t SET x = 2",
        "  begin ;  commit ; ",
        "",
    ] {
        assert!(
            !scan(sql.as_bytes(), true).may_have_session_effect(),
            "{sql}"
        );
        assert_eq!(session_effect(sql.as_bytes()), Effect::default(), "{sql}");
    }
}

#[test]
fn clearing_statements_are_noticed() {
    // Behind a comment that holds a `;`.
    assert!(session_effect(b"/* t; v */ SET app.user_id = '42'").changes_settings);
    let e = session_effect(b"select 1; RESET ALL");
    assert!(e.changes_settings && !e.drops_statements && e.resets);
    let e = session_effect(b"DISCARD ALL");
    assert!(e.changes_settings && e.drops_statements && e.resets);
    assert!(session_effect(b"SET DateStyle TO DEFAULT").resets);
    assert!(session_effect(b"reset application_name").resets);
    assert!(!session_effect(b"SET DateStyle TO 'ISO'").resets);
    assert!(!session_effect(b"SET LOCAL work_mem TO DEFAULT").resets);
    let e = session_effect(b"DEALLOCATE ALL");
    assert!(!e.changes_settings && e.drops_statements);
    assert!(session_effect(b"deallocate prepare all").drops_statements);
    assert!(session_effect(b"DEALLOCATE \"pgt_0123\"").drops_statements);
    // Only the proxy's own statements matter to its cache.
    assert!(!session_effect(b"DEALLOCATE mine").drops_statements);
    // …but the client's names are the proxy's to drop (transaction mode).
    assert!(session_effect(b"DEALLOCATE mine").deallocates);
    assert!(session_effect(b"deallocate prepare \"Mine\"").deallocates);
    assert!(!session_effect(b"DEALLOCATE ALL").deallocates);
    assert!(!session_effect(b"DISCARD PLANS").drops_statements);
    assert!(!session_effect(b"discard temp").drops_statements);
    // A DO block that may change a setting has it read back.
    assert!(
        session_effect(b"DO $$BEGIN PERFORM set_config('a.b', '1', false); END$$").changes_settings
    );
    assert!(session_effect(b"do 'begin set a.b = 1; end'").changes_settings);
    // Past a ';' in the body, and in a later block.
    assert!(session_effect(b"DO $$DECLARE n int; BEGIN SET a.b = 1; END$$").changes_settings);
    assert!(session_effect(b"DO $$ $$; DO $$BEGIN SET a.b = 1; END$$").changes_settings);
    assert_eq!(
        session_effect(b"DO $$BEGIN PERFORM 1; END$$"),
        Effect::default()
    );
    assert!(session_effect(b"SET TIME ZONE 'UTC'").changes_settings);
    assert!(!session_effect(b"SET LOCAL work_mem = '1MB'").changes_settings);
    // Custom settings whose prefix is one of those words.
    for sql in [
        &b"SET local.x = 1"[..],
        b"SET transaction.x TO 1",
        b"SET constraints .x = 1",
        b"SET \"local\".x = 1",
        b"SET \"LOCAL.x\" = 1",
    ] {
        let e = session_effect(sql);
        assert!(e.changes_settings, "{}", String::from_utf8_lossy(sql));
    }
    assert!(!session_effect(b"SET LOCAL \"a.b\" = 1").changes_settings);
    assert!(session_effect(b"SELECT set_config('jit', $1, false)").changes_settings);
    assert!(session_effect(b"select SET_CONFIG('jit', 'off', false)").changes_settings);
    assert!(
        session_effect(b"SELECT PG_TRY_ADVISORY_LOCK(7)")
            .pins
            .is_some()
    );
    assert_eq!(
        session_effect(b"select pg_sleep(1), 'set_confi'"),
        Effect::default()
    );
    // Text in another encoding is still read.
    assert!(session_effect(b"SET application_name = '\xe9t\xe9'").changes_settings);
    assert!(session_effect(b"SELECT '\xff'; LISTEN c").pins.is_some());
}

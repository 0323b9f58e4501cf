//! Corpus, part 2: schema, role and object DDL, grants, functions with SQL
//! bodies, PL/pgSQL and DO blocks.

use super::*;

pub const CASES: &[(&str, Option<&str>)] = &[
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
    // Functions checked by their arguments can't be bound by name.
    (
        "CREATE AGGREGATE sp (text, bool) (SFUNC = set_config, STYPE = text, INITCOND = 'search_path')",
        SET,
    ),
    (
        "CREATE AGGREGATE tr (text) (SFUNC = ts_rewrite, STYPE = tsquery, INITCOND = 'a')",
        DYN,
    ),
    (
        "CREATE AGGREGATE nx (text) (SFUNC = pg_catalog.nextval, STYPE = text)",
        X,
    ),
    (
        "CREATE OPERATOR <~> (LEFTARG = text, RIGHTARG = text, FUNCTION = dblink_exec)",
        FILES,
    ),
    (
        "CREATE CAST (text AS mytype) WITH FUNCTION pg_read_file(text)",
        ADM,
    ),
    (
        "CREATE AGGREGATE sq (text, bool) (SFUNC = 'set_config', STYPE = text)",
        SET,
    ),
    (
        "CREATE AGGREGATE sq (text) (SFUNC = 'tenant_b.f', STYPE = text)",
        X,
    ),
    (
        "CREATE OPERATOR <~> (LEFTARG = text, RIGHTARG = text, FUNCTION = 'dblink_exec')",
        FILES,
    ),
    // Types, and functions named only to drop or grant, bind nothing.
    (
        "CREATE AGGREGATE ra (regclass) (SFUNC = f, STYPE = regclass)",
        OK,
    ),
    ("DROP FUNCTION crosstab(text)", OK),
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
];

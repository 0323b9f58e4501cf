//! Acceptance tests of the admin CLI against a real PostgreSQL (issue 3):
//! tenant metadata and opaque schemas, key listings that never show a key,
//! bad input that changes nothing, a second registry in the same cluster,
//! and adoption of a legacy schema into the default tenant.

mod support;

use support::lifecycle::*;
use support::{Proxy, registry};
use tokio_postgres::Client;

#[tokio::test]
async fn tenant_create_with_metadata_and_an_opaque_schema_hides_the_name() {
    let reg = registry();
    let env = reg.env_refs();
    let name = format!("opaque_secret_{}", std::process::id());
    let v = ok_json(
        &env,
        &[
            "tenant",
            "create",
            &name,
            "--opaque-schema",
            "--metadata",
            r#"{"plan": "pro", "seats": 5}"#,
        ],
    );
    let schema = v["schema"].as_str().unwrap().to_owned();
    assert!(
        schema.len() == 18
            && schema.starts_with("t_")
            && schema[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{schema}"
    );
    assert_eq!(v["role"], schema.as_str());
    let shown = ok_json(&env, &["tenant", "show", &name]);
    assert_eq!(shown["metadata"]["plan"], "pro");
    assert_eq!(shown["metadata"]["seats"], 5);
    let list = ok_json(&env, &["tenant", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == name.as_str())
    );
    assert!(ok(&env, &["tenant", "list"]).contains(&name));

    let su = superuser(&reg.db).await;
    let leaks: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM pg_roles WHERE rolname LIKE '%' || $1 || '%')",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0, "the tenant's name shows in the catalogs");

    let (_, key) = issue(&env, &name, &[]);
    let p = proxy(&[]);
    let s = open_ok(&p, &key).await;
    let row = s
        .client
        .query_one(
            "SELECT current_user::text, current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), schema);
    assert_eq!(row.get::<_, String>(1), schema);
}

#[tokio::test]
async fn key_list_never_shows_a_key_or_its_hash() {
    use sha2::{Digest, Sha256};
    let reg = registry();
    let env = reg.env_refs();
    let t = reg.create_tenant("list");
    ok(&env, &["user", "add", "--tenant", &t, "carol@example.com"]);
    let mut secrets = Vec::new();
    for extra in [
        &["--name", "plain"][..],
        &["--user", "carol@example.com", "--expires", "30d"],
    ] {
        let (_, key) = issue(&env, &t, extra);
        secrets.push(hex::encode(Sha256::digest(key.as_bytes())));
        secrets.push(key);
    }
    let human = ok(&env, &["key", "list", "--tenant", &t]);
    let all = ok(&env, &["key", "list"]);
    let json = ok(&env, &["key", "list", "--tenant", &t, "--json"]);
    for out in [&human, &all, &json] {
        assert!(!out.contains("pgt_"), "{out}");
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "a key or hash in: {out}");
        }
    }
    for header in [
        "ID",
        "TENANT",
        "NAME",
        "USER",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ] {
        assert!(human.contains(header), "{human}");
    }
    assert!(human.contains("carol@example.com") && human.contains("plain"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for k in v.as_array().unwrap() {
        assert_eq!(k["tenant"], t.as_str());
        assert_eq!(k["active"], true);
        assert!(k.get("key").is_none() && k.get("key_hash").is_none());
    }
}

#[tokio::test]
async fn bad_input_fails_with_one_line_and_leaves_the_registry_unchanged() {
    let own = own_registry("bad_input_test", "bad_");
    let env = env_of(&own);
    ok(&env, &["tenant", "create", "acme"]);
    ok(&env, &["tenant", "create", "globex"]);
    ok(
        &env,
        &["user", "add", "--tenant", "acme", "Dana@Example.com"],
    );
    let (key_id, key) = issue(&env, "acme", &[]);
    // A role of the same name made outside pgtenant.
    support::cluster().psql("bad_input_test", "CREATE ROLE bad_tenant_clash");
    let before = snapshot("bad_input_test", "bad\\_%").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let long = "a".repeat(57);
    let cases: &[(&[&str], &str)] = &[
        (
            &["tenant", "create", "acme"],
            "tenant \"acme\" already exists",
        ),
        (
            &["tenant", "create", "Acme"],
            "invalid tenant name \"Acme\"",
        ),
        (&["tenant", "create", "a-b"], "[a-z][a-z0-9_]*"),
        (&["tenant", "create", "pg_x"], "must not start with pg_"),
        (&["tenant", "create", "public"], "is reserved"),
        (&["tenant", "create", &long], "too long"),
        (
            &["tenant", "create", "ok1", "--schema", "Bad"],
            "invalid schema name",
        ),
        (
            &["tenant", "create", "ok1", "--schema", "tenant_acme"],
            "already used by tenant \"acme\"",
        ),
        // Both the name and the schema taken, by two tenants.
        (
            &["tenant", "create", "acme", "--schema", "tenant_globex"],
            "tenant \"acme\" already exists",
        ),
        (
            &["tenant", "create", "ok1", "--schema", "pgtenant"],
            "is reserved",
        ),
        (
            &["tenant", "create", "clash"],
            "role \"bad_tenant_clash\" already exists",
        ),
        (
            &["tenant", "create", "ok1", "--metadata", "[1]"],
            "must be a JSON object",
        ),
        (
            &["tenant", "create", "ok1", "--metadata", "{"],
            "not valid JSON",
        ),
        (&["tenant", "show", "nosuch"], "no tenant named \"nosuch\""),
        (&["tenant", "deactivate", "nosuch"], "no tenant named"),
        (&["tenant", "drop", "nosuch", "--yes"], "no tenant named"),
        (
            &["tenant", "drop", "default", "--yes"],
            "default tenant cannot be dropped",
        ),
        (&["tenant", "drop", "acme"], "without --yes"),
        (
            &["user", "add", "--tenant", "nosuch", "a@b.c"],
            "no tenant named",
        ),
        (
            &["user", "add", "--tenant", "acme", "dana@example.COM"],
            "already has a user",
        ),
        (
            &["user", "add", "--tenant", "acme", "not-an-email"],
            "invalid e-mail",
        ),
        (
            &["user", "deactivate", "--tenant", "acme", "nobody@x.y"],
            "has no user",
        ),
        (&["key", "issue", "--tenant", "nosuch"], "no tenant named"),
        (
            &["key", "issue", "--tenant", "acme", "--user", "nobody@x.y"],
            "has no user",
        ),
        (
            &[
                "key",
                "issue",
                "--tenant",
                "acme",
                "--expires",
                "2000-01-01T00:00:00Z",
            ],
            "not in the future",
        ),
        (
            &["key", "issue", "--tenant", "acme", "--expires", "10"],
            "needs a unit",
        ),
        (
            &["key", "issue", "--tenant", "acme", "--expires", "0m"],
            "not in the future",
        ),
        (&["key", "list", "--tenant", "nosuch"], "no tenant named"),
        (&["key", "revoke", &unknown], "no API key with id"),
        (&["key", "revoke", "not-a-uuid"], "not an API key id"),
        (&["key", "rotate", &key], "not an API key id"),
        (&["key", "rotate", &unknown], "no API key with id"),
        (
            &["key", "rotate", &key_id, "--grace", "1y"],
            "invalid duration",
        ),
        (
            &["adopt-legacy", "--from-schema", "nosuch"],
            "no such schema",
        ),
        (
            &["adopt-legacy", "--from-schema", "pgtenant"],
            "system schema",
        ),
        (
            &["adopt-legacy", "--from-schema", "tenant_acme"],
            "a tenant's schema",
        ),
        (&["init", "--role-prefix", "other_"], "cannot be changed"),
    ];
    for (args, expect) in cases {
        let said = fails(&env, args, expect);
        assert!(!said.contains(&key[4..]), "the key shown back: {said}");
        assert_eq!(
            snapshot("bad_input_test", "bad\\_%").await,
            before,
            "pgtenant {args:?} changed the registry"
        );
    }
    // Not initialised: a clear message, not a SQL error.
    support::cluster().psql("postgres", "CREATE DATABASE not_initialised");
    let bare = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            support::cluster().url("not_initialised"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-own".to_owned(),
        ),
    ];
    fails(&env_of(&bare), &["tenant", "list"], "pgtenant init");
    fails(
        &env_of(&bare),
        &["key", "revoke", &unknown],
        "pgtenant init",
    );
}

#[tokio::test]
async fn second_registry_in_the_cluster_needs_and_keeps_a_role_prefix() {
    let reg = registry();
    registry_created(reg);
    support::cluster().psql("postgres", "CREATE DATABASE second_registry");
    let env_owned = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            support::cluster().url("second_registry"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-two".to_owned(),
        ),
    ];
    let env = env_of(&env_owned);
    // tenant_default is the first registry's: refused, and nothing is left behind.
    fails(&env, &["init"], "--role-prefix");
    let su = superuser("second_registry").await;
    let leftover: bool = su
        .query_one("SELECT to_regnamespace('pgtenant') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!leftover, "a failed init left the registry schema behind");

    fails(
        &env,
        &["init", "--role-prefix", "Two"],
        "invalid role prefix",
    );
    assert!(ok(&env, &["init", "--role-prefix", "two_"]).contains("registry created"));
    assert!(ok(&env, &["init"]).contains("up to date"));
    fails(
        &env,
        &["init", "--role-prefix", "three_"],
        "cannot be changed",
    );
    let t = ok_json(&env, &["tenant", "create", "acme"]);
    assert_eq!(t["schema"], "tenant_acme");
    assert_eq!(t["role"], "two_tenant_acme");
    let d = ok_json(&env, &["tenant", "show", "default"]);
    assert_eq!(d["role"], "two_tenant_default");

    let (_, key) = issue(&env, "acme", &[]);
    let mut penv = env.clone();
    penv.push(("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG));
    let p = Proxy::start(&penv);
    let s = open_ok(&p, &key).await;
    let row = s
        .client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "two_tenant_acme");
    assert_eq!(row.get::<_, String>(1), "second_registry");
}

/// `init` again on a registry whose tables someone holds (a pg_dump, a long
/// transaction): its DDL would take table locks that every login's key
/// lookup queues behind, so it gives up (55P03) instead of waiting; once
/// the lock is gone it runs.
#[tokio::test]
async fn init_on_a_busy_registry_gives_up_instead_of_stalling_logins() {
    let own = own_registry("busy_registry", "busy_");
    let su = superuser("busy_registry").await;
    su.batch_execute("BEGIN; LOCK pgtenant.api_keys IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let env_owned = own.clone();
    let again = tokio::task::spawn_blocking(move || fails(&env_of(&env_owned), &["init"], "55P03"));
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), again)
        .await
        .expect("init waited on the lock")
        .unwrap();
    assert!(line.contains("lock timeout"), "{line}");
    su.batch_execute("COMMIT").await.unwrap();
    assert!(ok(&env_of(&own), &["init"]).contains("up to date"));
}

/// The shared registry exists (so `tenant_default` is taken cluster-wide).
fn registry_created(reg: &support::Registry) {
    assert_eq!(reg.db, "pgtenant_test");
}

#[tokio::test]
async fn legacy_schema_is_adopted_into_the_default_tenant_and_keeps_working() {
    let cluster = support::cluster();
    registry_created(registry());
    cluster.psql("postgres", "CREATE DATABASE legacy_test");
    let su = superuser("legacy_test").await;
    su.batch_execute(
        "CREATE TYPE status AS ENUM ('open', 'paid');
         CREATE DOMAIN money_amount AS numeric CHECK (VALUE >= 0);
         CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             customer_id int NOT NULL REFERENCES customers (id),
             amount money_amount NOT NULL,
             status status NOT NULL DEFAULT 'open');
         CREATE SEQUENCE invoice_numbers START 1000;
         CREATE VIEW customer_totals AS
             SELECT c.name, sum(o.amount) AS total FROM customers c JOIN orders o ON o.customer_id = c.id
              GROUP BY c.name;
         CREATE FUNCTION add_customer(n text) RETURNS int LANGUAGE sql
             AS $$ INSERT INTO customers (name) VALUES (n) RETURNING id $$;
         CREATE FUNCTION open_orders() RETURNS bigint LANGUAGE plpgsql
             AS $$ BEGIN RETURN (SELECT count(*) FROM orders WHERE status = 'open'); END $$;
         INSERT INTO customers (name) VALUES ('ada'), ('bob'), ('cy');
         INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'paid'), (1, 5, 'open'), (2, 7.5, 'open');
         SELECT nextval('invoice_numbers');",
    )
    .await
    .unwrap();
    // The legacy app's queries, unqualified, as it runs them today.
    const QUERIES: &[&str] = &[
        "SELECT id::text || ':' || name FROM customers ORDER BY id",
        "SELECT id::text || ':' || customer_id || ':' || amount || ':' || status FROM orders ORDER BY id",
        "SELECT name || '=' || total FROM customer_totals ORDER BY name",
        "SELECT open_orders()::text",
    ];
    let mut before = Vec::new();
    for q in QUERIES {
        before.push(column(&su, q).await);
    }

    let env_owned = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            cluster.url("legacy_test"),
        ),
        (
            "PGTENANT_BACKEND_SECRET".to_owned(),
            "0123456789abcdef-leg".to_owned(),
        ),
    ];
    let env = env_of(&env_owned);
    ok(&env, &["init", "--role-prefix", "legacy_"]);

    // Dry run: lists, changes nothing.
    let catalog = "SELECT n.nspname || '.' || c.relname || ':' || pg_get_userbyid(c.relowner)
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('public', 'tenant_default') ORDER BY 1";
    let cat_before = column(&su, catalog).await;
    let dry = ok_json(&env, &["adopt-legacy", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let listed: Vec<String> = dry["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect();
    for expect in [
        "table customers",
        "table orders",
        "view customer_totals",
        "sequence invoice_numbers",
        "function add_customer(n text)",
        "function open_orders()",
        "enum type status",
        "domain money_amount",
    ] {
        assert!(
            listed.iter().any(|l| l == expect),
            "{expect} not in {listed:?}"
        );
    }
    // Owned sequences move with their table, not on their own.
    assert!(
        !listed.iter().any(|l| l.contains("customers_id_seq")),
        "{listed:?}"
    );
    let customers = dry["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "customers")
        .unwrap();
    assert_eq!(customers["moves_with"][0], "sequence customers_id_seq");
    assert!(ok(&env, &["adopt-legacy", "--dry-run"]).contains("would move"));
    assert_eq!(
        column(&su, catalog).await,
        cat_before,
        "--dry-run changed the catalog"
    );

    let done = ok_json(&env, &["adopt-legacy"]);
    assert_eq!(done["objects"].as_array().unwrap().len(), listed.len());
    assert_eq!(done["to_schema"], "tenant_default");
    assert_eq!(done["role"], "legacy_tenant_default");
    let moved = column(&su, catalog).await;
    assert!(
        moved
            .iter()
            .all(|l| l.starts_with("tenant_default.") && l.ends_with(":legacy_tenant_default")),
        "{moved:?}"
    );
    assert!(moved.contains(&"tenant_default.customers_id_seq:legacy_tenant_default".to_owned()));

    // Idempotent: the second run finds nothing and changes nothing.
    let again = ok_json(&env, &["adopt-legacy"]);
    assert_eq!(again["objects"].as_array().unwrap().len(), 0);
    assert!(ok(&env, &["adopt-legacy"]).contains("nothing to move"));
    assert_eq!(column(&su, catalog).await, moved);

    // The legacy app, unchanged, through the proxy with a default-tenant key.
    let (_, key) = issue(&env, "default", &[]);
    let mut penv = env.clone();
    penv.push(("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG));
    let p = Proxy::start(&penv);
    let app = open_ok(&p, &key).await;
    for (q, b) in QUERIES.iter().zip(&before) {
        assert_eq!(&column(&app.client, q).await, b, "{q}");
    }
    let id: i32 = app
        .client
        .query_one(
            "INSERT INTO customers (name) VALUES ('dee') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 4, "the serial continues where it was");
    let id: i32 = app
        .client
        .query_one("SELECT add_customer('eve')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 5);
    let row = app
        .client
        .query_one(
            "INSERT INTO orders (customer_id, amount) VALUES (4, 1) RETURNING id, status::text, nextval('invoice_numbers')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, String>(1), "open");
    assert_eq!(row.get::<_, i64>(2), 1001);
    let counts = column(&su, "SELECT (SELECT count(*) FROM tenant_default.customers) || '/' || (SELECT count(*) FROM tenant_default.orders)").await;
    assert_eq!(counts, ["5/4"], "rows lost or duplicated");
}

/// First column of every row, as text.
async fn column(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

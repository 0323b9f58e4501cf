//! Transaction mode against a real PostgreSQL: a client's session settings
//! (startup ones and whatever it sets later) follow it from one server
//! connection to the next and reach no other client, however it changes
//! them; a value the server refuses ends only that client's session.

mod support;

use support::registry;
use tokio_postgres::Client;

const WHO: &str = "SELECT coalesce(current_setting('app.who', true), '')";

async fn superuser() -> Client {
    support::cluster().connect(&registry().db).await
}

async fn who(c: &Client) -> String {
    c.query_one(WHO, &[]).await.unwrap().get(0)
}

/// One server connection: the clients take turns on it, so whatever one
/// leaves there the next one would see.
fn one_connection(prefix: &str) -> (support::Proxy, String) {
    let reg = registry();
    let t = reg.create_tenant(prefix);
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    (proxy, key)
}

/// Custom settings (`app.who`, what row-level security policies read) are
/// not in `pg_settings`: the proxy reads them back by name.
#[tokio::test]
async fn custom_settings_follow_their_client_and_no_one_else() {
    let (proxy, key) = one_connection("customset");
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    let ways = [
        "SET app.who = 'by SET'",
        "SET SESSION \"APP\".\"WHO\" TO 'by SET SESSION'",
        "SELECT set_config('app.who', 'by set_config', false)",
    ];
    for sql in ways {
        a.batch_execute(sql).await.unwrap();
        assert_eq!(who(&b).await, "", "{sql}: another client got it");
        let want = sql.split('\'').nth_back(1).unwrap();
        assert_eq!(who(&a).await, want, "{sql}: the client lost it");
    }
    // A DO block's body is not read for names: the client keeps its
    // connection (the only one: the other client waits) until it leaves,
    // and the connection is reset then.
    a.batch_execute("DO $$BEGIN PERFORM set_config('app.who', 'by DO', false); END$$")
        .await
        .unwrap();
    assert_eq!(who(&a).await, "by DO");
    drop(a);
    assert_eq!(who(&b).await, "", "DO: another client got it");
    let a = proxy.client_ok(&key).await;
    // RESET, and a setting only for the transaction, leave nothing behind.
    a.batch_execute("RESET app.who").await.unwrap();
    assert_eq!(who(&a).await, "");
    a.batch_execute("BEGIN; SET LOCAL app.who = 'local'; COMMIT")
        .await
        .unwrap();
    assert_eq!(who(&a).await, "");
    assert_eq!(who(&b).await, "");
}

/// A named statement is read once, at its Parse; each later run is only
/// Bind/Execute/Sync, and must still have its setting read back.
#[tokio::test]
async fn a_named_statement_that_sets_a_setting_keeps_it_with_its_client() {
    let (proxy, key) = one_connection("namedset");
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    let set = a
        .prepare("SELECT set_config('app.who', $1, false)")
        .await
        .unwrap();
    let timeout = a
        .prepare("SELECT set_config('statement_timeout', $1, false)")
        .await
        .unwrap();
    for (name, ms) in [("first", "1111"), ("second", "2222"), ("third", "3333")] {
        a.query_one(&set, &[&name]).await.unwrap();
        a.query_one(&timeout, &[&ms]).await.unwrap();
        assert_eq!(who(&b).await, "", "another client got run {name}'s");
        let t: String = b
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, "0", "another client got run {name}'s");
        assert_eq!(who(&a).await, name, "the client lost its own setting");
        let t: String = a
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, format!("{ms}ms"));
    }
}

/// A custom setting given at login stays with the client when it changes
/// another one later (the read-back must not drop it).
#[tokio::test]
async fn a_custom_setting_from_the_login_survives_a_later_set() {
    let (proxy, key) = one_connection("loginset");
    let mut cfg = support::config_at(proxy.addr.port(), &key, "app");
    cfg.options("-c app.who=from-login");
    let (a, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let b = proxy.client_ok(&key).await;
    assert_eq!(who(&a).await, "from-login");
    a.batch_execute("SET statement_timeout = 4321")
        .await
        .unwrap();
    assert_eq!(who(&b).await, "");
    assert_eq!(who(&a).await, "from-login");
    let t: String = a
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "4321ms");
}

/// A setting whose name the statement computes can't be read back: the
/// client keeps its connection instead, and nothing reaches another. (The
/// firewall refuses such a statement in `enforce` mode, as one that could
/// set `search_path`; it passes in `monitor` mode.)
#[tokio::test]
async fn a_computed_setting_name_pins_the_client() {
    let reg = registry();
    let t = reg.create_tenant("computedset");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "2"),
        ("PGTENANT_FIREWALL_MODE", "monitor"),
    ]);
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    a.batch_execute("SELECT set_config('app.' || 'who', 'computed', false)")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(who(&b).await, "");
        assert_eq!(who(&a).await, "computed");
    }
}

/// What the proxy can't read pins the client, whose connection is then
/// reset when it leaves: dynamic SQL in a DO block (here a temporary
/// table, spelled so that no word gives it away) and the function-call
/// message (`PQfn`) calling `set_config` by its OID. The firewall, which
/// refuses the second in `enforce` mode, is off.
#[tokio::test]
async fn state_made_out_of_sight_stays_with_its_client() {
    use bytes::BufMut;
    use support::raw;

    let reg = registry();
    let t = reg.create_tenant("outofsight");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
        ("PGTENANT_FIREWALL_MODE", "off"),
    ]);
    let a = proxy.client_ok(&key).await;
    a.batch_execute("DO $$BEGIN EXECUTE 'CREATE TE' || 'MP TABLE dyn_tmp (x int)'; END$$")
        .await
        .unwrap();
    drop(a);
    let b = proxy.client_ok(&key).await;
    let seen: bool = b
        .query_one("SELECT to_regclass('pg_temp.dyn_tmp') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!seen, "the next client sees the temporary table");
    drop(b);

    let (mut s, _, _) = raw::startup(proxy.addr, &key).await;
    raw::send(&mut s, |b| {
        let args: [&[u8]; 3] = [b"app.who", b"by PQfn", b"false"];
        let len = 4 + 4 + 2 + 2 + args.iter().map(|a| 4 + a.len()).sum::<usize>() + 2;
        b.put_u8(b'F');
        b.put_i32(len as i32);
        b.put_u32(2078); // set_config(text, text, boolean)
        b.put_i16(0); // every argument in text
        b.put_i16(3);
        for a in args {
            b.put_i32(a.len() as i32);
            b.put_slice(a);
        }
        b.put_i16(0);
    })
    .await;
    assert_eq!(raw::until_ready(&mut s).await, None);
    raw::query(&mut s, WHO).await;
    assert_eq!(raw::tags_until_ready(&mut s).await, "TDCZ");
    drop(s);
    let c = proxy.client_ok(&key).await;
    assert_eq!(who(&c).await, "", "the next client got the setting");
}

#[tokio::test]
async fn a_client_keeps_its_settings_on_every_connection() {
    let reg = registry();
    let t = reg.create_tenant("pinned");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "2"),
    ]);
    let c = proxy.client_ok(&key).await;
    c.batch_execute("SET statement_timeout = 4321")
        .await
        .unwrap();
    for _ in 0..5 {
        let v: String = c
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, "4321ms");
    }
    // Another client is still served by the other connection meanwhile.
    let other = proxy.client_ok(&key).await;
    let v: String = other
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "0");
}

/// Startup settings travel with the client's first statement once the
/// server has accepted them before; the first time, and for a bad value,
/// they are applied before the client gets ReadyForQuery.
#[tokio::test]
async fn startup_settings_follow_each_client_over_one_connection() {
    let reg = registry();
    let t = reg.create_tenant("startset");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", mode), ("PGTENANT_POOL_SIZE", "1")]);
        // DateStyle is a list setting (`SQL,DMY` reads back as `SQL, DMY`).
        let connect = |app: &str, timeout: &str, style: &str| {
            let mut cfg = support::config_at(proxy.addr.port(), &key, "app");
            cfg.application_name(app).options(format!(
                "-c statement_timeout={timeout} -c DateStyle={style}"
            ));
            async move {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                let conn = tokio::spawn(conn);
                Ok::<_, tokio_postgres::Error>((client, conn))
            }
        };
        let Err(err) = connect("bad", "soon", "SQL,DMY").await else {
            panic!("{mode}: a bad value must fail the login");
        };
        assert_eq!(support::sqlstate(&err), "22023", "{mode}: {err:?}");
        let mut pids = std::collections::HashSet::new();
        for round in 0..3 {
            // Quotes and backslashes must arrive as sent.
            // A style without an order gets the server's default order,
            // not the one the client before set (a SET keeps it).
            for (app, timeout, shown, style, shown_style) in [
                (r"al'p\ha", "1111", "1111ms", "SQL,DMY", "SQL, DMY"),
                ("beta", "2s", "2s", "SQL,YMD", "SQL, YMD"),
                ("gamma", "3s", "3s", "ISO", "ISO, MDY"),
            ] {
                let (c, conn) = connect(app, timeout, style).await.unwrap_or_else(|e| {
                    panic!("{mode} round {round} {app}: {e:?}\n{}", proxy.log())
                });
                let row = c
                    .query_one(
                        "SELECT current_setting('application_name'), \
                         current_setting('statement_timeout'), pg_backend_pid(), \
                         current_setting('DateStyle')",
                        &[],
                    )
                    .await
                    .unwrap();
                let got: (String, String, String) = (row.get(0), row.get(1), row.get(3));
                assert_eq!(
                    got,
                    (app.to_owned(), shown.to_owned(), shown_style.to_owned()),
                    "{mode} round {round}"
                );
                pids.insert(row.get::<_, i32>(2));
                drop(c);
                conn.await.unwrap().unwrap();
            }
        }
        assert_eq!(pids.len(), 1, "{mode}: one connection served every client");
    }
}

/// A text search configuration in tenant `t`'s schema, which a test drops
/// later to make a setting the server took before fail: its name.
async fn text_search_config(su: &Client, t: &str) -> String {
    let name = format!("tenant_{t}.pgt_cfg");
    su.batch_execute(&format!(
        "CREATE TEXT SEARCH CONFIGURATION {name} (COPY = simple)"
    ))
    .await
    .unwrap();
    name
}

/// A client that logs in with `default_text_search_config` set to `name`.
async fn with_text_search_config(proxy: &support::Proxy, key: &str, name: &str) -> Client {
    let mut cfg = support::config_at(proxy.addr.port(), key, "app");
    cfg.options(format!("-c default_text_search_config={name}"));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A setting sent ahead of the client's first statement that the server
/// refuses after all (here: the object it names was dropped meanwhile)
/// ends that session with the server's error; the connection is not reused.
#[tokio::test]
async fn a_queued_setting_the_server_refuses_ends_the_session() {
    let reg = registry();
    let t = reg.create_tenant("lateset");
    let key = reg.issue_key(&t);
    let su = superuser().await;
    let cfg_name = text_search_config(&su, &t).await;
    let proxy = reg.proxy(&[("PGTENANT_POOL_SIZE", "1")]);
    for _ in 0..2 {
        let c = with_text_search_config(&proxy, &key, &cfg_name).await;
        let v: String = c
            .query_one("SHOW default_text_search_config", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, cfg_name);
    }
    su.batch_execute(&format!("DROP TEXT SEARCH CONFIGURATION {cfg_name}"))
        .await
        .unwrap();
    let c = with_text_search_config(&proxy, &key, &cfg_name).await;
    let err = c.query_one("SELECT 1", &[]).await.unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert!(
        db.message().contains("default_text_search_config"),
        "the server's own reason: {db:?}"
    );
    assert!(c.is_closed() || c.simple_query("SELECT 1").await.is_err());
    // The next client gets a working session.
    let c = proxy.client_ok(&key).await;
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// Transaction mode: a client's settings replace an earlier client's in
/// one batch, which the server runs as one transaction. Refused (here: the
/// object a setting names was dropped after the server had taken it), it
/// leaves the earlier client's values in place, so the client's statement
/// must wait for the batch's answer instead of being sent behind it: it
/// never runs under another client's `app.who`.
#[tokio::test]
async fn a_statement_never_runs_under_another_clients_settings() {
    let reg = registry();
    let t = reg.create_tenant("undoset");
    let key = reg.issue_key(&t);
    let su = superuser().await;
    let cfg_name = text_search_config(&su, &t).await;
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    let x = with_text_search_config(&proxy, &key, &cfg_name).await;
    x.batch_execute("SELECT 1").await.unwrap(); // the server took the value

    let m = proxy.client_ok(&key).await;
    m.batch_execute("CREATE TABLE seen (who text); SET app.who = 'm'")
        .await
        .unwrap();
    assert_eq!(who(&m).await, "m");
    su.batch_execute(&format!("DROP TEXT SEARCH CONFIGURATION {cfg_name}"))
        .await
        .unwrap();

    // The connection has m's app.who: x's batch resets it and fails.
    let err = x
        .batch_execute("INSERT INTO seen SELECT current_setting('app.who', true)")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert!(
        db.message().contains("default_text_search_config"),
        "{db:?}"
    );
    let seen: i64 = m
        .query_one("SELECT count(*) FROM seen", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "x's statement ran under m's settings");
    assert_eq!(who(&m).await, "m");
}

/// Transaction mode: `idle_session_timeout` acts on a connection while it
/// idles, which in the pool is under no client: it would end there, and
/// the next client to take it would lose its session. A client that sets
/// it keeps its connection, and its own session ends as on PostgreSQL.
#[tokio::test]
async fn an_idle_session_timeout_ends_only_its_own_clients_session() {
    let (proxy, key) = one_connection("idletimeout");
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    a.batch_execute("SET idle_session_timeout = '200ms'")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    b.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(who(&b).await, "");
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        a.is_closed() || err.code() == Some(&tokio_postgres::error::SqlState::IDLE_SESSION_TIMEOUT),
        "{err:?}"
    );
}

/// A client pinned by a setting it changed keeps its cancel key pointed at
/// its connection: its cancels still reach its statements.
#[tokio::test]
async fn a_client_pinned_by_its_settings_can_still_cancel() {
    let (proxy, key) = one_connection("pincancel");
    let c = proxy.client_ok(&key).await;
    c.batch_execute("SET idle_session_timeout = '10min'")
        .await
        .unwrap();
    let token = c.cancel_token();
    let sleeping = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    support::until_running(&superuser().await, "SELECT pg_sleep(30)").await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), sleeping)
        .await
        .expect("the cancel did not reach the query")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{e:?}"
    );
}

/// The proxy's own queries name `pg_catalog` objects in full: a temporary
/// table named like a catalog (searched before `pg_catalog`) must not feed it settings the client never made, such as a
/// `search_path` away from the tenant's schema or
/// `standard_conforming_strings = off`, which would make the server read
/// SQL differently from the firewall.
#[tokio::test]
async fn the_proxys_own_queries_cannot_be_fed_by_look_alikes() {
    let (proxy, key) = one_connection("lookalike");
    let c = proxy.client_ok(&key).await;
    let schema: String = c
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute(
        "CREATE FUNCTION shadow() RETURNS void LANGUAGE sql AS $$
           CREATE TEMP TABLE pg_settings AS SELECT * FROM (VALUES
             ('standard_conforming_strings', 'off', 'session'),
             ('search_path', 'public', 'session')) v(name, setting, source) $$;
         BEGIN; SELECT shadow(); SET application_name = 'lookalike'; COMMIT",
    )
    .await
    .unwrap();
    // The read-back ran after COMMIT, on the connection with the table;
    // the next transactions get what it read.
    for _ in 0..2 {
        let row = c
            .query_one(
                "SELECT current_setting('search_path'), \
                 current_setting('standard_conforming_strings'), \
                 current_setting('application_name')",
                &[],
            )
            .await
            .unwrap();
        let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            got,
            (schema.clone(), "on".into(), "lookalike".into()),
            "{}",
            proxy.log()
        );
    }
}

/// A client's login reports the server's parameters as they are for it:
/// not the `application_name` or `DateStyle` another client of the tenant
/// set on the same connection (pgjdbc refuses a login whose DateStyle is
/// not ISO), while that client keeps them.
#[tokio::test]
async fn a_login_is_not_told_another_clients_settings() {
    use support::raw;
    let (proxy, key) = one_connection("hello");
    let a = proxy.client_ok(&key).await;
    a.batch_execute("SET application_name = 'svc-a'; SET DateStyle = 'German'")
        .await
        .unwrap();
    let mut b = raw::send_startup(proxy.addr, &key).await;
    let mut params = std::collections::HashMap::new();
    loop {
        let (tag, body) = raw::read_msg(&mut b).await.expect("login reply");
        match tag {
            b'S' => {
                let text = String::from_utf8(body).unwrap();
                let mut parts = text.split('\0');
                let (k, v) = (parts.next().unwrap(), parts.next().unwrap());
                params.insert(k.to_owned(), v.to_owned());
            }
            b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    assert_ne!(params["application_name"], "svc-a", "{params:?}");
    assert!(params["DateStyle"].starts_with("ISO"), "{params:?}");
    drop(b);
    let row = a.query_one(
        "SELECT current_setting('application_name'), current_setting('DateStyle')",
        &[],
    );
    let row = row.await.unwrap();
    assert_eq!(row.get::<_, String>(0), "svc-a");
    assert!(row.get::<_, String>(1).starts_with("German"));
}

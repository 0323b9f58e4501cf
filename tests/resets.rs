//! Startup settings are a session's reset values on PostgreSQL; the proxy
//! sets them after its own login, so it gives them back behind every
//! statement that resets them, against a real PostgreSQL: in both pool
//! modes, as a simple Query or inside an extended-protocol pipeline. And
//! what no reset undoes (the random seed) never reaches the next client.

mod support;

use support::{Registry, registry};

/// Pool mode and firewall mode: session mode with the firewall off reads
/// no statement but for resets and the random seed.
const MODES: [(&str, &str); 3] = [
    ("session", "enforce"),
    ("session", "off"),
    ("transaction", "enforce"),
];

fn proxy_in(reg: &Registry, mode: &str, firewall: &str, pool_size: &str) -> support::Proxy {
    reg.proxy(&[
        ("PGTENANT_POOL_MODE", mode),
        ("PGTENANT_POOL_SIZE", pool_size),
        ("PGTENANT_FIREWALL_MODE", firewall),
    ])
}

/// Startup settings are a session's reset values on PostgreSQL: `RESET
/// ALL` (asyncpg's pool sends it at every release), `RESET x`, `SET x TO
/// DEFAULT` and `DISCARD ALL` return to them, not to the server's
/// defaults, also for a custom setting given at login. Both modes; a RESET
/// in a transaction that is rolled back changes nothing.
#[tokio::test]
async fn a_reset_returns_to_the_startup_settings() {
    let reg = registry();
    let t = reg.create_tenant("resetstart");
    let key = reg.issue_key(&t);
    let probe = "SELECT current_setting('statement_timeout'), current_setting('application_name'), \
                 current_setting('DateStyle'), coalesce(current_setting('app.who', true), '')";
    let startup = ("4321ms", "restorer", "SQL, DMY", "from login");
    for (mode, firewall) in MODES {
        let proxy = proxy_in(reg, mode, firewall, "2");
        let mode = format!("{mode}, firewall {firewall}");
        let mut cfg = support::config_at(proxy.addr.port(), &key, "app");
        cfg.application_name("restorer")
            .options("-c statement_timeout=4321 -c DateStyle=SQL,DMY -c app.who=from\\ login");
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let read = || async {
            let r = c.query_one(probe, &[]).await.unwrap();
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
            )
        };
        let owned = |t: (&str, &str, &str, &str)| {
            (
                t.0.to_owned(),
                t.1.to_owned(),
                t.2.to_owned(),
                t.3.to_owned(),
            )
        };
        assert_eq!(read().await, owned(startup), "{mode}: login");
        for reset in [
            "SET statement_timeout = 7; SET application_name = 'x'; SET app.who = 'y'; \
             SET DateStyle = 'ISO'; RESET ALL",
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
            "SET statement_timeout = 7; RESET statement_timeout",
            "SET statement_timeout = 7; SET statement_timeout TO DEFAULT",
            "DISCARD ALL",
        ] {
            c.batch_execute(reset).await.unwrap();
            for _ in 0..3 {
                assert_eq!(read().await, owned(startup), "{mode}: {reset}");
            }
        }
        // What the client pipelined behind the RESET sees them too.
        let (reset, probed) = tokio::join!(
            c.batch_execute("SET statement_timeout = 7; RESET ALL"),
            c.simple_query(probe)
        );
        reset.unwrap();
        let row = probed
            .unwrap()
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (row.get(0), row.get(1), row.get(2), row.get(3)),
            (
                Some(startup.0),
                Some(startup.1),
                Some(startup.2),
                Some(startup.3)
            ),
            "{mode}: pipelined behind RESET ALL"
        );
        // A prepared RESET, each time it runs (named: tokio-postgres).
        let reset = c.prepare("RESET ALL").await.unwrap();
        for _ in 0..2 {
            c.batch_execute("SET statement_timeout = 7; SET app.who = 'y'")
                .await
                .unwrap();
            c.execute(&reset, &[]).await.unwrap();
            assert_eq!(read().await, owned(startup), "{mode}: prepared RESET ALL");
        }
        // Pipelined behind a prepared RESET, each with its own Sync
        // (tokio-postgres's pipelining, pgx batches, libpq pipeline mode):
        // the probe is on the wire before the RESET is answered.
        let probe_st = c.prepare(probe).await.unwrap();
        for _ in 0..2 {
            c.batch_execute("SET statement_timeout = 7; SET app.who = 'y'")
                .await
                .unwrap();
            let (ran, probed) = tokio::join!(c.execute(&reset, &[]), c.query_one(&probe_st, &[]));
            ran.unwrap();
            let r = probed.unwrap();
            assert_eq!(
                (r.get(0), r.get(1), r.get(2), r.get(3)),
                owned(startup),
                "{mode}: pipelined behind a prepared RESET ALL"
            );
        }
        // Kept by a rollback to a savepoint after an error.
        c.batch_execute("SET statement_timeout = 7").await.unwrap();
        let e = c
            .batch_execute("BEGIN; RESET ALL; SAVEPOINT s; SELECT 1/0")
            .await
            .unwrap_err();
        assert_eq!(support::sqlstate(&e), "22012");
        c.batch_execute("ROLLBACK TO s; COMMIT").await.unwrap();
        assert_eq!(
            read().await,
            owned(startup),
            "{mode}: RESET kept by a savepoint"
        );
        c.batch_execute("SET statement_timeout = 7").await.unwrap();
        c.batch_execute("BEGIN; RESET ALL").await.unwrap();
        c.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(
            read().await,
            owned(("7ms", startup.1, startup.2, startup.3)),
            "{mode}: a rolled-back RESET"
        );
    }
}

/// A reset run through the extended protocol gets the startup settings
/// back right behind its Execute, so what the client pipelined behind it
/// in the same Sync sees them; the restore leaves the client's unnamed
/// statement alone (parsed, described, then bound in a later round trip:
/// pgx, `PQprepare(conn, "", …)`); a reset the server refuses brings no
/// reply the client did not ask for. Both modes.
#[tokio::test]
async fn a_reset_in_an_extended_pipeline_is_restored_in_place() {
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;
    use support::raw;

    let reg = registry();
    let t = reg.create_tenant("resetpiped");
    let key = reg.issue_key(&t);
    const PROBE: &str = "SELECT current_setting('application_name')";
    // Replies up to ReadyForQuery, but for ParameterStatus: their tags, and
    // the value of the last application_name report and DataRow.
    async fn replies(s: &mut tokio::net::TcpStream) -> (String, String, String) {
        let (mut tags, mut reported, mut row) = (String::new(), String::new(), String::new());
        loop {
            let (tag, body) = raw::read_msg(s).await.expect("a reply");
            let text = String::from_utf8_lossy(&body).into_owned();
            if tag == b'S' {
                if text.starts_with("application_name\0") {
                    reported = text;
                }
                continue;
            }
            tags.push(tag as char);
            match tag {
                b'D' => row = text,
                b'Z' => return (tags, reported, row),
                _ => {}
            }
        }
    }
    let unnamed = |sql: &'static str| {
        move |b: &mut BytesMut| {
            frontend::parse("", sql, [], b).unwrap();
            raw::bind_execute(b, "", 0);
        }
    };
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[("PGTENANT_POOL_MODE", mode), ("PGTENANT_POOL_SIZE", "2")]);
        let (mut s, _, _) =
            raw::startup_with(proxy.addr, &key, &[("application_name", "restorer")]).await;
        // One Sync: the probe runs after the restore.
        raw::query(&mut s, "SET application_name = 'changed'").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        raw::send(&mut s, |b| {
            unnamed("RESET ALL")(b);
            unnamed(PROBE)(b);
            frontend::sync(b);
        })
        .await;
        let (tags, reported, row) = replies(&mut s).await;
        assert_eq!(tags, "12C12DCZ", "{mode}");
        assert!(row.ends_with("restorer"), "{mode}: {row:?}");
        assert!(reported.contains("restorer"), "{mode}: told {reported:?}");
        // Parsed and described, bound a round trip later.
        raw::query(&mut s, "SET application_name = 'changed'").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        raw::send(&mut s, |b| {
            frontend::parse("", "RESET ALL", [], b).unwrap();
            frontend::describe(b'S', "", b).unwrap();
            frontend::sync(b);
        })
        .await;
        assert_eq!(replies(&mut s).await.0, "1tnZ", "{mode}");
        raw::send(&mut s, |b| {
            raw::bind_execute(b, "", 0);
            frontend::sync(b);
        })
        .await;
        assert_eq!(
            replies(&mut s).await.0,
            "2CZ",
            "{mode}: the unnamed statement stayed"
        );
        raw::send(&mut s, |b| {
            unnamed(PROBE)(b);
            frontend::sync(b);
        })
        .await;
        assert!(replies(&mut s).await.2.ends_with("restorer"), "{mode}");
        // Bound in a transaction, run a round trip later: the portal is
        // still there, and the restore follows the run.
        raw::query(&mut s, "BEGIN; SET application_name = 'changed'").await;
        assert_eq!(raw::until_ready(&mut s).await, None);
        raw::send(&mut s, |b| {
            frontend::parse("", "RESET ALL", [], b).unwrap();
            frontend::bind(
                "",
                "",
                [],
                [],
                |_: (), _| Ok(postgres_protocol::IsNull::Yes),
                [],
                b,
            )
            .map_err(|_| ())
            .unwrap();
            frontend::sync(b);
        })
        .await;
        assert_eq!(replies(&mut s).await.0, "12Z", "{mode}");
        raw::send(&mut s, |b| {
            frontend::execute("", 0, b).unwrap();
            unnamed(PROBE)(b);
            frontend::sync(b);
        })
        .await;
        let (tags, _, row) = replies(&mut s).await;
        assert_eq!(tags, "C12DCZ", "{mode}: the portal stayed");
        assert!(row.ends_with("restorer"), "{mode}: {row:?}");
        raw::query(&mut s, "COMMIT").await;
        assert_eq!(raw::until_ready(&mut s).await, None, "{mode}");
        // Refused in a failed transaction: one error, then Ready.
        raw::query(&mut s, "BEGIN; SELECT 1/0").await;
        assert!(raw::until_ready(&mut s).await.is_some());
        raw::send(&mut s, |b| {
            unnamed("RESET ALL")(b);
            unnamed(PROBE)(b);
            frontend::sync(b);
        })
        .await;
        assert_eq!(replies(&mut s).await.0, "EZ", "{mode}");
        raw::query(&mut s, "ROLLBACK").await;
        assert_eq!(raw::until_ready(&mut s).await, None, "{mode}");
    }
}

/// `setseed()` and `SET seed` fix the server's random() sequence, and
/// `DISCARD ALL` doesn't reset it: a connection a client seeded is closed
/// when that client is done, never handed to the next one (who would read
/// the rest of the sequence). In transaction mode the client keeps its
/// connection, as its sequence would otherwise jump. Simple and extended
/// protocol, both modes, the firewall on and off.
#[tokio::test]
async fn a_random_seed_never_reaches_the_next_client() {
    let reg = registry();
    let t = reg.create_tenant("reseed");
    let key = reg.issue_key(&t);
    // The sequence after seed 0.5, read on a connection of its own.
    let direct = support::cluster().connect("postgres").await;
    direct.batch_execute("SELECT setseed(0.5)").await.unwrap();
    let mut seeded = Vec::new();
    for _ in 0..3 {
        let r = direct.query_one("SELECT random()", &[]).await.unwrap();
        seeded.push(r.get::<_, f64>(0));
    }
    for (mode, firewall) in MODES {
        let proxy = proxy_in(reg, mode, firewall, "1");
        for how in ["simple", "extended", "SET seed"] {
            let case = format!("{mode}, firewall {firewall}, {how}");
            let c = proxy.client_ok(&key).await;
            match how {
                "simple" => c.batch_execute("SELECT setseed(0.5)").await.unwrap(),
                "extended" => {
                    c.query("SELECT setseed($1)", &[&0.5f64]).await.unwrap();
                }
                _ => c.batch_execute("SET seed = 0.5").await.unwrap(),
            }
            // Its own statements, each its own transaction, follow it.
            let r = c.query_one("SELECT random()", &[]).await.unwrap();
            assert_eq!(r.get::<_, f64>(0), seeded[0], "{case}");
            let pid: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            drop(c);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let next = proxy.client_ok(&key).await;
            let r = next
                .query_one("SELECT random(), pg_backend_pid()", &[])
                .await
                .unwrap();
            let (x, next_pid) = (r.get::<_, f64>(0), r.get::<_, i32>(1));
            assert!(!seeded.contains(&x), "{case}: the next client read {x}");
            assert_ne!(next_pid, pid, "{case}: a new connection");
        }
    }
}

//! Acceptance tests of operations (issue 7) against a real PostgreSQL:
//! Prometheus metrics, health checks, the admin console (SHOW POOLS with
//! psql, PAUSE/RESUME, KILL). Failed-login throttling and the cap on
//! logins under way: `logins.rs`.

mod support;

use std::time::{Duration, Instant};

use support::metrics::{http_get, metric, metrics_addr, scrape_until};
use support::{Proxy, registry, sqlstate};
use tokio::io::AsyncReadExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

// ---------------------------------------------------------------- helpers

/// Rows of a console command through psql, `|`-separated, no header.
fn psql_console(proxy: &Proxy, password: &str, sql: &str) -> Vec<Vec<String>> {
    let psql = support::cluster().bindir.join("psql");
    let psql = if psql.exists() { psql } else { "psql".into() };
    let out = std::process::Command::new(psql)
        .arg(format!(
            "host=127.0.0.1 port={} user=admin dbname=pgtenant sslmode=disable",
            proxy.addr.port()
        ))
        .args(["-XAtq", "-F", "|", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// SHOW POOLS columns of `tenant`: cl_active, cl_waiting, sv_active,
/// sv_idle, pool_mode, paused.
fn pool_row(rows: &[Vec<String>], tenant: &str) -> Option<[String; 6]> {
    let r = rows.iter().find(|r| r[0] == tenant)?;
    Some([
        r[2].clone(),
        r[3].clone(),
        r[4].clone(),
        r[5].clone(),
        r[8].clone(),
        r[10].clone(),
    ])
}

async fn console_rows(c: &Client, sql: &str) -> Vec<Vec<String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn metrics_count_each_tenants_transactions_and_refusals() {
    const N: usize = 7;
    const M: usize = 3;
    let reg = registry();
    let (a, b, c) = (
        reg.create_tenant("met_a"),
        reg.create_tenant("met_b"),
        reg.create_tenant("met_c"),
    );
    let (ka, kb, kc) = (reg.issue_key(&a), reg.issue_key(&b), reg.issue_key(&c));
    let out = support::pgtenant_cli(&["tenant", "deactivate", &b], &reg.env_refs());
    assert!(out.status.success());
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_METRICS_ADDR", &maddr),
        ("PGTENANT_METRICS_MAX_TENANTS", "1"),
    ]);

    // Tenant A: N transactions (one explicit), one per ReadyForQuery(idle).
    let ca = proxy.client_ok(&ka).await;
    for _ in 0..N - 1 {
        ca.simple_query("SELECT 1").await.unwrap();
    }
    ca.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    drop(ca);
    let body = scrape_until(&maddr, "A's transactions", |t| {
        metric(t, "pgtenant_transactions_total", &[("tenant", &a)]).is_some()
    })
    .await;
    assert_eq!(
        metric(&body, "pgtenant_transactions_total", &[("tenant", &a)]),
        Some(N as f64)
    );

    // Tenant B is inactive: M refusals; and two wrong keys.
    for _ in 0..M {
        let e = proxy.client_db(&kb, "app").await.unwrap_err();
        assert_eq!(sqlstate(&e), "28000");
    }
    for _ in 0..2 {
        let wrong = format!("pgt_{}", "Z".repeat(43));
        assert_eq!(
            sqlstate(&proxy.client_db(&wrong, "app").await.unwrap_err()),
            "28P01"
        );
    }
    // Tenant C is past the label cap of 1: counted as "other".
    let cc = proxy.client_ok(&kc).await;
    cc.simple_query("SELECT 1").await.unwrap();
    drop(cc);

    let body = scrape_until(&maddr, "C's transaction", |t| {
        metric(t, "pgtenant_transactions_total", &[("tenant", "other")]).is_some()
    })
    .await;
    let logins = |outcome| metric(&body, "pgtenant_logins_total", &[("outcome", outcome)]);
    assert_eq!(logins("tenant_inactive"), Some(M as f64), "{body}");
    assert_eq!(logins("invalid_key"), Some(2.0));
    assert_eq!(logins("ok"), Some(2.0));
    assert_eq!(
        metric(&body, "pgtenant_transactions_total", &[("tenant", "other")]),
        Some(1.0)
    );
    assert!(!body.contains(&c), "C has a label of its own:\n{body}");
    for dir in ["in", "out"] {
        let bytes = metric(
            &body,
            "pgtenant_client_bytes_total",
            &[("tenant", &a), ("direction", dir)],
        );
        assert!(bytes.is_some_and(|n| n > 0.0), "bytes {dir}: {body}");
    }
    // Session mode: A's connection went back to the pool, idle.
    let idle = [("tenant", a.as_str()), ("state", "idle")];
    assert_eq!(
        metric(&body, "pgtenant_server_connections", &idle),
        Some(1.0)
    );
    let active = [("tenant", a.as_str()), ("state", "active")];
    assert_eq!(
        metric(&body, "pgtenant_client_connections", &active),
        Some(0.0)
    );
    // A's and C's sessions got a connection each (B's logins were
    // refused); none had to wait for one.
    assert_eq!(
        metric(&body, "pgtenant_pool_checkouts_total", &[]),
        Some(2.0),
        "{body}"
    );
    assert!(body.contains("pgtenant_pool_wait_seconds_bucket"), "{body}");
    for k in [&ka, &kb, &kc] {
        assert!(!body.contains(k.as_str()) && !proxy.log().contains(k.as_str()));
    }
}

#[tokio::test]
async fn pool_waits_are_timed() {
    let reg = registry();
    let t = reg.create_tenant("met_wait");
    let key = reg.issue_key(&t);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_METRICS_ADDR", &maddr),
        ("PGTENANT_POOL_SIZE", "1"),
    ]);
    // Session mode, one connection: the second client waits for the first
    // to leave, and only that checkout is timed.
    let first = proxy.client_ok(&key).await;
    first.simple_query("SELECT 1").await.unwrap();
    let (second, ()) = tokio::join!(proxy.client_ok(&key), async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
    });
    second.simple_query("SELECT 1").await.unwrap();
    let body = scrape_until(&maddr, "the second checkout", |t| {
        metric(t, "pgtenant_pool_checkouts_total", &[]) == Some(2.0)
    })
    .await;
    assert_eq!(
        metric(&body, "pgtenant_pool_wait_seconds_count", &[]),
        Some(1.0),
        "{body}"
    );
    let waited = metric(&body, "pgtenant_pool_wait_seconds_sum", &[]).unwrap();
    assert!((0.1..5.0).contains(&waited), "waited {waited} s:\n{body}");
}

/// `pgtenant_prepared_statements` counts every connection's statements,
/// not the last one's that changed.
#[tokio::test]
async fn prepared_statements_are_counted_over_all_connections() {
    let reg = registry();
    let t = reg.create_tenant("met_prep");
    let key = reg.issue_key(&t);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_METRICS_ADDR", &maddr),
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "2"),
    ]);
    // Inside transactions, so each client holds its own connection.
    let a = proxy.client_ok(&key).await;
    let b = proxy.client_ok(&key).await;
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    for (c, texts) in [(&a, &["SELECT 1", "SELECT 2"][..]), (&b, &["SELECT 3"][..])] {
        for sql in texts {
            let st = c.prepare(sql).await.unwrap();
            c.query(&st, &[]).await.unwrap();
        }
    }
    let body = scrape_until(&maddr, "three statements on two connections", |t| {
        metric(t, "pgtenant_prepared_statements", &[]) == Some(3.0)
    })
    .await;
    assert_eq!(
        metric(&body, "pgtenant_prepared_statements", &[]),
        Some(3.0)
    );
    a.batch_execute("COMMIT").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn health_and_readiness() {
    let reg = registry();
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[("PGTENANT_METRICS_ADDR", &maddr)]);
    assert_eq!(http_get(&maddr, "/healthz").await.0, 200);
    let (status, body) = http_get(&maddr, "/readyz").await;
    assert_eq!(status, 200, "{body}\n{}", proxy.log());
    assert_eq!(http_get(&maddr, "/nope").await.0, 404);

    // A second proxy whose backend is a dead port: alive, not ready.
    let cluster = support::cluster();
    let dead = cluster.url(&reg.db).replace(
        &format!(":{}/", cluster.port),
        &format!(":{}/", support::free_port()),
    );
    let maddr2 = metrics_addr();
    let _broken = reg.proxy(&[
        ("PGTENANT_BACKEND_URL", &dead),
        ("PGTENANT_METRICS_ADDR", &maddr2),
    ]);
    assert_eq!(http_get(&maddr2, "/healthz").await.0, 200);
    let (status, body) = http_get(&maddr2, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("registry"), "{body}");
    assert!(!body.contains(&cluster.password), "{body}");
    // What failed, not where: the address is in the log only.
    assert!(!body.contains("127.0.0.1"), "{body}");

    // Connections past the cap are closed unanswered; the port serves
    // again once those held are gone.
    let held: Vec<tokio::net::TcpStream> = futures_util::future::join_all(
        (0..64).map(|_| tokio::net::TcpStream::connect(maddr.as_str())),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(maddr.as_str())
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut byte))
        .await
        .expect("closed at once, not held")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get(&maddr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn admin_console_shows_pools_pauses_and_kills() {
    let reg = registry();
    let (acme, globex) = (reg.create_tenant("acme"), reg.create_tenant("globex"));
    let (ka, kg) = (reg.issue_key(&acme), reg.issue_key(&globex));
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_ADMIN_PASSWORD", ADMIN_PASSWORD),
        // PAUSE must not time out like a busy pool does.
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "500"),
    ]);

    // acme: one client inside a transaction (holds a connection), one
    // idle; globex: one idle client.
    let a1 = proxy.client_ok(&ka).await;
    let a2 = proxy.client_ok(&ka).await;
    let g1 = proxy.client_ok(&kg).await;
    a1.batch_execute("BEGIN").await.unwrap();
    a2.simple_query("SELECT 1").await.unwrap();
    g1.simple_query("SELECT 1").await.unwrap();
    let expect = |rows: &[Vec<String>], t: &str, want: [&str; 6]| {
        pool_row(rows, t).is_some_and(|r| r == want.map(String::from))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = psql_console(&proxy, ADMIN_PASSWORD, "SHOW POOLS");
        if expect(&rows, &acme, ["2", "0", "1", "1", "transaction", "false"])
            && expect(&rows, &globex, ["1", "0", "0", "1", "transaction", "false"])
        {
            break;
        }
        assert!(Instant::now() < deadline, "SHOW POOLS: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let admin = proxy.client_db(ADMIN_PASSWORD, "pgtenant").await.unwrap();
    admin.simple_query(&format!("PAUSE {acme}")).await.unwrap();
    // A new acme transaction waits, past query_wait_timeout…
    let waiting = tokio::spawn(async move {
        a2.simple_query("SELECT 42").await.map(|_| ())?;
        Ok::<_, tokio_postgres::Error>(a2)
    });
    // …while the running one finishes and globex is not affected.
    let t = Instant::now();
    a1.simple_query("SELECT 2").await.unwrap();
    a1.batch_execute("COMMIT").await.unwrap();
    g1.simple_query("SELECT 3").await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "a paused transaction ran");
    let rows = console_rows(&admin, "SHOW POOLS").await;
    let row = pool_row(&rows, &acme).unwrap();
    assert_eq!(
        (row[1].as_str(), row[5].as_str()),
        ("1", "true"),
        "{rows:?}"
    );

    admin.simple_query(&format!("RESUME {acme}")).await.unwrap();
    let a2 = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("RESUME released the waiting transaction")
        .unwrap()
        .unwrap();

    // Other commands answer with rows; SHOW CONFIG hides secrets.
    let clients = console_rows(&admin, "SHOW CLIENTS").await;
    assert_eq!(clients.iter().filter(|r| r[0] == acme).count(), 2);
    let config = console_rows(&admin, "SHOW CONFIG").await;
    let text = format!("{config:?}");
    assert!(
        text.contains("pool.mode") && text.contains("transaction"),
        "{text}"
    );
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    let tenants = console_rows(&admin, "SHOW TENANTS").await;
    assert!(tenants.iter().any(|r| r[0] == globex), "{tenants:?}");
    for cmd in ["SHOW STATS", "SHOW SERVERS", "SHOW FIREWALL"] {
        console_rows(&admin, cmd).await;
    }
    let e = admin.simple_query("SHOW ME THE MONEY").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert_eq!(
        console_rows(&admin, "SHOW POOLS").await.len(),
        2,
        "usable after an error"
    );

    // KILL ends globex's sessions only.
    admin.simple_query(&format!("KILL {globex}")).await.unwrap();
    assert!(g1.simple_query("SELECT 1").await.is_err());
    a2.simple_query("SELECT 1").await.unwrap();

    // A tenant key opens no console; a wrong password neither.
    let e = proxy.client_db(&ka, "pgtenant").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28000");
    let e = proxy
        .client_db("wrong-admin-password", "pgtenant")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    let log = proxy.log();
    assert!(
        !log.contains(ADMIN_PASSWORD) && !log.contains(&ka),
        "a secret was logged"
    );
}

/// Polls SHOW POOLS/SHOW CLIENTS until `tenant` has `waiting` clients
/// waiting and `clients` in all.
async fn until_clients(admin: &Client, proxy: &Proxy, tenant: &str, waiting: &str, clients: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pools = console_rows(admin, "SHOW POOLS").await;
        let listed = console_rows(admin, "SHOW CLIENTS").await;
        let n = listed.iter().filter(|r| r[0] == tenant).count();
        if pool_row(&pools, tenant).is_some_and(|r| r[1] == waiting) && n == clients {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "want {waiting} waiting of {clients}: {pools:?} {listed:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clients that wait at a PAUSE (for their next transaction, or at login
/// for the connection their hello reports on) leave it at once when they
/// close, not at RESUME; one can be killed out of its login.
#[tokio::test]
async fn clients_waiting_at_a_pause_can_leave_or_be_killed() {
    let reg = registry();
    let acme = reg.create_tenant("acme");
    let ka = reg.issue_key(&acme);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]);
    let (mut between, _, _) = support::raw::startup(proxy.addr, &ka).await;
    let (mut bye, _, _) = support::raw::startup(proxy.addr, &ka).await;
    let admin = proxy.client_db(ADMIN_PASSWORD, "pgtenant").await.unwrap();
    admin.simple_query(&format!("PAUSE {acme}")).await.unwrap();
    // A Terminate needs no connection: the session ends at the PAUSE,
    // though the client keeps its socket open.
    support::raw::send(&mut bye, postgres_protocol::message::frontend::terminate).await;
    let end = tokio::time::timeout(Duration::from_secs(10), bye.read_u8()).await;
    assert!(
        end.as_ref().is_ok_and(|r| r.is_err()),
        "the session did not end: {end:?}\n{}",
        proxy.log()
    );
    support::raw::query(&mut between, "SELECT 1").await;
    let logging_in = support::raw::send_startup(proxy.addr, &ka).await;
    until_clients(&admin, &proxy, &acme, "2", 2).await;

    drop(between);
    drop(logging_in);
    until_clients(&admin, &proxy, &acme, "0", 0).await;
    assert_eq!(
        proxy
            .log()
            .matches("client left while waiting for a server connection")
            .count(),
        2,
        "{}",
        proxy.log()
    );

    // KILL ends a login that waits, with 57P01.
    let mut killed = support::raw::send_startup(proxy.addr, &ka).await;
    until_clients(&admin, &proxy, &acme, "1", 1).await;
    admin.simple_query(&format!("KILL {acme}")).await.unwrap();
    let (tag, body) =
        tokio::time::timeout(Duration::from_secs(10), support::raw::read_msg(&mut killed))
            .await
            .expect("the kill was told")
            .expect("an error before the close");
    let body = String::from_utf8_lossy(&body);
    assert!(
        tag == b'E' && body.contains("C57P01"),
        "{}: {body}",
        tag as char
    );

    // After RESUME the pool serves as before.
    admin.simple_query(&format!("RESUME {acme}")).await.unwrap();
    let c = proxy.client_ok(&ka).await;
    c.simple_query("SELECT 1").await.unwrap();
}

/// A key pasted as the user name (`postgresql://pgt_…@host/app`) never
/// reaches the log or SHOW CLIENTS; nor does its hash, which tokio-postgres
/// logs with the registry's lookup at `debug`, however the level asks.
#[tokio::test]
async fn a_key_given_as_the_user_name_is_not_shown() {
    let reg = registry();
    let t = reg.create_tenant("pasted");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("PGTENANT_LOG_LEVEL", "debug,tokio_postgres::query=trace"),
    ]);
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.addr.port())
        .user(&key)
        .password(&key)
        .dbname("app");
    let (c, conn) = cfg.connect(NoTls).await.expect("login");
    tokio::spawn(conn);
    c.simple_query("SELECT 1").await.unwrap();
    let wrong = format!("pgt_{}", "W".repeat(43));
    cfg.user(&wrong).password(&wrong);
    assert!(cfg.connect(NoTls).await.is_err());
    let rows = psql_console(&proxy, ADMIN_PASSWORD, "SHOW CLIENTS");
    assert!(!rows.is_empty());
    let shown = format!("{rows:?}\n{}", proxy.log());
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(
        !shown.contains(&key[4..]) && !shown.contains(&wrong[4..]),
        "{shown}"
    );
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert!(
        !shown.contains(&hash) && !shown.contains("with parameters"),
        "{shown}"
    );
}

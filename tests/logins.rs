//! Logins under attack and under load, against a real PostgreSQL:
//! failed-login throttling per source address (valid clients stay fast,
//! known keys pass a throttled address), and the cap on logins under way
//! from one address, with one deadline for startup and login.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::metrics::{metric, metrics_addr, scrape_until};
use support::{Proxy, registry};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_postgres::NoTls;

/// One attempt with a well-formed, unknown key in the startup options:
/// the SQLSTATE and how long the refusal took.
async fn failed_login(addr: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut s = support::raw::send_startup(addr, &format!("pgt_{}", "Q".repeat(43))).await;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    let code = reply
        .windows(7)
        .find(|w| w[0] == b'C' && w[6] == 0)
        .map(|w| String::from_utf8_lossy(&w[1..6]).into_owned())
        .unwrap_or_else(|| format!("{reply:?}"));
    (code, started.elapsed())
}

/// A valid login and query from 127.0.0.2 (another source address).
async fn valid_login_from_other_address(proxy: &Proxy, key: &str) -> Duration {
    let started = Instant::now();
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(proxy.addr).await.unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("app").password(key).dbname("app");
    let (client, conn) = cfg.connect_raw(tcp, NoTls).await.expect("valid login");
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
    started.elapsed()
}

#[tokio::test]
async fn failed_login_storm_is_throttled_and_valid_clients_stay_fast() {
    const ATTEMPTS: usize = 1000;
    const WORKERS: usize = 100;
    let (burst, rate) = (10.0, 2.0);
    let reg = registry();
    let t = reg.create_tenant("storm");
    let key = reg.issue_key(&t);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[("PGTENANT_METRICS_ADDR", &maddr)]);

    let started = Instant::now();
    let addr = proxy.addr;
    let storm: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..ATTEMPTS / WORKERS {
                    out.push(failed_login(addr).await);
                }
                out
            })
        })
        .collect();
    let mut latencies = Vec::new();
    while storm.iter().any(|w| !w.is_finished()) {
        latencies.push(valid_login_from_other_address(&proxy, &key).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for w in storm {
        results.extend(w.await.unwrap());
    }

    assert_eq!(results.len(), ATTEMPTS);
    assert!(results.iter().all(|(c, _)| c == "28P01"), "{results:?}");
    let body = scrape_until(&maddr, "the storm", |_| true).await;
    let looked_up = metric(
        &body,
        "pgtenant_logins_total",
        &[("outcome", "invalid_key")],
    )
    .unwrap();
    let throttled = metric(&body, "pgtenant_logins_throttled_total", &[]).unwrap();
    assert_eq!(looked_up + throttled, ATTEMPTS as f64, "{body}");
    let bound = burst + rate * elapsed + 2.0;
    assert!(
        looked_up <= bound,
        "{looked_up} attempts were looked up in {elapsed:.1} s; the bound is {bound:.0}"
    );
    // Throttled attempts were answered after the delay, the others at once.
    let slow = results
        .iter()
        .filter(|(_, d)| *d >= Duration::from_millis(1000))
        .count();
    assert!(
        slow as f64 >= throttled,
        "{slow} slow, {throttled} throttled"
    );

    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "storm: {ATTEMPTS} failed logins in {elapsed:.1} s: {looked_up} looked up, \
         {throttled} throttled; {} valid logins, p99 {p99:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 5,
        "only {} valid logins",
        latencies.len()
    );
    assert!(
        p99 < Duration::from_secs(1),
        "p99 of a valid login + query during the storm: {p99:?} ({} samples)",
        latencies.len()
    );
}

#[tokio::test]
async fn many_concurrent_valid_logins_from_one_address_are_not_throttled() {
    // Far more than auth.failed_login_burst (10): a client pool starting up.
    const CLIENTS: usize = 40;
    let reg = registry();
    let t = reg.create_tenant("crowd");
    let key = reg.issue_key(&t);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_METRICS_ADDR", &maddr),
        ("PGTENANT_POOL_SIZE", "50"),
    ]);
    let logins: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (port, key) = (proxy.addr.port(), key.clone());
            tokio::spawn(async move {
                let client = support::client_at(port, &key, "app").await?;
                client.simple_query("SELECT 1").await?;
                Ok::<_, tokio_postgres::Error>(client)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for l in logins {
        clients.push(l.await.unwrap().expect("a valid login was refused"));
    }
    let body = scrape_until(&maddr, "the logins", |_| true).await;
    assert_eq!(
        metric(&body, "pgtenant_logins_total", &[("outcome", "ok")]),
        Some(CLIENTS as f64)
    );
    assert_eq!(
        metric(&body, "pgtenant_logins_throttled_total", &[]),
        None,
        "{body}"
    );
}

/// A source's failures don't lock out its valid keys: a key the proxy
/// already knows as valid logs in without the throttle, so one tenant's
/// stale key retried in a loop (or anyone behind the same NAT) can't shut
/// out the other tenants that share the address.
#[tokio::test]
async fn a_throttled_address_still_logs_in_known_keys() {
    let reg = registry();
    let t = reg.create_tenant("natted");
    let key = reg.issue_key(&t);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_METRICS_ADDR", &maddr),
        ("PGTENANT_AUTH_FAILED_LOGIN_BURST", "1"),
        ("PGTENANT_AUTH_FAILED_LOGIN_RATE_PER_SEC", "0.001"),
        ("PGTENANT_AUTH_THROTTLE_DELAY_MS", "100"),
        // Not from the key cache, whose entries expire (a second by
        // default) and which a resync empties.
        ("PGTENANT_REGISTRY_CACHE_TTL_MS", "1"),
    ]);
    proxy.client_ok(&key).await; // now known
    assert_eq!(failed_login(proxy.addr).await.0, "28P01");
    assert_eq!(failed_login(proxy.addr).await.0, "28P01");
    scrape_until(&maddr, "a throttled attempt", |t| {
        metric(t, "pgtenant_logins_throttled_total", &[]) == Some(1.0)
    })
    .await;
    let c = proxy.client(&key).await.expect("a known key was throttled");
    c.simple_query("SELECT 1").await.unwrap();
    // Revoked, it is looked up once more (refused), then throttled again.
    let su = support::cluster().connect(&reg.db).await;
    su.execute(
        "UPDATE pgtenant.api_keys k SET active = false FROM pgtenant.tenants t \
         WHERE t.id = k.tenant_id AND t.name = $1",
        &[&t],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let e = proxy.client(&key).await.unwrap_err();
        assert_eq!(support::sqlstate(&e), "28P01", "{e:?}");
    }
    scrape_until(&maddr, "the revoked key throttled", |t| {
        metric(t, "pgtenant_logins_throttled_total", &[]) == Some(2.0)
    })
    .await;
}

/// One address can't hold every client slot with logins it never
/// finishes: past `auth.max_logins_per_source` it is refused at once
/// (53300), while clients from elsewhere log in; the login's deadline
/// covers the startup and the password together.
#[tokio::test]
async fn unfinished_logins_from_one_address_are_capped() {
    let reg = registry();
    let t = reg.create_tenant("squat");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_AUTH_MAX_LOGINS_PER_SOURCE", "3"),
        ("PGTENANT_LOGIN_TIMEOUT_MS", "2000"),
    ]);
    let mut squatters = Vec::new();
    for _ in 0..3 {
        squatters.push(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Accepted in order: the fourth finds its source's three under way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, took) = failed_login(proxy.addr).await;
    assert_eq!(code, "53300");
    assert!(took < Duration::from_secs(1), "refused only after {took:?}");
    valid_login_from_other_address(&proxy, &key).await;
    drop(squatters);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.client(&key).await.is_err() {
        assert!(Instant::now() < deadline, "places were not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A startup sent late, then no password: closed at the login's
    // deadline, not one login_timeout after the startup.
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut buf = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message([("user", "app")], &mut buf).unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(&buf).await.unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    let took = started.elapsed();
    // 2 s after the connect, where a second full timeout would end at 3.5 s.
    assert!(took < Duration::from_millis(3000), "closed after {took:?}");
}

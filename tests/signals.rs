//! Reload (SIGHUP), graceful shutdown (SIGTERM) and per-tenant pool
//! settings, against a real PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use support::registry;
use tokio_postgres::Client;

async fn role_connections(role: &str) -> i64 {
    let su = support::cluster().connect(&registry().db).await;
    support::role_connections_on(&su, role).await
}

/// Waits until the proxy has logged its `n`th reload (applied by then).
async fn reloaded(proxy: &support::Proxy, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log().matches("configuration reloaded").count() < n {
        assert!(Instant::now() < deadline, "no reload\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_resizes_pools_live_and_a_broken_file_is_refused() {
    let reg = registry();
    let t = reg.create_tenant("hup");
    let key = reg.issue_key(&t);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    let write = |pool_size: usize, backend: &str| {
        std::fs::write(
            &file,
            format!("{backend}\n[pool]\nmode = \"transaction\"\npool_size = {pool_size}\nquery_wait_timeout_ms = 20000\n"),
        )
        .unwrap()
    };
    write(1, "");
    let proxy = reg.proxy(&[("PGTENANT_CONFIG", file.to_str().unwrap())]);
    let role = format!("tenant_{t}");

    // Four clients hold transactions open one after another with pool_size 1…
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(proxy.client(&key).await.unwrap());
    }
    async fn run_all(
        clients: &[Client],
    ) -> Vec<Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>> {
        let futs = clients
            .iter()
            .map(|c| c.simple_query("SELECT pg_sleep(0.3)"));
        futures_util::future::join_all(futs).await
    }
    let t0 = Instant::now();
    for r in run_all(&clients).await {
        r.unwrap();
    }
    let serial = t0.elapsed();
    assert!(role_connections(&role).await <= 1);

    // …then pool_size 4 on SIGHUP: the same work runs in parallel, nobody
    // dropped. (The backend section, built into the pools at start, is
    // kept, and the log says so.)
    write(
        4,
        "worker_threads = 2\n[backend]\nconnect_timeout_ms = 4321\n[log]\nformat = \"json\"\n",
    );
    proxy.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    for r in run_all(&clients).await {
        r.expect("a client was dropped by the reload");
    }
    let parallel = t0.elapsed();
    assert!(
        parallel < serial / 2,
        "pool_size 4 after SIGHUP should run 4 sleeps at once ({parallel:?} vs {serial:?})\n{}",
        proxy.log()
    );
    assert!(
        proxy.log().contains("configuration reloaded")
            && proxy
                .log()
                .contains("connect_timeout_ms) changes only on restart")
            && proxy
                .log()
                .contains("worker_threads changes only on restart")
            && proxy.log().contains("log.format changes only on restart"),
        "{}",
        proxy.log()
    );

    // A broken file is refused; the proxy keeps running on the last good config.
    std::fs::write(&file, "[pool\npool_size = ").unwrap();
    proxy.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.log().contains("config refused"), "{}", proxy.log());
    for c in &clients {
        c.simple_query("SELECT 1")
            .await
            .expect("still served after a refused reload");
    }
    let fresh = proxy.client(&key).await.expect("new logins still work");
    fresh.simple_query("SELECT 1").await.unwrap();
}

/// A transaction still open when the shutdown timeout passes is ended
/// with 57P01 (and rolled back), not cut off without a word: the order to
/// end at once must not be lost behind the earlier one to end when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_transaction_left_open_past_the_timeout_with_57p01() {
    let reg = registry();
    let t = reg.create_tenant("termopen");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_SHUTDOWN_TIMEOUT_MS", "300")]);
    let (mut s, _, _) = support::raw::startup(proxy.addr, &key).await;
    support::raw::query(&mut s, "BEGIN").await;
    assert_eq!(support::raw::until_ready(&mut s).await, None);
    proxy.signal("TERM");
    let said = tokio::time::timeout(Duration::from_secs(10), support::raw::read_msg(&mut s))
        .await
        .expect("the proxy said something within 10 s");
    let (tag, body) =
        said.unwrap_or_else(|| panic!("closed without an ErrorResponse\n{}", proxy.log()));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(tag, b'E', "{text}");
    assert!(text.contains("C57P01\0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_transaction_finish_then_exits_zero() {
    let reg = registry();
    let t = reg.create_tenant("term");
    let key = reg.issue_key(&t);
    let mut proxy = reg.proxy(&[("PGTENANT_SHUTDOWN_TIMEOUT_MS", "10000")]);
    let busy = proxy.client(&key).await.unwrap();
    let idle = proxy.client(&key).await.unwrap();
    busy.batch_execute("CREATE TABLE done (x int)")
        .await
        .unwrap();
    busy.batch_execute("BEGIN").await.unwrap();
    let work = tokio::spawn(async move {
        busy.batch_execute("INSERT INTO done SELECT 1 FROM pg_sleep(1)")
            .await?;
        busy.batch_execute("COMMIT").await?;
        Ok::<_, tokio_postgres::Error>(busy)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.log().contains("shutting down") {
        assert!(Instant::now() < deadline, "no shutdown\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The idle session is ended at once with 57P01…
    let e = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.code().map(|c| c.code()) == Some("57P01") || e.is_closed(),
        "{e:?}"
    );
    // …new clients are no longer accepted…
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(proxy.client(&key).await.is_err());
    // …and the running transaction commits before the proxy exits 0.
    let busy = work.await.unwrap().expect("the transaction finished");
    drop(busy);
    let status = tokio::task::spawn_blocking(move || {
        let s = proxy.wait_exit(Duration::from_secs(10));
        (s, proxy)
    })
    .await
    .unwrap();
    assert_eq!(
        status.0.map(|s| s.code()),
        Some(Some(0)),
        "{}",
        status.1.log()
    );
    let n: i64 = support::cluster()
        .connect(&registry().db)
        .await
        .query_one(&format!("SELECT count(*) FROM tenant_{t}.done"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn per_tenant_overrides_pick_mode_and_client_limit() {
    let reg = registry();
    let (a, b, c) = (
        reg.create_tenant("ovr_a"),
        reg.create_tenant("ovr_b"),
        reg.create_tenant("ovr_c"),
    );
    let (ka, kb, kc) = (reg.issue_key(&a), reg.issue_key(&b), reg.issue_key(&c));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    std::fs::write(
        &file,
        format!(
            "[pool]\nmode = \"session\"\npool_size = 4\n\n[pool.tenants.{a}]\nmode = \"transaction\"\npool_size = 1\nmax_client_connections = 2\n\n[pool.tenants.{c}]\nmin_idle = 2\n"
        ),
    )
    .unwrap();
    let proxy = reg.proxy(&[("PGTENANT_CONFIG", file.to_str().unwrap())]);

    // Tenant A: transaction mode — two sequential clients share one backend pid…
    let a1 = proxy.client(&ka).await.unwrap();
    let a2 = proxy.client(&ka).await.unwrap();
    // …and a third client is over A's limit of 2.
    let e = proxy.client(&ka).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains(&a));
    let p1: i32 = a1
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let p2: i32 = a2
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // pool_size 1: in session mode the second client could not even log in.
    assert_eq!(p1, p2, "both clients are served by A's single connection");
    // Tenant C, min_idle = 2: after its first use the reaper keeps two open.
    drop(proxy.client_ok(&kc).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while role_connections(&format!("tenant_{c}")).await < 2 {
        assert!(
            Instant::now() < deadline,
            "min_idle not reached\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deactivated, C's connections close and the reaper does not open new
    // ones (its role can't log in, or may be gone); a login after it is
    // active again brings min_idle back.
    let role_c = format!("tenant_{c}");
    reg.cli(&["tenant", "deactivate", &c]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while role_connections(&role_c).await > 0 {
        assert!(
            Instant::now() < deadline,
            "still open
{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            role_connections(&role_c).await,
            0,
            "reopened
{}",
            proxy.log()
        );
    }
    reg.cli(&["tenant", "activate", &c]);
    drop(proxy.client_ok(&kc).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while role_connections(&role_c).await < 2 {
        assert!(
            Instant::now() < deadline,
            "min_idle not back
{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Tenant B: session mode (the default) — each client has its own connection.
    let b1 = proxy.client(&kb).await.unwrap();
    let b2 = proxy.client(&kb).await.unwrap();
    let q1: i32 = b1
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let q2: i32 = b2
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(q1, q2);
}

/// A changed `admin.password` (a rotation after a leak) shuts out the
/// console sessions that logged in with the old one at their next command;
/// the new password logs in.
#[tokio::test]
async fn a_changed_admin_password_ends_console_sessions_of_the_old_one() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    let write = |password: &str| {
        std::fs::write(&file, format!("[admin]\npassword = \"{password}\"\n")).unwrap()
    };
    let (old, new) = ("old-console-password", "new-console-password");
    write(old);
    let proxy = reg.proxy(&[("PGTENANT_CONFIG", file.to_str().unwrap())]);
    let console = proxy.client_db(old, "pgtenant").await.unwrap();
    console.simple_query("SHOW POOLS").await.unwrap();
    // The same password again: a reload that changes nothing else of it.
    proxy.signal("HUP");
    reloaded(&proxy, 1).await;
    console.simple_query("SHOW POOLS").await.unwrap();
    write(new);
    proxy.signal("HUP");
    reloaded(&proxy, 2).await;
    let e = console.simple_query("SHOW POOLS").await.unwrap_err();
    assert_eq!(support::sqlstate(&e), "28000", "{e:?}");
    assert!(console.simple_query("SHOW POOLS").await.is_err(), "closed");
    assert!(proxy.client_db(old, "pgtenant").await.is_err());
    let fresh = proxy.client_db(new, "pgtenant").await.unwrap();
    fresh.simple_query("SHOW POOLS").await.unwrap();
    assert!(!proxy.log().contains(old) && !proxy.log().contains(new));
}

/// A tenant past `admin.metrics_max_tenants` counts under `tenant="other"`;
/// once a reload raises the cap, its later traffic counts under its own
/// name (as its gauges do), and what `other` counted stays there.
#[tokio::test]
async fn a_raised_metrics_tenant_cap_gives_a_folded_tenant_its_own_counters() {
    use support::metrics::{metric, metrics_addr, scrape_until};
    let reg = registry();
    let (a, b) = (reg.create_tenant("cap_a"), reg.create_tenant("cap_b"));
    let (ka, kb) = (reg.issue_key(&a), reg.issue_key(&b));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    let write = |cap: usize| {
        std::fs::write(&file, format!("[admin]\nmetrics_max_tenants = {cap}\n")).unwrap()
    };
    write(1);
    let maddr = metrics_addr();
    let proxy = reg.proxy(&[
        ("PGTENANT_CONFIG", file.to_str().unwrap()),
        ("PGTENANT_METRICS_ADDR", &maddr),
    ]);
    let run = |key: String| {
        let proxy = &proxy;
        async move {
            let c = proxy.client_ok(&key).await;
            c.simple_query("SELECT 1").await.unwrap();
        }
    };
    let tx =
        |t: &str, tenant: &str| metric(t, "pgtenant_transactions_total", &[("tenant", tenant)]);
    run(ka.clone()).await;
    run(kb.clone()).await;
    scrape_until(&maddr, "B under other", |t| tx(t, "other") == Some(1.0)).await;
    write(5);
    proxy.signal("HUP");
    // (No scrape until after the sessions: the cap must take effect at
    // the reload, not at the next scrape.)
    reloaded(&proxy, 1).await;
    run(kb.clone()).await;
    run(kb).await;
    let body = scrape_until(&maddr, "B's own counter", |t| tx(t, &b) == Some(2.0)).await;
    assert_eq!(tx(&body, "other"), Some(1.0), "{body}");
    assert_eq!(tx(&body, &a), Some(1.0), "{body}");
}

/// A reload that shrinks `pool_size` closes the connections past it: the
/// idle ones at once, the busy ones as their transactions end (not at
/// the idle timeout, minutes later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrunk_pool_closes_the_connections_past_its_size() {
    let reg = registry();
    let t = reg.create_tenant("shrink");
    let key = reg.issue_key(&t);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    let write = |n: usize| {
        let text = format!("[pool]\nmode = \"transaction\"\npool_size = {n}\n");
        std::fs::write(&file, text).unwrap()
    };
    write(4);
    let proxy = reg.proxy(&[("PGTENANT_CONFIG", file.to_str().unwrap())]);
    let role = format!("tenant_{t}");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = proxy.client(&key).await.unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        clients.push(c);
    }
    // Three busy, one idle.
    clients
        .pop()
        .unwrap()
        .batch_execute("COMMIT")
        .await
        .unwrap();
    assert_eq!(role_connections(&role).await, 4);
    write(1);
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while role_connections(&role).await > 3 {
        assert!(Instant::now() < deadline, "the idle one stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &clients {
        c.batch_execute("COMMIT").await.unwrap();
    }
    while role_connections(&role).await > 1 {
        assert!(Instant::now() < deadline, "the returned ones stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &clients {
        c.simple_query("SELECT 1").await.unwrap();
    }
}

/// A reload that turns `pool.idle_transaction_timeout_ms` off reaches a
/// transaction already idle: its count ends without ending the session.
#[tokio::test]
async fn a_reload_that_turns_the_idle_transaction_limit_off_spares_a_running_count() {
    let reg = registry();
    let t = reg.create_tenant("idlehup");
    let key = reg.issue_key(&t);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgtenant.toml");
    std::fs::write(&file, "[pool]\nidle_transaction_timeout_ms = 1000\n").unwrap();
    let proxy = reg.proxy(&[("PGTENANT_CONFIG", file.to_str().unwrap())]);
    let c = proxy.client_ok(&key).await;
    c.batch_execute("BEGIN").await.unwrap();
    std::fs::write(&file, "[pool]\nidle_transaction_timeout_ms = 0\n").unwrap();
    proxy.signal("HUP");
    reloaded(&proxy, 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.batch_execute("SELECT 1; COMMIT")
        .await
        .expect("the session outlived the old limit");
}

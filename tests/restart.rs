//! A PostgreSQL restart under load (its own test binary: it stops the
//! cluster that the other tests of a binary would share).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_errors_fast_and_recovers() {
    let reg = registry();
    let t = reg.create_tenant("restart");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "4"),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "3000"),
        ("PGTENANT_BACKEND_CONNECT_TIMEOUT_MS", "2000"),
    ]);
    let port = proxy.addr.port();
    let connect = move |key: String| async move { support::client_at(port, &key, "app").await };
    connect(key.clone())
        .await
        .unwrap()
        .batch_execute("CREATE TABLE hits (n int)")
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, key) = (stop.clone(), ok.clone(), failed.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut client = None;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    client = connect(key.clone()).await.ok();
                }
                let Some(c) = &client else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                // No call may hang: every one is bounded well below the test's patience.
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.execute("INSERT INTO hits VALUES (1)", &[]),
                )
                .await;
                match r {
                    Err(_) => panic!("a query hung through the restart"),
                    Ok(Ok(_)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if c.is_closed() {
                            client = None;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "no load before the restart\n{}", proxy.log());

    let cluster = support::cluster();
    tokio::task::spawn_blocking(|| support::cluster().stop())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(|| support::cluster().start_again())
        .await
        .unwrap();
    let back = Instant::now();
    let _ = cluster;

    // A brand-new client's transaction succeeds within 2 s of Postgres being back.
    let recovered = loop {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), connect(key.clone())).await
            && let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_secs(2),
                c.execute("INSERT INTO hits VALUES (2)", &[]),
            )
            .await
        {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no recovery\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        recovered < Duration::from_secs(2),
        "recovered only after {recovered:?}"
    );

    let after_restart = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "the restart went unnoticed?"
    );
    assert!(
        ok.load(Ordering::Relaxed) > after_restart,
        "the load did not resume\n{}",
        proxy.log()
    );
}

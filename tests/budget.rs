//! One connection budget for 1,000 tenants (its own test binary: it
//! creates many roles and would crowd the others' shared cluster).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::registry;

const TENANTS: usize = 1000;
const BUDGET: i64 = 50;
const WAIT_MS: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_share_fifty_connections_fairly() {
    let reg = registry();
    // Provision through the CLI, a few at a time.
    let tenants: Vec<(String, String)> = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    s.spawn(move || {
                        (w..TENANTS)
                            .step_by(4)
                            .map(|_| {
                                let t = reg.create_tenant("b");
                                let k = reg.issue_key(&t);
                                (t, k)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("provisioning"))
                .collect()
        })
    })
    .await
    .unwrap();
    assert_eq!(tenants.len(), TENANTS);

    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", "5"),
        ("PGTENANT_MAX_BACKEND_CONNECTIONS", &BUDGET.to_string()),
        ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", &WAIT_MS.to_string()),
    ]);
    let port = proxy.addr.port();
    let connect = move |key: String| async move { support::client_at(port, &key, "app").await };

    // Peak number of proxy connections Postgres sees.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let su = support::cluster().connect(&registry().db).await;
            let mut peak = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = su
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgtenant'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak = peak.max(n);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            peak
        })
    };

    // A noisy neighbour: 100 clients of one tenant in a tight loop.
    let noisy_key = tenants[0].1.clone();
    let mut noise = Vec::new();
    for _ in 0..100 {
        let (stop, key) = (stop.clone(), noisy_key.clone());
        noise.push(tokio::spawn(async move {
            let c = connect(key).await.expect("noisy client login");
            while !stop.load(Ordering::Relaxed) {
                c.batch_execute("SELECT pg_sleep(0.002)")
                    .await
                    .expect("noisy query");
            }
        }));
    }

    // Every other tenant logs in and runs a query; 20 at a time.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for chunk in tenants[1..].chunks(20) {
        let mut batch = Vec::new();
        for (_, key) in chunk {
            let key = key.clone();
            batch.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let c = connect(key).await.expect("tenant login");
                let one: i32 = c
                    .query_one("SELECT 1", &[])
                    .await
                    .expect("tenant query")
                    .get(0);
                assert_eq!(one, 1);
                t0.elapsed()
            }));
        }
        for b in batch {
            slowest = slowest.max(b.await.expect("tenant task"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for n in noise {
        n.await.expect("noisy task");
    }
    let peak = peak.await.unwrap();
    eprintln!(
        "{} tenants served in {:?}; slowest login+query {slowest:?}; peak backend connections {peak}",
        TENANTS - 1,
        started.elapsed()
    );
    assert!(
        peak <= BUDGET,
        "Postgres saw {peak} proxy connections (budget {BUDGET})"
    );
    assert!(
        slowest < Duration::from_millis(WAIT_MS),
        "a tenant waited {slowest:?}"
    );
}

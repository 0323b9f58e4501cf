//! Unit tests of the registry without a database: its cache, expiries
//! and timestamps.

use super::*;

#[test]
fn epoch_handles_infinity_and_the_past() {
    assert_eq!(epoch(None), None);
    assert_eq!(epoch(Some(f64::INFINITY)), None);
    assert_eq!(epoch(Some(-5.0)), Some(SystemTime::UNIX_EPOCH));
    assert_eq!(
        epoch(Some(1.5)),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1500))
    );
}

fn info(key: u128, tenant: u128, user: Option<u128>) -> Arc<KeyInfo> {
    Arc::new(KeyInfo {
        key_id: Uuid::from_u128(key),
        tenant: Arc::new(Tenant {
            id: Uuid::from_u128(tenant),
            name: "t".into(),
            schema: "tenant_t".into(),
            role: "tenant_t".into(),
            active: true,
        }),
        user_id: user.map(Uuid::from_u128),
        expires_at: None,
    })
}

fn registry_with(entries: &[(u8, Arc<KeyInfo>)]) -> Registry {
    let pg: tokio_postgres::Config = "postgres://u@127.0.0.1:1/db".parse().unwrap();
    let tls =
        crate::pool::tls::BackendTlsPolicy::new(crate::config::BackendTls::Disable, None).unwrap();
    let timers = crate::timer::Timers::new().unwrap();
    let ep = crate::pool::server::Endpoint::from_pg(&pg, Duration::from_secs(5), tls);
    let r = Registry::new(pg, ep, 1, Duration::from_secs(60), timers);
    {
        let mut c = r.cache.lock().unwrap();
        for (h, i) in entries {
            c.map.insert([*h; 32], (Instant::now(), i.clone()));
        }
    }
    r
}

fn cached(r: &Registry) -> Vec<u8> {
    let mut v: Vec<u8> = r.cache.lock().unwrap().map.keys().map(|k| k[0]).collect();
    v.sort();
    v
}

#[tokio::test]
async fn invalidation_is_targeted_and_bumps_the_generation() {
    let r = registry_with(&[
        (1, info(1, 10, Some(100))),
        (2, info(2, 10, None)),
        (3, info(3, 20, Some(100))),
        (4, info(4, 20, None)),
    ]);
    r.invalidate_key(Uuid::from_u128(2));
    assert_eq!(cached(&r), [1, 3, 4]);
    r.invalidate_user(Uuid::from_u128(100));
    assert_eq!(cached(&r), [4]);
    r.invalidate_tenant(Uuid::from_u128(20));
    assert!(cached(&r).is_empty());
    assert_eq!(r.cache.lock().unwrap().generation, 3);
}

#[tokio::test]
async fn last_used_is_noted_once_per_key_until_written() {
    let r = registry_with(&[]);
    let a = info(1, 10, None);
    r.note_login(&a);
    r.note_login(&a);
    assert_eq!(r.usage.lock().unwrap().pending.len(), 1);
    // Written a moment ago: not pending again within the minute.
    {
        let mut u = r.usage.lock().unwrap();
        u.pending.clear();
        u.written.insert(a.key_id, Instant::now());
    }
    r.note_login(&a);
    assert!(r.usage.lock().unwrap().pending.is_empty());
}

#[tokio::test]
async fn the_earliest_expiry_wins() {
    let r = registry_with(&[]);
    let t = SystemTime::now();
    r.note_expiry(t + Duration::from_secs(10));
    r.note_expiry(t + Duration::from_secs(20));
    r.note_expiry(t + Duration::from_secs(5));
    assert_eq!(r.take_next_expiry(), Some(t + Duration::from_secs(5)));
    assert_eq!(r.take_next_expiry(), None);
}

//! Login-path costs (issue 6): what every new client connection pays
//! before it reaches a pooled backend.
//!
//! `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`
//!
//! `pgtenant::auth::key::{is_well_formed, hash}` are benched as they are.
//! The registry's key cache is private and its hit path needs a database to
//! be filled, so `cache_hit/*` benches a cache of the same shape — a
//! `Mutex<HashMap<[u8; 32], (Instant, Arc<KeyInfo-like>)>>` with the TTL and
//! expiry checks and the per-login usage bookkeeping (`note_login`: a
//! second mutex and a `HashMap<Uuid, Instant>` probe) — at several sizes.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pgtenant::auth::key;
use uuid::Uuid;

/// Same fields as `registry::Tenant`.
#[allow(dead_code)]
struct Tenant {
    id: Uuid,
    name: String,
    schema: String,
    role: String,
    active: bool,
}

/// Same fields as `registry::KeyInfo`.
#[allow(dead_code)]
struct KeyInfo {
    key_id: Uuid,
    tenant: Arc<Tenant>,
    user_id: Option<Uuid>,
    expires_at: Option<SystemTime>,
}

struct Cache {
    ttl: Duration,
    map: Mutex<HashMap<key::KeyHash, (Instant, Arc<KeyInfo>)>>,
    usage: Mutex<(HashSet<Uuid>, HashMap<Uuid, Instant>)>,
}

impl Cache {
    fn new(keys: &[String]) -> Cache {
        let tenant = Arc::new(Tenant {
            id: Uuid::new_v4(),
            name: "bench".into(),
            schema: "tenant_bench".into(),
            role: "tenant_bench".into(),
            active: true,
        });
        let mut map = HashMap::new();
        let mut written = HashMap::new();
        for k in keys {
            let info = Arc::new(KeyInfo {
                key_id: Uuid::new_v4(),
                tenant: tenant.clone(),
                user_id: None,
                expires_at: None,
            });
            written.insert(info.key_id, Instant::now());
            map.insert(key::hash(k), (Instant::now(), info));
        }
        Cache {
            ttl: Duration::from_secs(3600),
            map: Mutex::new(map),
            usage: Mutex::new((HashSet::new(), written)),
        }
    }

    /// Mirrors `Registry::lookup`'s hit path.
    fn lookup(&self, hash: &key::KeyHash) -> Option<Arc<KeyInfo>> {
        let info = {
            let map = self.map.lock().expect("poisoned");
            let (at, info) = map.get(hash)?;
            if at.elapsed() >= self.ttl || info.expires_at.is_some_and(|e| e <= SystemTime::now()) {
                return None;
            }
            info.clone()
        };
        // note_login
        let mut u = self.usage.lock().expect("poisoned");
        let recent =
            u.1.get(&info.key_id)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if !recent {
            u.0.insert(info.key_id);
        }
        drop(u);
        Some(info)
    }
}

fn key_checks(c: &mut Criterion) {
    let k = key::generate();
    let mut g = c.benchmark_group("key");
    g.bench_function("is_well_formed", |b| {
        b.iter(|| key::is_well_formed(black_box(&k)))
    });
    g.bench_function("is_well_formed_garbage", |b| {
        b.iter(|| key::is_well_formed(black_box("hunter2")))
    });
    g.bench_function("hash_sha256", |b| b.iter(|| key::hash(black_box(&k))));
    g.bench_function("hash_hex (registry miss query argument)", |b| {
        b.iter(|| key::hash_hex(black_box(&k)))
    });
    g.bench_function("generate", |b| b.iter(key::generate));
    g.finish();
}

fn cache_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_hit");
    for n in [1usize, 1_000, 100_000] {
        let keys: Vec<String> = (0..n).map(|_| key::generate()).collect();
        let cache = Cache::new(&keys);
        let probe = keys[n / 2].clone();
        let h = key::hash(&probe);
        g.bench_with_input(BenchmarkId::new("lookup", n), &h, |b, h| {
            b.iter(|| cache.lookup(black_box(h)).is_some())
        });
        // What a login pays in total before the pool: shape check, SHA-256,
        // cache hit.
        g.bench_with_input(BenchmarkId::new("check_hash_lookup", n), &probe, |b, k| {
            b.iter(|| {
                let k = black_box(k.as_str());
                key::is_well_formed(k) && cache.lookup(&key::hash(k)).is_some()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, key_checks, cache_hit);
criterion_main!(benches);

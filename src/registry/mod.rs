//! The tenant registry: tenants, users and API keys in the `pgtenant`
//! schema, read through a small cache so logins rarely touch the database.
//! [`watch`] keeps the cache honest (LISTEN/NOTIFY + periodic refresh) and
//! ends sessions whose key stopped being valid; [`admin`] changes the registry.

pub mod admin;
pub mod schema;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use uuid::Uuid;

use crate::auth::key::KeyHash;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub schema: String,
    pub role: String,
    pub active: bool,
}

/// A valid (active, unexpired) key and the tenant it belongs to.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key_id: Uuid,
    pub tenant: Arc<Tenant>,
    /// The user the key was issued to, if any.
    pub user_id: Option<Uuid>,
    /// When the key stops working; re-checked on every cache hit.
    pub expires_at: Option<SystemTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry query failed: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("registry connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("no registry connection within {0} ms (backend.connect_timeout_ms)")]
    Timeout(u64),
    #[error("the registry did not answer within {} ms; its connection was closed", QUERY_TIMEOUT.as_millis())]
    QueryTimeout,
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
}

/// How long a registry query may take. One that takes longer is on a
/// connection that stopped answering (a failover without a reset): the
/// caller fails, the connection is closed instead of pooled, and the
/// watcher's refreshes, expiries and re-checks go on with a new one.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

type Query<'c, T> = futures_util::future::BoxFuture<'c, Result<T, RegistryError>>;

/// What a re-check found about a key that a live session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Valid,
    Revoked,
    Expired,
    UserInactive,
    TenantInactive,
    TenantDropped,
}

impl KeyState {
    fn parse(s: &str) -> KeyState {
        match s {
            "valid" => KeyState::Valid,
            "expired" => KeyState::Expired,
            "user_inactive" => KeyState::UserInactive,
            "tenant_inactive" => KeyState::TenantInactive,
            "tenant_dropped" => KeyState::TenantDropped,
            _ => KeyState::Revoked,
        }
    }

    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Valid => "valid",
            KeyState::Revoked => "key_revoked",
            KeyState::Expired => "key_expired",
            KeyState::UserInactive => "user_inactive",
            KeyState::TenantInactive => "tenant_inactive",
            KeyState::TenantDropped => "tenant_dropped",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KeyCheck {
    pub state: KeyState,
    pub expires_at: Option<SystemTime>,
}

/// At most one `last_used_at` write per key per this long.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Keyed by digests and ids, which no client picks: foldhash (randomly
/// seeded), a fraction of SipHash's cost at every login. (Maps keyed by
/// client addresses keep SipHash.)
struct Cache {
    map: foldhash::HashMap<KeyHash, (Instant, Arc<KeyInfo>)>,
    /// Bumped by every invalidation: a lookup that read the database before
    /// an invalidation must not cache what it read (it may predate the change).
    generation: u64,
}

#[derive(Default)]
struct Usage {
    /// Keys that logged in since the last flush.
    pending: foldhash::HashSet<Uuid>,
    /// When each key's last_used_at was last written (pruned after a minute).
    written: foldhash::HashMap<Uuid, Instant>,
}

pub struct Registry {
    pool: Pool,
    /// Bounds the wait for a pooled connection (and the connect behind it).
    timers: crate::timer::Timers,
    connect_timeout: Duration,
    ttl: Duration,
    cache: Mutex<Cache>,
    usage: Mutex<Usage>,
    /// Earliest expiry among keys that logged in, so that the watcher can
    /// end their sessions on time rather than at the next refresh.
    next_expiry: Mutex<Option<SystemTime>>,
    expiry_changed: tokio::sync::Notify,
    /// `pgtenant_registry_cache_total{result="hit"|"miss"}`, registered once.
    cache_counters: std::sync::OnceLock<[metrics::Counter; 2]>,
}

const LOOKUP: &str = "\
SELECT k.id, t.id, t.name, t.schema_name, t.role_name, t.active,
       k.user_id, extract(epoch FROM k.expires_at)::float8
  FROM pgtenant.api_keys k
  JOIN pgtenant.tenants t ON t.id = k.tenant_id
  LEFT JOIN pgtenant.users u ON u.id = k.user_id
 WHERE k.key_hash = $1
   AND k.active
   AND (k.expires_at IS NULL OR k.expires_at > now())
   AND coalesce(u.active, true)";

/// The state of each (key, tenant) pair, the tenant's fate first: a session
/// is told the broadest reason that applies.
const CHECK: &str = "\
SELECT q.key_id,
       CASE WHEN t.id IS NULL THEN 'tenant_dropped'
            WHEN NOT t.active THEN 'tenant_inactive'
            WHEN k.id IS NULL OR NOT k.active OR k.tenant_id <> q.tenant_id THEN 'revoked'
            WHEN k.expires_at <= now() THEN 'expired'
            WHEN u.id IS NOT NULL AND NOT u.active THEN 'user_inactive'
            ELSE 'valid' END,
       extract(epoch FROM k.expires_at)::float8
  FROM unnest($1::uuid[], $2::uuid[]) AS q(key_id, tenant_id)
  LEFT JOIN pgtenant.tenants t ON t.id = q.tenant_id
  LEFT JOIN pgtenant.api_keys k ON k.id = q.key_id
  LEFT JOIN pgtenant.users u ON u.id = k.user_id";

/// Postgres epoch seconds → SystemTime; `infinity` means never.
fn epoch(secs: Option<f64>) -> Option<SystemTime> {
    let secs = secs?;
    if !secs.is_finite() {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(secs.max(0.0))
            .map(|d| SystemTime::UNIX_EPOCH + d)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

impl Registry {
    pub fn new(
        pg: tokio_postgres::Config,
        endpoint: crate::pool::server::Endpoint,
        size: usize,
        ttl: Duration,
        timers: crate::timer::Timers,
    ) -> Registry {
        let connect_timeout = endpoint.connect_timeout;
        let mgr = Manager::from_connect(
            pg,
            crate::pool::control::PoolConnect(endpoint),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(size)
            .build()
            .expect("deadpool builder without runtime hooks cannot fail");
        Registry {
            pool,
            timers,
            connect_timeout,
            ttl,
            cache: Mutex::new(Cache {
                map: Default::default(),
                generation: 0,
            }),
            usage: Mutex::new(Usage::default()),
            next_expiry: Mutex::new(None),
            expiry_changed: tokio::sync::Notify::new(),
            cache_counters: std::sync::OnceLock::new(),
        }
    }

    fn cache_counter(&self, hit: bool) -> &metrics::Counter {
        let [h, m] = self.cache_counters.get_or_init(|| {
            ["hit", "miss"]
                .map(|r| metrics::counter!("pgtenant_registry_cache_total", "result" => r))
        });
        if hit { h } else { m }
    }

    /// The key's tenant, or None for an unknown, revoked or expired key.
    /// Only hits are cached: a miss always asks the database, so a key
    /// issued a moment ago works at once.
    pub async fn lookup(&self, hash: &KeyHash) -> Result<Option<Arc<KeyInfo>>, RegistryError> {
        let generation = match self.cached_or_generation(hash) {
            Ok(info) => return Ok(Some(info)),
            Err(generation) => generation,
        };
        self.cache_counter(false).increment(1);
        // Boxed: a query's state would otherwise sit in every session's
        // future, cache hit or not.
        Box::pin(self.fetch(hash, generation)).await
    }

    /// The key's tenant if the cache holds the key, valid; no database
    /// query.
    pub fn cached(&self, hash: &KeyHash) -> Option<Arc<KeyInfo>> {
        self.cached_or_generation(hash).ok()
    }

    /// A valid cached key (counted as a hit), or the cache's generation
    /// for the query that looks it up.
    fn cached_or_generation(&self, hash: &KeyHash) -> Result<Arc<KeyInfo>, u64> {
        let cache = self.cache.lock().expect("poisoned");
        if let Some((at, info)) = cache.map.get(hash)
            && at.elapsed() < self.ttl
            && info.expires_at.is_none_or(|e| e > SystemTime::now())
        {
            self.cache_counter(true).increment(1);
            let info = info.clone();
            drop(cache);
            self.note_login(&info);
            return Ok(info);
        }
        Err(cache.generation)
    }

    /// A cache miss: asks the database, caches what it finds unless the
    /// cache was invalidated meanwhile (`generation`).
    async fn fetch(
        &self,
        hash: &KeyHash,
        generation: u64,
    ) -> Result<Option<Arc<KeyInfo>>, RegistryError> {
        let hex = hex::encode(hash);
        let row = self
            .run(|c| {
                Box::pin(async move {
                    let stmt = c.prepare_cached(LOOKUP).await?;
                    Ok::<_, RegistryError>(c.query_opt(&stmt, &[&hex]).await?)
                })
            })
            .await?;
        let mut cache = self.cache.lock().expect("poisoned");
        let Some(row) = row else {
            cache.map.remove(hash);
            return Ok(None);
        };
        let info = Arc::new(KeyInfo {
            key_id: row.get(0),
            tenant: Arc::new(Tenant {
                id: row.get(1),
                name: row.get(2),
                schema: row.get(3),
                role: row.get(4),
                active: row.get(5),
            }),
            user_id: row.get(6),
            expires_at: epoch(row.get(7)),
        });
        if cache.generation == generation {
            // Keep the map from growing without bound on churn of expired entries.
            if cache.map.len() > 100_000 {
                let ttl = self.ttl;
                cache.map.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            cache.map.insert(*hash, (Instant::now(), info.clone()));
        }
        drop(cache);
        self.note_login(&info);
        Ok(Some(info))
    }

    /// Bookkeeping for a key that is about to log in (its tenant active).
    fn note_login(&self, info: &KeyInfo) {
        if !info.tenant.active {
            return;
        }
        {
            let mut u = self.usage.lock().expect("poisoned");
            let recent = u
                .written
                .get(&info.key_id)
                .is_some_and(|t| t.elapsed() < LAST_USED_EVERY);
            if !recent {
                u.pending.insert(info.key_id);
            }
        }
        if let Some(e) = info.expires_at {
            self.note_expiry(e);
        }
    }

    /// Remembers `at` if it is the earliest pending expiry, and wakes the watcher.
    pub fn note_expiry(&self, at: SystemTime) {
        let mut next = self.next_expiry.lock().expect("poisoned");
        if next.is_none_or(|n| at < n) {
            *next = Some(at);
            self.expiry_changed.notify_one();
        }
    }

    /// The earliest expiry noted so far, cleared: the caller re-checks
    /// and notes what is still pending.
    pub fn take_next_expiry(&self) -> Option<SystemTime> {
        self.next_expiry.lock().expect("poisoned").take()
    }

    pub fn peek_next_expiry(&self) -> Option<SystemTime> {
        *self.next_expiry.lock().expect("poisoned")
    }

    /// Resolves when an earlier expiry was noted.
    pub async fn expiry_changed(&self) {
        self.expiry_changed.notified().await
    }

    fn invalidate(&self, stale: impl Fn(&KeyInfo) -> bool) {
        let mut cache = self.cache.lock().expect("poisoned");
        cache.generation += 1;
        cache.map.retain(|_, (_, info)| !stale(info));
    }

    pub fn invalidate_key(&self, key_id: Uuid) {
        self.invalidate(|i| i.key_id == key_id);
    }

    pub fn invalidate_tenant(&self, tenant_id: Uuid) {
        self.invalidate(|i| i.tenant.id == tenant_id);
    }

    pub fn invalidate_user(&self, user_id: Uuid) {
        self.invalidate(|i| i.user_id == Some(user_id));
    }

    pub fn clear_cache(&self) {
        self.invalidate(|_| true);
    }

    /// Counts invalidations: a login that read its key before a change
    /// arrived sees it move (see `session::open`).
    pub fn generation(&self) -> u64 {
        self.cache.lock().expect("poisoned").generation
    }

    /// These tenants as the registry has them now, in one query; a dropped
    /// one is missing from the map.
    pub async fn tenants(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Tenant>, RegistryError> {
        const SQL: &str = "SELECT id, name, schema_name, role_name, active \
                           FROM pgtenant.tenants WHERE id = ANY($1)";
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = ids.to_vec();
        let rows = self
            .run(|c| Box::pin(async move { Ok(c.query(SQL, &[&ids]).await?) }))
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let t = Tenant {
                    id: r.get(0),
                    name: r.get(1),
                    schema: r.get(2),
                    role: r.get(3),
                    active: r.get(4),
                };
                (t.id, t)
            })
            .collect())
    }

    /// The current state of each (key id, tenant id) pair, in one query.
    pub async fn check_keys(
        &self,
        pairs: &[(Uuid, Uuid)],
    ) -> Result<HashMap<Uuid, KeyCheck>, RegistryError> {
        if pairs.is_empty() {
            return Ok(HashMap::new());
        }
        let (keys, tenants): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        let rows = self
            .run(|c| {
                Box::pin(async move {
                    let stmt = c.prepare_cached(CHECK).await?;
                    Ok::<_, RegistryError>(c.query(&stmt, &[&keys, &tenants]).await?)
                })
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let state = KeyState::parse(r.get(1));
                let expires_at = epoch(r.get(2));
                (r.get(0), KeyCheck { state, expires_at })
            })
            .collect())
    }

    /// Writes `last_used_at = now()` for the keys that logged in since the
    /// last flush, in one statement. The `WHERE` also limits replicas
    /// together to one write per key per minute. On failure the keys stay
    /// pending for the next flush.
    pub async fn flush_last_used(&self) -> Result<usize, RegistryError> {
        let ids: Vec<Uuid> = {
            let mut u = self.usage.lock().expect("poisoned");
            u.written.retain(|_, t| t.elapsed() < LAST_USED_EVERY);
            u.pending.drain().collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let written = ids.clone();
        let result = self
            .run(|c| {
                Box::pin(async move {
                    let n = c
                        .execute(
                            "UPDATE pgtenant.api_keys SET last_used_at = now() \
                              WHERE id = ANY($1) \
                                AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                            &[&written],
                        )
                        .await?;
                    Ok::<_, RegistryError>(n as usize)
                })
            })
            .await;
        let mut u = self.usage.lock().expect("poisoned");
        match result {
            Ok(n) => {
                let now = Instant::now();
                u.written.extend(ids.into_iter().map(|id| (id, now)));
                Ok(n)
            }
            Err(e) => {
                u.pending.extend(ids);
                Err(e)
            }
        }
    }

    /// `SELECT 1` on a control-plane connection: the readiness check.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.run(|c| {
            Box::pin(async move {
                c.simple_query("SELECT 1").await?;
                Ok::<_, RegistryError>(())
            })
        })
        .await
    }

    /// Runs `query` on a pooled connection, for at most [`QUERY_TIMEOUT`].
    async fn run<T>(
        &self,
        query: impl for<'c> FnOnce(&'c deadpool_postgres::Object) -> Query<'c, T>,
    ) -> Result<T, RegistryError> {
        let client = self.get().await?;
        let answered = self.timers.timeout(QUERY_TIMEOUT, query(&client)).await;
        match answered {
            Ok(r) => r,
            Err(_) => {
                // Out of the pool: dropped, the connection closes.
                drop(deadpool_postgres::Object::take(client));
                Err(RegistryError::QueryTimeout)
            }
        }
    }

    /// The admin console's `SHOW TENANTS`, within the same deadline as the
    /// proxy's own queries: a registry that stopped answering must not
    /// hold the console, nor one of the few registry connections logins
    /// need, until TCP gives up.
    pub async fn list_tenants(&self) -> Result<Vec<admin::TenantInfo>, RegistryError> {
        self.run(|c| Box::pin(async move { Ok(admin::list_tenants(c).await?) }))
            .await
    }

    /// A pooled connection, or a new one, within `backend.connect_timeout_ms`:
    /// an unreachable registry fails housekeeping and admin queries instead
    /// of holding them for the kernel's connect timeout.
    async fn get(&self) -> Result<deadpool_postgres::Object, RegistryError> {
        match self
            .timers
            .timeout(self.connect_timeout, self.pool.get())
            .await
        {
            Ok(got) => Ok(got?),
            Err(_) => Err(RegistryError::Timeout(
                self.connect_timeout.as_millis() as u64
            )),
        }
    }
}

#[cfg(test)]
mod tests;

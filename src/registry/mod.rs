//! The tenant registry: tenants, users and API keys in the `pgtenant`
//! schema, read through a small cache so logins rarely touch the database.

pub mod admin;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry query failed: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("registry connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

pub struct Registry {
    pool: Pool,
    ttl: Duration,
    cache: Mutex<HashMap<KeyHash, (Instant, Arc<KeyInfo>)>>,
}

const LOOKUP: &str = "\
SELECT k.id, t.id, t.name, t.schema_name, t.role_name, t.active
  FROM pgtenant.api_keys k
  JOIN pgtenant.tenants t ON t.id = k.tenant_id
  LEFT JOIN pgtenant.users u ON u.id = k.user_id
 WHERE k.key_hash = $1
   AND k.active
   AND (k.expires_at IS NULL OR k.expires_at > now())
   AND coalesce(u.active, true)";

impl Registry {
    pub fn new(pg: tokio_postgres::Config, size: usize, ttl: Duration) -> Registry {
        let mgr = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
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
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key's tenant, or None for an unknown, revoked or expired key.
    /// Only hits are cached: a miss always asks the database, so a key
    /// issued a moment ago works at once.
    pub async fn lookup(&self, hash: &KeyHash) -> Result<Option<Arc<KeyInfo>>, RegistryError> {
        if let Some((at, info)) = self.cache.lock().expect("poisoned").get(hash)
            && at.elapsed() < self.ttl
        {
            metrics::counter!("pgtenant_registry_cache_total", "result" => "hit").increment(1);
            return Ok(Some(info.clone()));
        }
        metrics::counter!("pgtenant_registry_cache_total", "result" => "miss").increment(1);
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(LOOKUP).await?;
        let row = client.query_opt(&stmt, &[&hex::encode(hash)]).await?;
        let mut cache = self.cache.lock().expect("poisoned");
        let Some(row) = row else {
            cache.remove(hash);
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
        });
        // Keep the map from growing without bound on churn of expired entries.
        if cache.len() > 100_000 {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(*hash, (Instant::now(), info.clone()));
        Ok(Some(info))
    }
}

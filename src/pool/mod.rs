//! Backend connections per tenant under one global budget.
//!
//! Two semaphores bound everything:
//! - per tenant, `pool_size` checkout permits: a client holds one while it
//!   holds a connection, so a tenant never has more than `pool_size`
//!   connections (idle ones were all checked out once);
//! - globally, `max_backend_connections` budget permits: every live
//!   connection, idle or busy, owns one. When the budget is spent, an idle
//!   connection of another tenant is closed to make room.
//!
//! tokio's semaphores are FIFO, so waiting clients are served in order.

pub mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::config::PoolConfig;
use crate::error::ClientError;
use crate::protocol::TxStatus;
use crate::registry::Tenant;
use crate::registry::admin::role_password;
pub use server::{Endpoint, ServerConn};

struct TenantPool {
    checkout: Arc<Semaphore>,
    idle: Mutex<Vec<ServerConn>>,
    /// Shared by all tenants: signalled whenever a connection goes idle.
    returned: Arc<Notify>,
}

impl TenantPool {
    fn put_back(&self, mut conn: ServerConn) {
        conn.idle_since = Instant::now();
        self.idle.lock().expect("poisoned").push(conn);
        self.returned.notify_waiters();
    }
}

pub struct Pools {
    endpoint: Endpoint,
    secret: String,
    cfg: PoolConfig,
    budget: Arc<Semaphore>,
    returned: Arc<Notify>,
    tenants: Mutex<HashMap<Uuid, Arc<TenantPool>>>,
}

/// A connection lent to one client, with the right to hold it.
pub struct Checkout {
    pub conn: ServerConn,
    pool: Arc<TenantPool>,
    _permit: OwnedSemaphorePermit,
}

impl Pools {
    pub fn new(endpoint: Endpoint, secret: String, cfg: PoolConfig) -> Pools {
        Pools {
            endpoint,
            secret,
            budget: Arc::new(Semaphore::new(cfg.max_backend_connections)),
            returned: Arc::new(Notify::new()),
            cfg,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn tenant_pool(&self, tenant: &Tenant) -> Arc<TenantPool> {
        let mut map = self.tenants.lock().expect("poisoned");
        map.entry(tenant.id)
            .or_insert_with(|| {
                Arc::new(TenantPool {
                    checkout: Arc::new(Semaphore::new(self.cfg.pool_size)),
                    idle: Mutex::new(Vec::new()),
                    returned: self.returned.clone(),
                })
            })
            .clone()
    }

    /// A clean connection of `tenant`'s role, waiting at most
    /// `query_wait_timeout` for one to become free.
    pub async fn acquire(&self, tenant: &Arc<Tenant>) -> Result<Checkout, ClientError> {
        let wait = Duration::from_millis(self.cfg.query_wait_timeout_ms);
        let deadline = tokio::time::Instant::now() + wait;
        let timed_out = || ClientError::PoolTimeout {
            tenant: tenant.name.clone(),
            waited_ms: self.cfg.query_wait_timeout_ms,
        };
        let pool = self.tenant_pool(tenant);
        let started = Instant::now();
        let permit = tokio::time::timeout_at(deadline, pool.checkout.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .expect("semaphore never closed");
        metrics::histogram!("pgtenant_pool_wait_seconds").record(started.elapsed().as_secs_f64());
        let budget = loop {
            // Registered before looking, so a connection returned meanwhile
            // is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(conn) = self.pop_idle(&pool) {
                return Ok(Checkout {
                    conn,
                    pool,
                    _permit: permit,
                });
            }
            if let Ok(p) = self.budget.clone().try_acquire_owned() {
                break p;
            }
            // The budget is spent: close another tenant's idle connection,
            // or wait for one to become idle (or closed) and look again.
            if self.evict_one_idle(tenant.id) {
                continue;
            }
            tokio::select! {
                p = self.budget.clone().acquire_owned() => break p.expect("semaphore never closed"),
                _ = returned => continue,
                _ = tokio::time::sleep_until(deadline) => return Err(timed_out()),
            }
        };
        let password = role_password(&self.secret, &tenant.role);
        let conn = ServerConn::connect(
            &self.endpoint,
            tenant.clone(),
            &password,
            budget,
            self.cfg.prepared_statements_per_connection,
        )
        .await?;
        metrics::counter!("pgtenant_server_connects_total").increment(1);
        Ok(Checkout {
            conn,
            pool,
            _permit: permit,
        })
    }

    /// The newest idle connection that is still healthy and young enough.
    fn pop_idle(&self, pool: &TenantPool) -> Option<ServerConn> {
        let mut idle = pool.idle.lock().expect("poisoned");
        while let Some(conn) = idle.pop() {
            if self.expired(&conn) || conn.is_broken() {
                continue; // dropping it closes the socket and frees its budget
            }
            return Some(conn);
        }
        None
    }

    fn expired(&self, conn: &ServerConn) -> bool {
        conn.age() >= Duration::from_millis(self.cfg.server_lifetime_ms)
            || conn.idle_since.elapsed() >= Duration::from_millis(self.cfg.server_idle_timeout_ms)
    }

    /// Closes the longest-idle connection of some other tenant; false if
    /// there was none.
    fn evict_one_idle(&self, except: Uuid) -> bool {
        let pools: Vec<Arc<TenantPool>> = {
            let map = self.tenants.lock().expect("poisoned");
            map.iter()
                .filter(|(id, _)| **id != except)
                .map(|(_, p)| p.clone())
                .collect()
        };
        let mut oldest: Option<(Instant, &Arc<TenantPool>)> = None;
        for p in &pools {
            if let Some(c) = p.idle.lock().expect("poisoned").first()
                && oldest.is_none_or(|(t, _)| c.idle_since < t)
            {
                oldest = Some((c.idle_since, p));
            }
        }
        if let Some((_, p)) = oldest {
            let mut idle = p.idle.lock().expect("poisoned");
            if !idle.is_empty() {
                drop(idle.remove(0));
                metrics::counter!("pgtenant_server_evictions_total").increment(1);
                return true;
            }
        }
        false
    }

    /// Closes idle connections past `server_idle_timeout` or `server_lifetime`.
    pub fn reap(&self) {
        let pools: Vec<Arc<TenantPool>> = self
            .tenants
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect();
        for p in pools {
            p.idle
                .lock()
                .expect("poisoned")
                .retain(|c| !self.expired(c));
        }
    }

    /// (idle, in use) connections across all tenants.
    pub fn counts(&self) -> (usize, usize) {
        let idle: usize = self
            .tenants
            .lock()
            .expect("poisoned")
            .values()
            .map(|p| p.idle.lock().expect("poisoned").len())
            .sum();
        let live = self.cfg.max_backend_connections - self.budget.available_permits();
        (idle, live - idle)
    }
}

/// How the client left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Every request was answered; the session is at ReadyForQuery.
    Ready(TxStatus),
    /// Something was in flight (a query, a COPY, an unsynced extended
    /// query) or the server failed: the connection cannot be proven clean.
    Dirty,
}

impl Checkout {
    /// Puts the connection back as it is: transaction mode, between
    /// transactions, when the proxy knows nothing session-scoped was done.
    pub fn release_idle(self) {
        self.pool.put_back(self.conn);
    }

    /// Resets the connection and puts it back, or closes it.
    pub async fn release(mut self, how: Release) {
        let Release::Ready(status) = how else {
            metrics::counter!("pgtenant_server_discards_total", "reason" => "dirty").increment(1);
            return; // dropped: socket closed, budget and permit freed
        };
        match self.conn.reset(status).await {
            Ok(()) => self.pool.put_back(self.conn),
            Err(e) => {
                metrics::counter!("pgtenant_server_discards_total", "reason" => "reset_failed")
                    .increment(1);
                tracing::warn!(error = %e, "server connection failed its reset; closed");
            }
        }
    }
}

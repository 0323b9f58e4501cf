//! Backend connections per tenant under one global budget.
//!
//! Two limits bound everything:
//! - per tenant, `pool_size` checkout slots ([`slots`]): a client holds one
//!   while it holds a connection, so a tenant never has more than
//!   `pool_size` connections (idle ones were all checked out once);
//! - globally, `max_backend_connections` budget permits: every live
//!   connection, idle or busy, owns one. When the budget is spent, an idle
//!   connection of another tenant is closed to make room.
//!
//! Both serve waiting clients in order.
//! Sizes follow the configuration live (see [`Pools::reconfigure`]).

mod checkout;
mod clock;
pub mod control;
mod endpoint;
mod expiry;
mod gate;
mod replies;
pub mod resizable;
mod returned;
pub mod server;
mod settings;
mod slots;
mod stats;
mod tenants;
pub use checkout::{Checkout, Release};
pub use settings::{Settings, restore_sql};
pub use stats::{IdleServer, PoolStats};
pub mod tls;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::config::PoolConfig;
use crate::error::ClientError;
use crate::registry::Tenant;
use crate::registry::admin::role_password;
use crate::timer::Timers;
use clock::Stamp;
use expiry::Expiry;
pub use replies::ServerParams;
use resizable::Resizable;
use returned::Returned;
pub use server::{Endpoint, ServerConn};
use slots::Slots;

/// Idle connections older than this (ms) are probed before being handed out.
const PROBE_AFTER_MS: u64 = 1000;

struct TenantPool {
    tenant: Arc<Tenant>,
    /// The registry's generation when the login that made it read `tenant`.
    generation: u64,
    /// `pool_size` slots and the idle connections.
    slots: Arc<Slots>,
    /// Connected clients of this tenant (`max_client_connections`).
    clients: Resizable,
    /// Clients in `acquire` now (admin console, metrics).
    waiters: Arc<gate::Waiters>,
    /// `min_idle` connections being opened now: counted as present, or a
    /// backend slower than the reaper's tick gets several per tick.
    warming: AtomicUsize,
    /// The registry changed the tenant (deactivated, dropped, …): no
    /// `min_idle` connections until one of its clients logs in again.
    forgotten: AtomicBool,
    /// The registry no longer has the tenant. Its sessions (run on under
    /// `registry.on_revoke = keep`) get no new connection: a tenant made
    /// later under its name has a role of the same name and password, and
    /// their next login would be to its data.
    gone: AtomicBool,
}

pub struct Pools {
    endpoint: Endpoint,
    secret: String,
    cfg: ArcSwap<PoolConfig>,
    /// Registered on first use, once the metrics recorder is installed.
    meters: std::sync::OnceLock<Meters>,
    budget: Resizable,
    returned: Arc<Returned>,
    /// The deadlines of clients waiting for a slot; see [`Self::expire_waits`].
    expiry: Arc<Expiry>,
    /// By the registry's ids, which no client picks: foldhash (randomly
    /// seeded), a fraction of SipHash's cost at every login. (The sets of
    /// client settings below keep SipHash: a client names those.)
    tenants: Mutex<foldhash::HashMap<Uuid, Arc<TenantPool>>>,
    /// Pools a registry edit replaced (see [`Self::tenant_pool`]), while
    /// sessions hold them: their waits still expire, their idle
    /// connections are still reaped, and they show in the stats.
    retired: Mutex<Vec<Weak<TenantPool>>>,
    /// Admin `PAUSE`/`RESUME`.
    pause: gate::PauseGate,
    /// Client settings (name, value) the server has accepted before; see
    /// [`Pools::settings_accepted_before`].
    accepted: Mutex<HashSet<(String, String)>>,
    /// One shared copy of each set of client settings seen; see [`Settings`].
    interned: Mutex<HashSet<Settings>>,
    /// `server_lifetime_ms` and `server_idle_timeout_ms`, read at every
    /// checkout: two integers instead of a load of the whole config.
    lifetime_ms: AtomicU64,
    idle_timeout_ms: AtomicU64,
    /// `idle_transaction_timeout_ms` (0: none), read by every relay as it
    /// waits inside a transaction: a reload reaches running sessions.
    idle_transaction_ms: AtomicU64,
    /// Backends a client's cancel is on its way to: not handed out.
    cancels: Arc<crate::cancel::InFlight>,
    timers: Timers,
}

/// Checkouts are counted; only those that waited for a permit are timed (a
/// histogram sample per transaction would cost more than the checkout).
struct Meters {
    checkouts: metrics::Counter,
    waits: metrics::Histogram,
}

/// Bounds [`Pools::accepted`]: a client sending ever new values only loses
/// the fast path.
const MAX_ACCEPTED_SETTINGS: usize = 4096;
/// Settings longer than this (names and values together) are not kept in
/// those tables: a client setting ever new megabyte values must not grow
/// the proxy by gigabytes; such settings only lose the fast path.
const MAX_KEPT_BYTES: usize = 1024;

fn kept_size(settings: &[(String, String)]) -> usize {
    settings.iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// A connected client's place in its tenant's pool (it counts against
/// `max_client_connections` until dropped), and the pool it draws from.
pub struct Admission {
    pool: Arc<TenantPool>,
    _permit: OwnedSemaphorePermit,
}

impl Pools {
    pub fn new(
        endpoint: Endpoint,
        secret: String,
        cfg: PoolConfig,
        timers: Timers,
        cancels: Arc<crate::cancel::InFlight>,
    ) -> Pools {
        Pools {
            timers,
            cancels,
            endpoint,
            secret,
            budget: Resizable::new(cfg.max_backend_connections),
            returned: Arc::new(Returned::default()),
            expiry: Arc::default(),
            lifetime_ms: AtomicU64::new(no_limit_at_0(cfg.server_lifetime_ms)),
            idle_timeout_ms: AtomicU64::new(no_limit_at_0(cfg.server_idle_timeout_ms)),
            idle_transaction_ms: AtomicU64::new(cfg.idle_transaction_timeout_ms),
            cfg: ArcSwap::from_pointee(cfg),
            meters: std::sync::OnceLock::new(),
            tenants: Mutex::default(),
            retired: Mutex::default(),
            pause: gate::PauseGate::default(),
            accepted: Mutex::default(),
            interned: Mutex::default(),
        }
    }

    /// Where backend connections go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Admits one more client of `tenant`, or refuses with 53300.
    /// `generation`: the registry's when the login read `tenant`.
    pub fn admit(&self, tenant: &Arc<Tenant>, generation: u64) -> Result<Admission, ClientError> {
        let pool = self.tenant_pool(tenant, generation);
        let permit =
            pool.clients
                .try_acquire()
                .ok_or_else(|| ClientError::TooManyTenantClients {
                    tenant: tenant.name.clone(),
                    max: pool.clients.size(),
                })?;
        // A login proves the tenant active.
        if pool.forgotten.load(Ordering::Relaxed) || pool.slots.closing() {
            pool.forgotten.store(false, Ordering::Relaxed);
            pool.slots.reopen();
        }
        Ok(Admission {
            pool,
            _permit: permit,
        })
    }

    /// Whether the server accepted every one of these settings before: a
    /// value's validity doesn't depend on the connection, so such settings
    /// can be sent ahead of the client's statement without waiting.
    pub fn settings_accepted_before(&self, settings: &[(String, String)]) -> bool {
        let known = self.accepted.lock().expect("poisoned");
        settings.iter().all(|s| known.contains(s))
    }

    /// The shared copy of `settings` (a new one once the table is full: a
    /// client sending ever new values only loses the fast path).
    pub fn intern(&self, settings: &[(String, String)]) -> Settings {
        let mut known = self.interned.lock().expect("poisoned");
        if let Some(s) = known.get(settings) {
            return s.clone();
        }
        let s: Settings = settings.into();
        if known.len() < MAX_ACCEPTED_SETTINGS && kept_size(settings) <= MAX_KEPT_BYTES {
            known.insert(s.clone());
        }
        s
    }

    /// Records settings the server just accepted.
    pub fn settings_accepted(&self, settings: &[(String, String)]) {
        let mut known = self.accepted.lock().expect("poisoned");
        for s in settings {
            if known.len() < MAX_ACCEPTED_SETTINGS
                && kept_size(std::slice::from_ref(s)) <= MAX_KEPT_BYTES
                && !known.contains(s)
            {
                known.insert(s.clone());
            }
        }
    }

    /// Applies a new pool configuration to live pools: sizes grow at once
    /// and shrink at once for idle connections, as they are returned for
    /// busy ones; timeouts apply to the next wait. No client is dropped.
    pub fn reconfigure(&self, cfg: PoolConfig) {
        self.budget.resize(cfg.max_backend_connections);
        self.lifetime_ms
            .store(no_limit_at_0(cfg.server_lifetime_ms), Ordering::Relaxed);
        self.idle_timeout_ms
            .store(no_limit_at_0(cfg.server_idle_timeout_ms), Ordering::Relaxed);
        self.idle_transaction_ms
            .store(cfg.idle_transaction_timeout_ms, Ordering::Relaxed);
        // Under the map's lock, as pools are created: one created meanwhile
        // is either resized here or made with the new sizes.
        let map = self.tenants.lock().expect("poisoned");
        for p in map.values().cloned().chain(self.retired_pools()) {
            let t = cfg.for_tenant(&p.tenant.name);
            p.slots.resize(t.pool_size);
            p.clients.resize(client_limit(t.max_client_connections));
        }
        self.cfg.store(Arc::new(cfg));
    }

    /// How long a client may leave its transaction idle (0: for ever).
    #[inline]
    pub fn idle_transaction_ms(&self) -> u64 {
        self.idle_transaction_ms.load(Ordering::Relaxed)
    }

    /// The common case of [`Self::acquire`], without an await: not paused,
    /// a free slot and an idle connection. None: call `acquire`.
    pub fn acquire_now(&self, client: &Admission) -> Option<Checkout> {
        let pool = &client.pool;
        if self.pause.holds(&pool.tenant.name) {
            return None;
        }
        let (permit, conn) = pool.slots.try_take(|c, now| self.usable(c, now))?;
        // No idle connection: the slot is freed here, and `acquire` takes
        // one again to open a connection.
        let conn = conn?;
        self.meters().checkouts.increment(1);
        Some(Checkout { conn, permit })
    }

    /// A clean connection of the admitted client's tenant role, waiting at
    /// most `query_wait_timeout` for one to become free.
    pub async fn acquire(&self, client: &Admission) -> Result<Checkout, ClientError> {
        // The common case needs no map lookup, no waiter bookkeeping, no
        // timer, no wake-up registration.
        if let Some(co) = self.acquire_now(client) {
            return Ok(co);
        }
        let pool = &client.pool;
        Box::pin(self.acquire_slow(&pool.tenant, pool.clone())).await
    }

    fn meters(&self) -> &Meters {
        self.meters.get_or_init(|| Meters {
            checkouts: metrics::counter!("pgtenant_pool_checkouts_total"),
            waits: metrics::histogram!("pgtenant_pool_wait_seconds"),
        })
    }

    /// Waiting at PAUSE, for a permit, or for budget; or opening a connection.
    /// Boxed by the caller: its state (timers, a server login) would
    /// otherwise sit in every session's future, idle or not. Under a full
    /// pool this runs every transaction, and the allocation is small next
    /// to the wait and wake-up it comes with.
    async fn acquire_slow(
        &self,
        tenant: &Arc<Tenant>,
        pool: Arc<TenantPool>,
    ) -> Result<Checkout, ClientError> {
        let _waiting = pool.waiters.enter();
        self.pause.wait(&tenant.name).await;
        let meters = self.meters();
        meters.checkouts.increment(1);
        let (wait_ms, statement_cache) = {
            let cfg = self.cfg.load();
            (
                cfg.query_wait_timeout_ms,
                cfg.prepared_statements_per_connection,
            )
        };
        let started = Instant::now();
        let deadline = started + Duration::from_millis(wait_ms);
        let timed_out = || ClientError::PoolTimeout {
            tenant: tenant.name.clone(),
            waited_ms: wait_ms,
        };
        let permit = match pool.slots.try_acquire() {
            Some(p) => p,
            None => {
                let p = pool
                    .slots
                    .acquire(deadline)
                    .await
                    .map_err(|_| timed_out())?;
                meters.waits.record(started.elapsed().as_secs_f64());
                p
            }
        };
        // One place in the budget's queue for the whole wait (a new one at
        // every pass would send this client to the back at each return),
        // given up before the login: a permit freed meanwhile goes to it.
        let budget = {
            let mut budget_wait = std::pin::pin!(self.budget.acquire());
            loop {
                // Usually a connection came back with the permit: take it without
                // registering for wake-ups.
                if let Some(conn) = pool.slots.take_idle(|c, now| self.usable(c, now)) {
                    return Ok(Checkout { conn, permit });
                }
                // Counted and registered before looking again, so a connection
                // returned meanwhile is not missed.
                let counted = self.returned.count_waiter();
                let returned = counted.notified();
                tokio::pin!(returned);
                returned.as_mut().enable();
                if let Some(conn) = pool.slots.take_idle(|c, now| self.usable(c, now)) {
                    return Ok(Checkout { conn, permit });
                }
                // Not `try_acquire`: once queued, freed permits go to the
                // queue. Unconstrained: out of cooperative budget, tokio
                // would take the permit and still say Pending.
                let now = tokio::task::coop::unconstrained(&mut budget_wait).now_or_never();
                if let Some(p) = now {
                    break p;
                }
                // The budget is spent: close another tenant's idle connection,
                // or wait for one to become idle (or closed) and look again.
                if let Some(evicted) = self.evict_one_idle(&pool) {
                    evicted.close(&self.timers).await;
                    continue;
                }
                tokio::select! {
                    p = &mut budget_wait => break p,
                    _ = returned => continue,
                    _ = self.timers.sleep_until(deadline) => return Err(timed_out()),
                }
            }
        };
        // Boxed on its own: a login's state is large, and in this future
        // it would be copied into the box at every wait for a permit
        // (each transaction's, once the pool is full).
        let conn = Box::pin(self.open(tenant, budget, statement_cache)).await?;
        // Checked once the connection is made: the registry may say the
        // tenant is gone while it logs in.
        if pool.gone.load(Ordering::Relaxed) {
            return Err(ClientError::Terminated(format!(
                "pgtenant: tenant \"{}\" was dropped",
                tenant.name
            )));
        }
        Ok(Checkout { conn, permit })
    }

    /// Ends waits for a slot at their deadlines (`query_wait_timeout`), with
    /// one timer: to spawn once, runs forever. See [`expiry`].
    pub async fn expire_waits(&self) {
        loop {
            self.expiry.scanning();
            let now = Instant::now();
            let next = self
                .all_pools()
                .iter()
                .filter_map(|p| p.slots.expire(now))
                .min();
            self.expiry.sleeping_until(next);
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = self.timers.sleep_until(at) => {}
                        _ = self.expiry.woken() => {}
                    }
                }
                None => self.expiry.woken().await,
            }
        }
    }

    /// A new connection of `tenant`'s role, on `budget`.
    async fn open(
        &self,
        tenant: &Arc<Tenant>,
        budget: OwnedSemaphorePermit,
        statement_cache: usize,
    ) -> Result<Box<ServerConn>, ClientError> {
        let password = role_password(&self.secret, &tenant.role);
        let conn = ServerConn::connect(
            &self.endpoint,
            &self.timers,
            tenant.clone(),
            &password,
            budget,
            statement_cache,
        )
        .await
        .inspect_err(|e| {
            // The client is told; the operator needs it in the log too.
            if !matches!(e, ClientError::BackendLoginRefused(_)) {
                tracing::warn!(tenant = %tenant.name, error = %e, "server connection failed");
            }
        })?;
        metrics::counter!("pgtenant_server_connects_total").increment(1);
        Ok(Box::new(conn))
    }

    /// Whether an idle connection is still healthy and young enough to
    /// hand out.
    #[inline]
    fn usable(&self, conn: &ServerConn, now: Stamp) -> bool {
        // A connection used within the last second is not probed (one
        // syscall per transaction saved); if it died meanwhile, its client
        // gets the server's own error. (PgBouncer watches its idle server
        // sockets and would notice sooner; here that would cost a readiness
        // registration per return.)
        let idle_for = now.ms_since(conn.idle_since);
        let probe = idle_for >= PROBE_AFTER_MS;
        // One with a cancel on its way is closed rather than kept: it is
        // rare (a cancel that races its statement's end), and the cancel
        // must not reach the next client's statement.
        !(self.too_old(conn, now, idle_for)
            || (probe && conn.is_broken())
            || self.cancels.holds(conn.pid))
    }

    fn expired(&self, conn: &ServerConn, now: Stamp) -> bool {
        self.too_old(conn, now, now.ms_since(conn.idle_since))
    }

    /// Past `server_idle_timeout` (idle for `idle_for` ms) or `server_lifetime`.
    fn too_old(&self, conn: &ServerConn, now: Stamp, idle_for: u64) -> bool {
        idle_for >= self.idle_timeout_ms.load(Ordering::Relaxed)
            || now.ms_since(conn.created) >= self.lifetime_ms.load(Ordering::Relaxed)
    }

    /// Takes the longest-idle connection of another pool than `except`
    /// (retired pools too, the caller's tenant's among them) off its idle
    /// list, for the caller to close.
    fn evict_one_idle(&self, except: &Arc<TenantPool>) -> Option<Box<ServerConn>> {
        let mut pools = self.all_pools();
        pools.retain(|p| !Arc::ptr_eq(p, except));
        let mut oldest: Option<(Stamp, &Arc<TenantPool>)> = None;
        for p in &pools {
            if let Some(since) = p.slots.with_idle(|idle| idle.first().map(|c| c.idle_since))
                && oldest.is_none_or(|(t, _)| since < t)
            {
                oldest = Some((since, p));
            }
        }
        let (_, p) = oldest?;
        let evicted = p
            .slots
            .with_idle(|idle| (!idle.is_empty()).then(|| idle.remove(0)))?;
        metrics::counter!("pgtenant_server_evictions_total").increment(1);
        Some(evicted)
    }
}

/// 0 in the configuration means no per-tenant client limit.
fn client_limit(max: usize) -> usize {
    if max == 0 { Resizable::UNLIMITED } else { max }
}

/// `server_lifetime_ms` and `server_idle_timeout_ms`: 0 is no limit, as
/// PgBouncer's `server_idle_timeout` (not "every checkout a new login").
fn no_limit_at_0(ms: u64) -> u64 {
    if ms == 0 { u64::MAX } else { ms }
}

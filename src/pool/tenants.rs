//! The tenants' pools as the registry has them: one per tenant, made at
//! its first login and replaced when the registry moved it; closed when
//! the registry changed, deactivated or dropped it; kept at `min_idle`
//! and reaped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use uuid::Uuid;

use super::clock::Stamp;
use super::resizable::Resizable;
use super::slots::Slots;
use super::{Pools, TenantPool, client_limit};
use crate::registry::Tenant;

impl Pools {
    /// The pool of `tenant` as a login found it in the registry (at the
    /// registry's `generation`). A pool opened for it under another name,
    /// schema or role (the registry was edited since) is replaced for new
    /// sessions: its connections are logged in as that role with that
    /// `search_path`. The sessions that logged in under it keep it (a
    /// retired pool), pooling among themselves, until the last one leaves
    /// and it closes with them. A login that read the registry before the
    /// edit the pool came from gets a retired pool of its own instead.
    pub(super) fn tenant_pool(&self, tenant: &Arc<Tenant>, generation: u64) -> Arc<TenantPool> {
        let mut map = self.tenants.lock().expect("poisoned");
        let Some(p) = map.get(&tenant.id) else {
            let pool = self.new_pool(tenant, generation);
            map.insert(tenant.id, pool.clone());
            return pool;
        };
        let was = &p.tenant;
        if (&was.name, &was.schema, &was.role) == (&tenant.name, &tenant.schema, &tenant.role) {
            return p.clone();
        }
        let pool = self.new_pool(tenant, generation);
        let retire = if generation < p.generation {
            pool.clone()
        } else {
            tracing::info!(tenant = %tenant.name, was = %p.tenant.name, "the registry moved the tenant: new sessions get a new pool");
            map.insert(tenant.id, pool.clone()).expect("it was there")
        };
        retire.forgotten.store(true, Ordering::Relaxed); // no min_idle
        let mut retired = self.retired.lock().expect("poisoned");
        retired.push(Arc::downgrade(&retire));
        pool
    }

    fn new_pool(&self, tenant: &Arc<Tenant>, generation: u64) -> Arc<TenantPool> {
        let t = self.cfg.load().for_tenant(&tenant.name);
        Arc::new(TenantPool {
            tenant: tenant.clone(),
            generation,
            slots: Slots::new(t.pool_size, self.returned.clone(), self.expiry.clone()),
            clients: Resizable::new(client_limit(t.max_client_connections)),
            waiters: Arc::default(),
            warming: AtomicUsize::new(0),
            forgotten: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        })
    }

    /// Tenants whose idle connections are below `min_idle`, with how many
    /// are missing (counting a tenant's busy connections, and those being
    /// opened, as present). Tenants the registry changed since their last
    /// login are left alone (a deactivated or dropped one must not get
    /// connections back every tick).
    pub fn below_min_idle(&self) -> Vec<(Arc<Tenant>, usize)> {
        let cfg = self.cfg.load();
        let map = self.tenants.lock().expect("poisoned");
        map.values()
            .filter(|p| !p.forgotten.load(Ordering::Relaxed))
            .filter_map(|p| {
                let min = cfg.for_tenant(&p.tenant.name).min_idle;
                let (out, idle) = p.slots.counts();
                let have = idle + out + p.warming.load(Ordering::Relaxed);
                (have < min).then(|| (p.tenant.clone(), min - have))
            })
            .collect()
    }

    /// Opens one idle connection for `tenant` if the budget has room.
    pub async fn warm(&self, tenant: &Arc<Tenant>) {
        // Not a pool of its own: one removed since (see [`Self::reap`])
        // stays removed; nor one that replaced it (the registry moved the
        // tenant since: `tenant` is no longer its tenant).
        let Some(pool) = self
            .existing_pool(tenant.id)
            .filter(|p| !p.forgotten.load(Ordering::Relaxed) && Arc::ptr_eq(&p.tenant, tenant))
        else {
            return;
        };
        let Some(budget) = self.budget.try_acquire() else {
            return;
        };
        let cache = self.cfg.load().prepared_statements_per_connection;
        pool.warming.fetch_add(1, Ordering::Relaxed);
        let opened = self.open(tenant, budget, cache).await;
        pool.warming.fetch_sub(1, Ordering::Relaxed);
        match opened {
            // Forgotten meanwhile: the connection may be for a tenant that
            // is gone; it closes here.
            Ok(_) if pool.forgotten.load(Ordering::Relaxed) => {}
            Ok(conn) => pool.slots.put_idle(conn),
            Err(_) => {} // logged by `open`
        }
    }

    /// Closes a tenant's idle connections (it was changed, deactivated or
    /// dropped in the registry); busy ones come back to the pool unless
    /// the registry says the tenant is gone (see [`Self::close_tenant`]).
    pub fn forget_tenant(&self, id: Uuid) {
        for p in self.pools_of(id) {
            p.forgotten.store(true, Ordering::Relaxed);
            drop(p.slots.with_idle(std::mem::take));
        }
    }

    /// The registry no longer has the tenant: besides
    /// [`Self::forget_tenant`], its pools open no connection for the
    /// sessions left (see `TenantPool::gone`).
    pub fn tenant_gone(&self, id: Uuid) {
        for p in self.pools_of(id) {
            p.gone.store(true, Ordering::Relaxed);
        }
        self.forget_tenant(id);
    }

    /// The registry found the tenant's keys valid: whatever a re-check that
    /// raced its reactivation concluded, its connections are pooled again.
    pub fn reopen_tenant(&self, id: Uuid) {
        if let Some(p) = self.existing_pool(id) {
            p.slots.reopen();
        }
    }

    /// The registry says the tenant is inactive or gone: its idle
    /// connections close, and so do the busy ones as their (ended)
    /// sessions give them back, until one of its clients logs in again.
    pub fn close_tenant(&self, id: Uuid) {
        for p in self.pools_of(id) {
            p.forgotten.store(true, Ordering::Relaxed);
            p.slots.close();
        }
    }

    /// The tenant's pool and those retired from it (see [`Self::tenant_pool`]).
    fn pools_of(&self, id: Uuid) -> Vec<Arc<TenantPool>> {
        let mut pools = self.retired_pools();
        pools.retain(|p| p.tenant.id == id);
        pools.extend(self.existing_pool(id));
        pools
    }

    /// The tenant as its pool was opened for, if it has a pool.
    pub fn pooled_tenant(&self, id: Uuid) -> Option<Arc<Tenant>> {
        self.existing_pool(id).map(|p| p.tenant.clone())
    }

    /// The tenants with a pool, retired ones included, that the registry
    /// has not been seen to drop; sorted.
    pub fn pooled_tenant_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .all_pools()
            .iter()
            .filter(|p| !p.gone.load(Ordering::Relaxed))
            .map(|p| p.tenant.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// A tenant's pool if it has one (a lookup that creates none).
    pub(super) fn existing_pool(&self, id: Uuid) -> Option<Arc<TenantPool>> {
        self.tenants.lock().expect("poisoned").get(&id).cloned()
    }

    /// The tenant pools, retired ones too, copied out so no lock is held
    /// while they are used.
    pub(super) fn all_pools(&self) -> Vec<Arc<TenantPool>> {
        let mut pools: Vec<_> = {
            let map = self.tenants.lock().expect("poisoned");
            map.values().cloned().collect()
        };
        pools.extend(self.retired_pools());
        pools
    }

    /// The retired pools still held by a session (the others forgotten).
    pub(super) fn retired_pools(&self) -> Vec<Arc<TenantPool>> {
        let mut retired = self.retired.lock().expect("poisoned");
        retired.retain(|p| p.strong_count() > 0);
        retired.iter().filter_map(Weak::upgrade).collect()
    }

    /// Closes idle connections past `server_idle_timeout` or `server_lifetime`.
    pub fn reap(&self) {
        let pools = self.all_pools();
        let now = Stamp::now();
        for p in pools {
            p.slots
                .with_idle(|idle| idle.retain(|c| !self.expired(c, now)));
        }
        // A tenant the registry changed, deactivated or dropped keeps no
        // pool (nor a line in SHOW POOLS) once nothing is left of it: the
        // map's is the only reference (no client, no checkout), no
        // connection is out or idle, none is being opened. Under the map's
        // lock, through which a login would find it again.
        self.tenants.lock().expect("poisoned").retain(|_, p| {
            !(p.forgotten.load(Ordering::Relaxed)
                && Arc::strong_count(p) == 1
                && p.warming.load(Ordering::Relaxed) == 0
                && p.slots.counts() == (0, 0))
        });
    }
}

//! What the admin console sees of the pools and does to them: a snapshot
//! of each tenant's pool, PAUSE and RESUME.

use std::sync::Arc;
use std::time::Duration;

use super::Pools;
use crate::registry::Tenant;

impl Pools {
    /// PAUSE: new checkouts of `tenant` (None: of everyone) wait until
    /// RESUME; connections already out are not touched.
    pub fn pause(&self, tenant: Option<&str>) {
        self.pause.pause(tenant);
    }

    /// RESUME one tenant (a global PAUSE still holds it), or everyone.
    pub fn resume(&self, tenant: Option<&str>) {
        self.pause.resume(tenant);
    }

    /// A read-only snapshot of every tenant's pool, for the admin console
    /// and metrics.
    pub fn stats(&self) -> Vec<PoolStats> {
        let cfg = self.cfg.load();
        let pools = self.all_pools();
        pools
            .into_iter()
            .map(|p| {
                let (waiting, max_wait) = p.waiters.now();
                let (active, _) = p.slots.counts();
                let idle_servers: Vec<IdleServer> = p.slots.with_idle(|idle| {
                    idle.iter()
                        .map(|c| IdleServer {
                            pid: c.pid,
                            addr: c.addr,
                            age: c.age(),
                            idle_for: c.idle_since.elapsed(),
                        })
                        .collect()
                });
                PoolStats {
                    mode: cfg.for_tenant(&p.tenant.name).mode,
                    size: p.slots.size(),
                    active,
                    idle: idle_servers.len(),
                    waiting,
                    max_wait,
                    paused: self.pause.is_paused(&p.tenant.name),
                    idle_servers,
                    tenant: p.tenant.clone(),
                }
            })
            .collect()
    }
}

/// One tenant's pool at a moment ([`Pools::stats`]).
#[derive(Debug, Clone)]
pub struct PoolStats {
    pub tenant: Arc<Tenant>,
    pub mode: crate::config::PoolMode,
    pub size: usize,
    /// Connections lent to clients (or being opened for one).
    pub active: usize,
    pub idle: usize,
    /// Clients waiting for a connection (or at a PAUSE).
    pub waiting: usize,
    pub max_wait: Duration,
    pub paused: bool,
    pub idle_servers: Vec<IdleServer>,
}

#[derive(Debug, Clone)]
pub struct IdleServer {
    pub pid: i32,
    pub addr: std::net::SocketAddr,
    pub age: Duration,
    pub idle_for: Duration,
}

//! The one shared, immutable-after-start context every session borrows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::cancel::CancelMap;
use crate::config::{Config, TlsMode};
use crate::pool::{Endpoint, Pools};
use crate::registry::Registry;
use crate::session::live::LiveSessions;

pub struct Context {
    pub cfg: Config,
    pub tls: Option<TlsAcceptor>,
    pub registry: Registry,
    pub pools: Pools,
    pub cancels: CancelMap,
    pub sessions: LiveSessions,
    /// One permit per connected client.
    pub clients: Arc<Semaphore>,
}

impl Context {
    pub fn new(cfg: Config) -> anyhow::Result<Arc<Context>> {
        let secret = cfg.require_secret()?.to_owned();
        let pg = cfg.backend_pg_config()?;
        let tls = match (&cfg.tls.mode, &cfg.tls.cert, &cfg.tls.key) {
            (TlsMode::Disable, _, _) => None,
            (_, Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => unreachable!("validated: TLS modes other than disable have cert and key"),
        };
        let endpoint =
            Endpoint::from_pg(&pg, Duration::from_millis(cfg.backend.connect_timeout_ms));
        Ok(Arc::new(Context {
            tls,
            registry: Registry::new(
                pg,
                cfg.registry.pool_size,
                Duration::from_millis(cfg.registry.cache_ttl_ms),
            ),
            pools: Pools::new(endpoint, secret, cfg.pool.clone()),
            cancels: CancelMap::default(),
            sessions: LiveSessions::default(),
            clients: Arc::new(Semaphore::new(cfg.max_client_connections)),
            cfg,
        }))
    }
}

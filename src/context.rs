//! The one shared context every session borrows. Settings that may change
//! at runtime (SIGHUP, `RELOAD`) sit behind `ArcSwap`s: a session takes a
//! snapshot when it needs one and never sees a half-applied config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cancel::CancelMap;
use crate::config::{Config, TlsMode};
use crate::firewall::Firewall;
use crate::pool::resizable::Resizable;
use crate::pool::tls::BackendTlsPolicy;
use crate::pool::{Endpoint, Pools};
use crate::registry::Registry;
use crate::session::live::LiveSessions;

/// Changes the log filter at runtime (set up by the CLI with the subscriber).
pub type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Connections read at once beyond `max_client_connections`: enough for
/// cancel requests and refusals, few enough that a flood costs little.
const OVERFLOW_CONNECTIONS: usize = 64;

pub struct Context {
    cfg: ArcSwap<Config>,
    /// Where the config came from, for reloads (None: environment only).
    config_path: Option<PathBuf>,
    pub tls: ArcSwap<Option<TlsAcceptor>>,
    /// Rebuilt on reload when its policy changes (the verdict cache with it).
    pub firewall: ArcSwap<Firewall>,
    pub registry: Registry,
    pub pools: Pools,
    pub cancels: CancelMap,
    pub sessions: LiveSessions,
    /// One permit per connected client.
    pub clients: Resizable,
    /// Connections beyond `clients`, read only to be refused properly or
    /// to forward a cancel (see [`crate::session::serve_overflow`]).
    pub overflow: Resizable,
    /// Cancelled to start a graceful shutdown (SIGTERM, admin `SHUTDOWN`).
    pub shutdown: CancellationToken,
    /// Per-tenant traffic totals (admin `SHOW STATS`, metrics).
    pub stats: crate::admin::stats::Stats,
    /// Metrics every connection updates, registered once.
    pub meters: crate::admin::meters::Meters,
    /// Failed-login throttling per source address.
    pub throttle: crate::auth::throttle::Throttle,
    /// Keys that logged in: past the throttle (see `auth::known`).
    pub known_keys: crate::auth::known::KnownKeys,
    /// Logins under way per source address.
    pub logins: crate::auth::logins::Logins,
    /// Server-reply buffers lent to sessions while they hold a connection.
    pub buffers: crate::session::buffers::Buffers,
    /// Metrics scrape state carried from one scrape to the next.
    pub scrapes: crate::admin::exporter::Scrapes,
    /// Every timer of the proxy (the runtime has no time driver).
    pub timers: crate::timer::Timers,
    /// Long statement texts parsed at once off the event loop (see
    /// `session::offload`): one core is left to the loop.
    pub parsers: Arc<tokio::sync::Semaphore>,
    log_reload: Option<LogReload>,
}

fn firewall(cfg: &Config) -> Firewall {
    Firewall::new(cfg.firewall.policy(), cfg.firewall.cache_capacity)
}

fn parsers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).max(1)
}

fn acceptor(cfg: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    Ok(match (&cfg.tls.mode, &cfg.tls.cert, &cfg.tls.key) {
        (TlsMode::Disable, _, _) => None,
        (_, Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => unreachable!("validated: TLS modes other than disable have cert and key"),
    })
}

impl Context {
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        log_reload: Option<LogReload>,
    ) -> anyhow::Result<Arc<Context>> {
        let secret = cfg.require_secret()?.to_owned();
        let pg = cfg.backend_pg_config()?;
        let tls = BackendTlsPolicy::new(cfg.backend.tls, cfg.backend.tls_ca.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
        let endpoint = Endpoint::from_pg(
            &pg,
            Duration::from_millis(cfg.backend.connect_timeout_ms),
            tls.clone(),
        );
        let timers = crate::timer::Timers::new()?;
        let cancels = CancelMap::default();
        let in_flight = cancels.in_flight.clone();
        Ok(Arc::new(Context {
            tls: ArcSwap::from_pointee(acceptor(&cfg)?),
            firewall: ArcSwap::from_pointee(firewall(&cfg)),
            registry: Registry::new(
                pg,
                endpoint.clone(),
                cfg.registry.pool_size,
                Duration::from_millis(cfg.registry.cache_ttl_ms),
                timers.clone(),
            ),
            pools: Pools::new(
                endpoint,
                secret,
                cfg.pool.clone(),
                timers.clone(),
                in_flight,
            ),
            cancels,
            sessions: LiveSessions::default(),
            clients: Resizable::new(cfg.max_client_connections),
            overflow: Resizable::new(OVERFLOW_CONNECTIONS),
            shutdown: CancellationToken::new(),
            stats: Default::default(),
            meters: Default::default(),
            throttle: Default::default(),
            known_keys: Default::default(),
            logins: Default::default(),
            buffers: Default::default(),
            scrapes: Default::default(),
            timers,
            parsers: Arc::new(tokio::sync::Semaphore::new(parsers())),
            cfg: ArcSwap::from_pointee(cfg),
            config_path,
            log_reload,
        }))
    }

    /// The current configuration.
    pub fn cfg(&self) -> Guard<Arc<Config>> {
        self.cfg.load()
    }

    /// Re-reads the config file and environment and applies what can change
    /// live: pool sizes and timeouts, client limits, TLS certificates, log
    /// level, firewall modes. A config that doesn't load is refused whole
    /// and the running one kept. Returns what was done, line by line.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let mut new = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.cfg.load_full();
        let mut report = Vec::new();
        // Settings bound at start: report and keep.
        if new.listen_addr != old.listen_addr {
            report.push(format!(
                "listen_addr changes only on restart; still {}",
                old.listen_addr
            ));
            new.listen_addr = old.listen_addr;
        }
        // The pools' endpoint (address, TLS policy, connect timeout) and the
        // registry's connections are built from it once.
        if new.backend != old.backend {
            report.push(
                "backend.* (url, secret, tls, tls_ca, connect_timeout_ms) changes only on restart"
                    .into(),
            );
            new.backend = old.backend.clone();
        }
        if new.admin.metrics_addr != old.admin.metrics_addr {
            report.push("admin.metrics_addr changes only on restart".into());
            new.admin.metrics_addr = old.admin.metrics_addr;
        }
        // The log's format and the runtime are set up once, at start.
        if new.log.format != old.log.format {
            report.push("log.format changes only on restart (log.level changes live)".into());
            new.log.format = old.log.format;
        }
        if new.worker_threads != old.worker_threads {
            report.push(format!(
                "worker_threads changes only on restart; still {}",
                old.worker_threads
            ));
            new.worker_threads = old.worker_threads;
        }
        if new.registry.pool_size != old.registry.pool_size
            || new.registry.cache_ttl_ms != old.registry.cache_ttl_ms
            || new.registry.refresh_interval_ms != old.registry.refresh_interval_ms
            || new.registry.last_used_flush_ms != old.registry.last_used_flush_ms
        {
            report.push(
                "registry.pool_size, cache_ttl_ms, refresh_interval_ms and last_used_flush_ms \
                 change only on restart (registry.on_revoke changes live)"
                    .into(),
            );
            let on_revoke = new.registry.on_revoke;
            new.registry = old.registry.clone();
            new.registry.on_revoke = on_revoke;
        }
        let tls = acceptor(&new).map_err(|e| format!("TLS: {e}; nothing changed"))?;
        if let Some(set) = &self.log_reload {
            set(&new.log.level).map_err(|e| format!("log.level: {e}; nothing changed"))?;
        }
        self.tls.store(Arc::new(tls));
        if new.firewall.policy() != old.firewall.policy()
            || new.firewall.cache_capacity != old.firewall.cache_capacity
        {
            self.firewall.store(Arc::new(firewall(&new)));
        }
        self.pools.reconfigure(new.pool.clone());
        self.clients.resize(new.max_client_connections);
        self.stats.labels.set_cap(new.admin.metrics_max_tenants);
        self.cfg.store(Arc::new(new));
        report.push("configuration reloaded".into());
        Ok(report)
    }
}

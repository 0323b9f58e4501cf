//! Operations: Prometheus metrics and health checks over HTTP
//! ([`http`], [`exporter`]), bounded tenant labels ([`labels`]), traffic
//! totals ([`stats`]) and the PgBouncer-style admin console on the virtual
//! database `pgtenant` ([`console`], [`commands`], `show`, [`control`]).

pub mod commands;
pub mod console;
pub mod control;
pub mod exporter;
pub mod http;
pub mod labels;
pub mod meters;
mod show;
mod show_config;
pub mod stats;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::context::Context;

/// The virtual database that is the admin console.
pub const CONSOLE_DB: &str = "pgtenant";

/// Installs the metrics recorder and, if `admin.metrics_addr` is set,
/// starts the HTTP listener. The recorder is installed even without a
/// listener: the console's `SHOW FIREWALL` reads its counts from it.
pub async fn start(ctx: &Arc<Context>) -> anyhow::Result<()> {
    let cfg = ctx.cfg();
    ctx.stats.labels.set_cap(cfg.admin.metrics_max_tenants);
    if let Some(h) = exporter::install() {
        tokio::spawn(exporter::upkeep(h, ctx.timers.clone()));
    }
    if let Some(addr) = cfg.admin.metrics_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin.metrics_addr): {e}"))?;
        tracing::info!(%addr, "metrics and health on http://{addr}/metrics, /healthz, /readyz");
        tokio::spawn(http::serve(ctx.clone(), listener));
    }
    Ok(())
}

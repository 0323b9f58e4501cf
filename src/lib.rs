//! pgtenant: a tenant-aware PostgreSQL wire proxy.
//!
//! The modules follow the path of a connection:
//! [`listen`] → [`session::startup`] (+ [`tls`]) → [`auth`] → [`registry`]
//! (tenant) → [`pool`] → `session::relay`; [`cancel`] routes CancelRequests.

pub mod auth;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
// pub mod firewall; (re-enabled when src/firewall lands)
pub mod listen;
pub mod pool;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod tls;

use tokio::net::TcpListener;

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let addr = cfg.listen_addr;
    let ctx = context::Context::new(cfg)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "pgtenant listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = listen::serve(ctx, listener) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: exiting"),
        _ = term.recv() => tracing::info!("SIGTERM: exiting"),
    }
    Ok(())
}

//! pgtenant: a tenant-aware PostgreSQL wire proxy.
//!
//! The modules follow the path of a connection:
//! [`listen`] → [`session::startup`] (+ [`tls`]) → [`auth`] → [`registry`]
//! (tenant) → [`pool`] → `session::relay`; [`cancel`] routes CancelRequests.

pub mod admin;
pub mod allocator;
pub mod auth;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
pub mod firewall;
pub mod keyword;
pub mod lexical;
pub mod listen;
pub mod net;
pub mod pool;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod timer;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use session::live::KillMode;

/// Runs the proxy. SIGTERM (or admin `SHUTDOWN`) stops accepting, lets
/// running transactions finish for up to `shutdown_timeout_ms`, then ends
/// the remaining sessions with 57P01; SIGINT does the last step at once.
/// SIGHUP reloads the configuration.
pub async fn serve(
    cfg: config::Config,
    config_path: Option<PathBuf>,
    log_reload: context::LogReload,
) -> anyhow::Result<()> {
    let addr = cfg.listen_addr;
    let ctx = context::Context::new(cfg, config_path, Some(log_reload))?;
    tokio::spawn(ctx.timers.driver()?);
    registry::watch::spawn(ctx.clone());
    admin::start(&ctx).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    net::keep_alive(&SockRef::from(&listener));
    tracing::info!(%addr, "pgtenant listening");
    let (mut term, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    );
    let accept = tokio::spawn(listen::serve(ctx.clone(), listener));
    let graceful = loop {
        tokio::select! {
            _ = hup.recv() => match ctx.reload() {
                Ok(report) => report.iter().for_each(|r| tracing::info!("SIGHUP: {r}")),
                Err(e) => tracing::error!("SIGHUP: config refused, keeping the running one: {e}"),
            },
            _ = term.recv() => break true,
            _ = ctx.shutdown.cancelled() => break true,
            _ = tokio::signal::ctrl_c() => break false,
        }
    };
    accept.abort();
    let reason = "pgtenant is shutting down";
    if graceful {
        let timeout = Duration::from_millis(ctx.cfg().shutdown_timeout_ms);
        tracing::info!(
            sessions = ctx.sessions.len(),
            ?timeout,
            "shutting down: waiting for transactions to finish"
        );
        ctx.sessions
            .kill_where(|_| true, KillMode::WhenIdle, reason);
        drain(&ctx, timeout).await;
    }
    // Whatever is left ends now; their transactions are rolled back.
    ctx.sessions.kill_where(|_| true, KillMode::Now, reason);
    drain(&ctx, Duration::from_secs(2)).await;
    if let Err(e) = ctx.registry.flush_last_used().await {
        tracing::warn!(error = %e, "could not write last_used_at at shutdown");
    }
    tracing::info!("pgtenant stopped");
    Ok(())
}

/// Waits until no session is left or `timeout` passes.
async fn drain(ctx: &context::Context, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !ctx.sessions.is_empty() && std::time::Instant::now() < deadline {
        ctx.timers.sleep(Duration::from_millis(20)).await;
    }
}

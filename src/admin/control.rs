//! The console's `RELOAD` and `SHUTDOWN`: the same paths as SIGHUP and
//! SIGTERM (see `crate::serve`).

use crate::context::Context;

/// Re-reads the configuration; Ok holds what was done, Err why nothing was.
pub fn reload(ctx: &Context) -> Result<String, String> {
    ctx.reload().map(|report| report.join("; "))
}

/// Starts a graceful shutdown, as SIGTERM does: no new clients, running
/// transactions may finish for up to `shutdown_timeout_ms`.
pub fn shutdown(ctx: &Context) -> Result<String, String> {
    if ctx.shutdown.is_cancelled() {
        return Err("pgtenant is already shutting down".into());
    }
    ctx.shutdown.cancel();
    Ok("shutting down: running transactions may finish, then sessions end".into())
}

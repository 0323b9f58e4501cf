//! The accept loop: one task per client, a cap on clients, and the
//! background tasks: a reaper for idle server connections and the timer of
//! clients waiting for one.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::context::Context;
use crate::error::ClientError;
use crate::protocol::{self, Severity};
use crate::session;

pub async fn serve(ctx: Arc<Context>, listener: TcpListener) -> std::io::Result<()> {
    let expiry = ctx.clone();
    tokio::spawn(async move { expiry.pools.expire_waits().await });
    let reaper = ctx.clone();
    tokio::spawn(async move {
        let mut tick = reaper.timers.interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            reaper.pools.reap();
            // One connection per tenant per tick: converges without a burst.
            for (tenant, _missing) in reaper.pools.below_min_idle() {
                let ctx = reaper.clone();
                tokio::spawn(async move { ctx.pools.warm(&tenant).await });
            }
        }
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                ctx.timers.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Boxed: the task then holds a pointer, not the session's future,
        // which tokio would copy at spawn and at each change of the task's
        // stage (a few KiB each time). The session's own future, with no
        // wrapper around it: each layer of futures is walked at every
        // wake-up.
        if let Some(permit) = ctx.clients.try_acquire() {
            tokio::spawn(Box::pin(session::serve_client(
                ctx.clone(),
                tcp,
                peer,
                permit,
            )));
        } else if let Some(permit) = ctx.overflow.try_acquire() {
            tokio::spawn(session::serve_overflow(ctx.clone(), tcp, peer, permit));
        } else {
            metrics::counter!("pgtenant_clients_refused_total").increment(1);
            tokio::spawn(refuse(
                tcp,
                ClientError::TooManyClients(ctx.cfg().max_client_connections),
            ));
        }
    }
}

/// Tells a client it can't be served, when even the overflow slots (see
/// [`session::serve_overflow`]) are taken: without reading its startup
/// packet.
async fn refuse(mut tcp: TcpStream, err: ClientError) {
    let mut buf = BytesMut::new();
    protocol::error_response(
        &mut buf,
        Severity::Fatal,
        err.sqlstate(),
        &err.to_string(),
        err.hint(),
    );
    let _ = tcp.write_all(&buf).await;
}

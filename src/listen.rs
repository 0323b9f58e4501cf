//! The accept loop: one task per client, a cap on clients, and the
//! background tasks: a reaper for idle server connections and the timer of
//! clients waiting for one.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::context::Context;
use crate::error::ClientError;
use crate::protocol::{self, Severity};
use crate::session;
use crate::timer::Timers;

/// How long a refused connection is read from before it is closed.
const REFUSAL_DRAIN: Duration = Duration::from_millis(500);

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
            let (timers, max) = (ctx.timers.clone(), ctx.cfg().max_client_connections);
            tokio::spawn(
                async move { refuse(tcp, ClientError::TooManyClients(max), &timers).await },
            );
        }
    }
}

/// Tells a client it can't be served, without reading its startup packet:
/// even the overflow slots (see [`session::serve_overflow`]) are taken,
/// or its source has `auth.max_logins_per_source` logins under way.
pub(crate) async fn refuse(mut tcp: TcpStream, err: ClientError, timers: &Timers) {
    let mut buf = BytesMut::new();
    protocol::error_response(
        &mut buf,
        Severity::Fatal,
        err.sqlstate(),
        &err.to_string(),
        err.hint(),
    );
    if tcp.write_all(&buf).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    // Closing with the startup packet unread would reset the connection,
    // and a client can then lose the error before it reads it: read what
    // it sent, briefly, until it closes too.
    let drain = async {
        let mut sink = [0u8; 512];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = timers.timeout(REFUSAL_DRAIN, drain).await;
}

//! The operations HTTP listener: `/metrics` (Prometheus text format),
//! `/healthz` (the process runs) and `/readyz` (the registry answers and
//! the backend accepts connections). A tiny HTTP/1.1 responder: one
//! request per connection, GET/HEAD only, no bodies — enough for
//! Prometheus and orchestrator probes, without an HTTP stack.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::context::Context;

/// A request line and headers larger than this are refused.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of each readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole exchange, request to last byte written: a reader that stops
/// reading can't hold its connection longer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed unanswered, so that a
/// flood on this port can't take the file descriptors logins need.
const MAX_CONNECTIONS: usize = 64;
/// How long a readiness verdict is reused: probes in a burst share one
/// check (each takes a registry connection, which logins need too).
const READY_FOR: Duration = Duration::from_secs(1);

/// The last readiness verdict; its lock makes concurrent probes wait for
/// one check instead of running their own.
type ReadyCache = tokio::sync::Mutex<Option<(std::time::Instant, Result<(), &'static str>)>>;

pub async fn serve(ctx: Arc<Context>, listener: TcpListener) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let cache = Arc::new(ReadyCache::default());
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                ctx.timers.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            continue; // closed: dropped unanswered
        };
        let (ctx, cache) = (ctx.clone(), cache.clone());
        tokio::spawn(async move {
            let _ = ctx
                .timers
                .timeout(EXCHANGE_TIMEOUT, respond(&ctx, &cache, tcp))
                .await;
            drop(place);
        });
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn text(status: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

async fn respond(ctx: &Context, cache: &ReadyCache, mut tcp: TcpStream) {
    let Ok(Some((method, path))) = ctx
        .timers
        .timeout(READ_TIMEOUT, read_head(&mut tcp))
        .await
        .unwrap_or(Ok(None))
    else {
        return;
    };
    let r = route(ctx, cache, &method, &path).await;
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = tcp.write_all(r.body.as_bytes()).await;
    }
    let _ = tcp.shutdown().await;
}

async fn route(ctx: &Context, cache: &ReadyCache, method: &str, path: &str) -> Response {
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "GET only\n");
    }
    // Query strings are ignored: probes sometimes add cache busters.
    match path.split('?').next().unwrap_or("") {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: super::exporter::render(ctx),
        },
        "/healthz" => text("200 OK", "ok\n"),
        "/readyz" => match ready_cached(ctx, cache).await {
            Ok(()) => text("200 OK", "ready\n"),
            // What failed, not where: the port may face the network; the
            // log has the address and the error.
            Err(part) => text("503 Service Unavailable", format!("not ready: {part}\n")),
        },
        _ => text("404 Not Found", "try /metrics, /healthz or /readyz\n"),
    }
}

/// Reads up to the end of the headers; returns (method, path), or None
/// for a request that is too large, malformed or cut short.
async fn read_head(tcp: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    Ok(match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") => {
            Some((m.to_owned(), p.to_owned()))
        }
        _ => None,
    })
}

async fn ready_cached(ctx: &Context, cache: &ReadyCache) -> Result<(), &'static str> {
    let mut last = cache.lock().await;
    if let Some((at, verdict)) = *last
        && at.elapsed() < READY_FOR
    {
        return verdict;
    }
    let verdict = ready(ctx).await.map_err(|why| {
        tracing::warn!(reason = %why, "not ready");
        if why.starts_with("registry") {
            "registry"
        } else {
            "backend"
        }
    });
    *last = Some((std::time::Instant::now(), verdict));
    verdict
}

/// The registry answers `SELECT 1` and the backend accepts a TCP
/// connection (a login would need a tenant's role; the registry check
/// already proves that logins work there).
pub async fn ready(ctx: &Context) -> Result<(), String> {
    match ctx.timers.timeout(CHECK_TIMEOUT, ctx.registry.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("registry: {e}")),
        Err(_) => return Err("registry: no answer within 2 s".into()),
    }
    let ep = ctx.pools.endpoint();
    match ctx
        .timers
        .timeout(
            CHECK_TIMEOUT,
            TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("backend {}:{}: {e}", ep.host, ep.port)),
        Err(_) => Err(format!(
            "backend {}:{}: no connection within 2 s",
            ep.host, ep.port
        )),
    }
}

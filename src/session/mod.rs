//! One client connection from accept to close:
//! startup → auth → tenant's pool → relay → release.

mod attach;
pub mod buffers;
mod custom;
mod downstream;
mod events;
mod expect;
mod inspect;
pub mod live;
mod offload;
pub mod pinning;
pub mod prepared;
mod relay;
mod repeats;
mod socket;
mod split;
pub mod startup;
pub mod upstream;
mod wakes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, field};

use crate::auth;
use crate::auth::logins::LoginPlace;
use crate::cancel;
use crate::context::Context;
use crate::error::ClientError;
use crate::pool::Release;
use crate::protocol::{self, Severity, TxStatus};
use crate::tls::ClientStream;
use startup::{Failed, Hello};

/// How long an ending session waits for its client to take the last of
/// its reply and its final error: a client that stopped reading must not
/// keep a task, a socket or a server connection for ever.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// `slot`: the client's place under `max_client_connections`, held until
/// the end.
pub async fn serve_client(
    ctx: Arc<Context>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let ctx = &*ctx;
    let span = client_span(peer);
    let Some((tcp, _slot, login_by, place)) = login_place(ctx, tcp, peer, slot).await else {
        return;
    };
    // A span is entered at every poll of what it instruments: with the
    // default subscriber at `info`, two lock reads and a registry update
    // each time, +13–15 % instructions per relayed transaction. So it
    // instruments the startup, the login and the session's start and end;
    // the relay in between runs outside it and names it as the parent of
    // the few lines it logs.
    let started = hello(ctx, tcp, peer, login_by, place)
        .instrument(span.clone())
        .await;
    let Some((mut stream, params, early, place)) = started else {
        return;
    };
    // Login, then the relay, polled at every wake-up: right here, under the
    // task's own future, since each layer of futures above it is walked at
    // every poll. The block ends the session (live list, cancel key, pool
    // slot) before a last error is told.
    let error = {
        let open = match open(ctx, &mut stream, &params, early, peer, login_by, place)
            .instrument(span.clone())
            .await
        {
            Ok(Some(open)) => open,
            Ok(None) => return, // the client left before its first query
            Err(e) => return tell(&mut stream, &e).await,
        };
        // Read by the login only: not kept in the session's future while
        // it relays (and idles).
        drop(params);
        let firewall = ctx.firewall.load_full();
        let tenant = &open.tenant;
        let session = relay::Session {
            ctx,
            admitted: &open.admitted,
            settings: &open.wanted,
            mode: ctx.cfg().pool.for_tenant(&tenant.name).mode,
            inspector: &inspect::TenantFirewall {
                firewall: &firewall,
                schema: &tenant.schema,
                mode: ctx.cfg().firewall.mode_for(&tenant.name),
                span: &span,
            },
            kill: &open.kill,
            cancel: &open.cancel,
            id: open.live.id(),
            span: &span,
        };
        let meters = ctx.meters.get();
        meters.clients_active.increment(1.0);
        let outcome = relay::run(
            &session,
            &mut stream,
            open.checkout,
            open.pending,
            open.early,
        )
        .await;
        meters.clients_active.decrement(1.0);
        ended(ctx, tenant, open.started, outcome, &span)
    };
    if let Some(e) = error {
        let _ = ctx.timers.timeout(LAST_WORDS, tell(&mut stream, &e)).await;
    }
}

/// A connection that came when all `max_client_connections` were taken,
/// on one of a few overflow places (`slot`): its startup is read as
/// PostgreSQL reads it when full, so a cancel request still reaches its
/// query, an SSLRequest gets its answer before the 53300, and the admin
/// console stays reachable. Apart from [`serve_client`], whose future
/// must stay small enough to be polled inline at every wake-up.
pub async fn serve_overflow(
    ctx: Arc<Context>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let ctx = &*ctx;
    let span = client_span(peer);
    let Some((tcp, _slot, login_by, place)) = login_place(ctx, tcp, peer, slot).await else {
        return;
    };
    async {
        if let Some((mut stream, ..)) = hello(ctx, tcp, peer, login_by, place).await {
            metrics::counter!("pgtenant_clients_refused_total").increment(1);
            tracing::info!("refused: max_client_connections reached");
            let full = ClientError::TooManyClients(ctx.cfg().max_client_connections);
            tell(&mut stream, &full).await;
        }
    }
    .instrument(span)
    .await
}

/// A connection's span, with the fields its login (or the admin
/// console's) records.
fn client_span(peer: SocketAddr) -> tracing::Span {
    tracing::info_span!(
        "client",
        %peer,
        tenant = field::Empty,
        key_id = field::Empty,
        user = field::Empty
    )
}

/// The login's deadline (TLS, startup and login together: each step
/// restarting the clock would let a client hold its slot twice as long)
/// and its place among its source's logins under way. None: the source
/// has `auth.max_logins_per_source` already, and the connection was
/// refused (without its client slot while the refusal is read out).
async fn login_place(
    ctx: &Context,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> Option<(TcpStream, OwnedSemaphorePermit, Instant, LoginPlace<'_>)> {
    let cfg = ctx.cfg();
    if let Some(place) = ctx.logins.start(peer.ip(), cfg.auth.max_logins_per_source) {
        return Some((tcp, slot, Instant::now() + cfg.login_timeout(), place));
    }
    drop(slot);
    metrics::counter!("pgtenant_clients_refused_total").increment(1);
    tracing::debug!("refused: auth.max_logins_per_source reached");
    let err = ClientError::TooManyLogins(cfg.auth.max_logins_per_source);
    drop(cfg);
    // Boxed: rare, and its read buffer would otherwise sit in every
    // session's future.
    Box::pin(crate::listen::refuse(tcp, err, &ctx.timers)).await;
    None
}

/// TLS and the startup packet; a cancel request, the admin console and
/// refusals are served here. Some: a client to log in.
async fn hello<'c>(
    ctx: &'c Context,
    tcp: TcpStream,
    peer: SocketAddr,
    login_by: Instant,
    place: LoginPlace<'c>,
) -> Option<(
    ClientStream,
    protocol::startup::Params,
    BytesMut,
    LoginPlace<'c>,
)> {
    // (Keepalive comes from the listening socket: see `crate::net`.)
    tcp.set_nodelay(true).ok();
    let hello = ctx
        .timers
        .timeout_at(login_by, startup::negotiate(ctx, tcp))
        .await;
    match hello {
        Err(_) => tracing::debug!("startup timed out"),
        Ok(Err(Failed::Silent)) => {}
        Ok(Err(Failed::Tell(mut stream, e))) => {
            tracing::info!(error = %e, "startup refused");
            tell(&mut stream, &e).await;
        }
        Ok(Ok(Hello::Cancel { pid, secret })) => forward_cancel(ctx, pid, secret).await,
        Ok(Ok(Hello::Startup {
            stream,
            params,
            early,
        })) if params.get("database") == Some(crate::admin::CONSOLE_DB) => {
            crate::admin::console::serve(ctx, stream, params, early, peer, login_by, place).await
        }
        Ok(Ok(Hello::Startup {
            stream,
            params,
            early,
        })) => return Some((stream, params, early, place)),
    }
    None
}

async fn forward_cancel(ctx: &Context, pid: i32, secret: i32) {
    metrics::counter!("pgtenant_cancel_requests_total").increment(1);
    match ctx.cancels.resolve(pid, secret) {
        // The backend stays out of the pool while `_sending` lives.
        Some((key, _sending)) => {
            if let Err(e) = cancel::send_cancel(key, ctx.pools.endpoint(), &ctx.timers).await {
                tracing::warn!(error = %e, "could not forward cancel request");
            }
        }
        None => tracing::info!("cancel request with unknown or wrong key ignored"),
    }
}

/// Logs and counts a session's end; returns the error to tell the client.
fn ended(
    ctx: &Context,
    tenant: &crate::registry::Tenant,
    started: Instant,
    outcome: relay::Outcome,
    span: &tracing::Span,
) -> Option<ClientError> {
    let s = outcome.stats;
    tracing::info!(
        parent: span,
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_in = s.bytes_in,
        bytes_out = s.bytes_out,
        transactions = s.transactions,
        "session ended"
    );
    ctx.stats.session_ended(&tenant.name);
    ctx.stats.add(
        &tenant.name,
        crate::admin::stats::Totals {
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            transactions: s.transactions,
            queries: s.queries,
        },
    );
    outcome.error
}

/// A logged-in client with a server connection, told that it may start.
/// (Fields drop in this order: the session leaves the live list first,
/// its client slot last.)
struct Opened<'c> {
    live: live::Registration<'c>,
    kill: Arc<live::KillSwitch>,
    cancel: cancel::CancelKey<'c>,
    admitted: crate::pool::Admission,
    tenant: Arc<crate::registry::Tenant>,
    checkout: crate::pool::Checkout,
    /// The client's startup settings, interned.
    wanted: crate::pool::Settings,
    /// SQL still to run on `checkout` to apply them.
    pending: Option<String>,
    /// What the client sent behind its password (or its startup packet,
    /// the key given there) before the answer.
    early: BytesMut,
    started: Instant,
}

/// Login, the tenant's pool, a server connection with the client's
/// settings, and the hello (AuthenticationOk … ReadyForQuery). None: the
/// client went away (while it waited, or before the hello reached it).
async fn open<'c>(
    ctx: &'c Context,
    stream: &mut ClientStream,
    params: &protocol::startup::Params,
    early: BytesMut,
    peer: SocketAddr,
    login_by: Instant,
    place: LoginPlace<'c>,
) -> Result<Option<Opened<'c>>, ClientError> {
    let login = ctx
        .timers
        .timeout_at(
            login_by,
            auth::authenticate(ctx, stream, params, early, peer),
        )
        .await
        .map_err(|_| ClientError::LoginTimeout)?;
    drop(place);
    let login = match login {
        Ok(l) => l,
        Err(e) => {
            let user = auth::options::user_shown(params);
            tracing::info!(error = %e, %user, "login refused");
            return Err(e);
        }
    };
    let tenant = login.key.tenant.clone();
    let span = tracing::Span::current();
    span.record("tenant", tenant.name.as_str());
    span.record("key_id", field::display(login.key.key_id));
    span.record("user", login.request.user.as_str());

    let cancel = ctx.cancels.register();
    let kill = Arc::new(live::KillSwitch::default());
    let live = ctx.sessions.register(live::SessionInfo {
        tenant: tenant.clone(),
        key_id: login.key.key_id,
        user: login.request.user.clone(),
        peer,
        started: Instant::now(),
        kill: kill.clone(),
    });
    // A change to the registry that arrived while the key was looked up
    // (the lookup may have read it just before a revocation committed)
    // was handled, live sessions re-checked, before this one was listed:
    // check its key once more, now that a later change would find it.
    if ctx.registry.generation() != login.generation
        && let Err(e) = recheck_key(ctx, &login.key).await
    {
        tracing::info!(error = %e, "login refused: its key changed while it logged in");
        return Err(e);
    }
    // After the re-check: admission counts a login as proof the tenant is
    // active (see `Pools::below_min_idle`).
    let admitted = ctx.pools.admit(&tenant, login.generation)?;
    // A wait (a full pool, a PAUSE) the client can be killed out of, or
    // leave.
    let mut checkout = tokio::select! {
        biased;
        co = ctx.pools.acquire(&admitted) => co?,
        _ = kill.killed() => {
            return Err(ClientError::Terminated(kill.reason()));
        }
        _ = socket::peer_closed(stream, &ctx.timers) => {
            tracing::info!("client left while waiting for a server connection");
            return Ok(None);
        }
    };
    let wanted = ctx.pools.intern(&login.request.settings);
    let pending = match attach::client_settings(ctx, &mut checkout, &wanted).await {
        Ok(p) => p,
        Err(e) => {
            checkout.release(attach::release_after(&e)).await;
            return Err(e);
        }
    };
    cancel.set_backend(Some(attach::backend_key(&checkout.conn)));

    // The client sees the server's own parameters and a cancel key of ours.
    let mut hello = BytesMut::with_capacity(512);
    protocol::auth_ok(&mut hello);
    match pending {
        None => hello.extend_from_slice(checkout.conn.params.messages()),
        // Settings still queued are reported as the client asked for them,
        // as PgBouncer does; the server's own report follows when they run.
        Some(_) => checkout.conn.params.write_with(&mut hello, &wanted),
    }
    protocol::backend_key_data(&mut hello, cancel.pid, cancel.secret);
    protocol::ready_for_query(&mut hello, b'I');
    if stream.write_all(&hello).await.is_err() || stream.flush().await.is_err() {
        checkout.release(Release::Ready(TxStatus::Idle)).await;
        return Ok(None);
    }
    tracing::info!("session started");
    Ok(Some(Opened {
        live,
        kill,
        cancel,
        admitted,
        tenant,
        checkout,
        wanted,
        pending,
        early: login.early,
        started: Instant::now(),
    }))
}

/// The state of a key that logged in, read from the database.
async fn recheck_key(ctx: &Context, key: &crate::registry::KeyInfo) -> Result<(), ClientError> {
    let checks = ctx
        .registry
        .check_keys(&[(key.key_id, key.tenant.id)])
        .await
        .map_err(|e| {
            tracing::error!(error = %crate::error::with_causes(&e), "registry re-check failed");
            ClientError::RegistryUnavailable
        })?;
    match checks.get(&key.key_id).map(|c| c.state) {
        Some(crate::registry::KeyState::Valid) => Ok(()),
        Some(crate::registry::KeyState::TenantInactive) => {
            Err(ClientError::TenantInactive(key.tenant.name.clone()))
        }
        _ => Err(ClientError::InvalidKey),
    }
}

/// Sends a FATAL ErrorResponse, best effort: the client may be gone.
async fn tell(stream: &mut ClientStream, e: &ClientError) {
    send_fatal(stream, e.sqlstate(), &e.to_string(), e.hint()).await;
}

/// Sends a FATAL ErrorResponse and closes, best effort.
pub(crate) async fn send_fatal(
    stream: &mut ClientStream,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    let mut buf = BytesMut::new();
    protocol::error_response(&mut buf, Severity::Fatal, code, message, hint);
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

//! Makes registry changes take effect on live traffic, on every replica.
//!
//! - One dedicated connection `LISTEN`s on [`CHANNEL`]; the registry's
//!   triggers announce `<kind>:<id>` for every committed change that can end
//!   a login (key revoked/expired/deleted, user or tenant deactivated or
//!   deleted). Each notification invalidates the cache entries concerned
//!   (targeted: by key, user or tenant id), then every live session's key is
//!   re-checked in one query and sessions whose key is no longer valid are
//!   ended (`registry.on_revoke = terminate`), with the reason.
//!   Re-checking all sessions rather than only the notified ids keeps one
//!   code path for every kind of change (a deleted user's keys are gone,
//!   so they could not be looked up by user any more).
//! - The connection is pinged; if it drops, it is re-opened with
//!   exponential backoff, and since notifications may have been missed
//!   meanwhile the cache is cleared and sessions re-checked.
//! - Safety net: every `refresh_interval_ms` the cache is cleared (each key
//!   is read again at its next login), the pooled tenants are read again
//!   and live sessions are re-checked.
//! - Expiry: sessions whose key reaches `expires_at` (e.g. the end of a
//!   rotation's grace period) are ended at that moment: logins note their
//!   key's expiry and the housekeeping task wakes for the earliest one.
//! - `last_used_at` is flushed every `last_used_flush_ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::schema::CHANNEL;
use super::{KeyState, Tenant};
use crate::config::OnRevoke;
use crate::context::Context;
use crate::session::live::KillMode;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A silently dead connection (no RST) is noticed within this plus the timeout.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Floor for the configurable intervals, and between expiry-driven checks.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot connect: {0}")]
    Connect(tokio_postgres::Error),
    #[error("cannot connect: timed out")]
    ConnectTimeout,
    #[error("LISTEN failed: {0}")]
    Listen(tokio_postgres::Error),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("connection does not answer: {0}")]
    Ping(String),
}

/// Starts the watcher and the housekeeping task; they run until the process exits.
pub fn spawn(ctx: Arc<Context>) {
    tokio::spawn(listen_forever(ctx.clone()));
    tokio::spawn(housekeeping(ctx));
}

async fn listen_forever(ctx: Arc<Context>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let e = listen(&ctx, &mut backoff).await;
        metrics::counter!("pgtenant_registry_events_total", "kind" => "disconnect").increment(1);
        // Jitter keeps replicas from reconnecting in lockstep after a restart.
        let wait = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        tracing::warn!(error = %crate::error::with_causes(&e), retry_in_ms = wait.as_millis() as u64, "registry watch interrupted");
        ctx.timers.sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's lifetime: returns why it ended.
async fn listen(ctx: &Context, backoff: &mut Duration) -> WatchError {
    let connect_timeout = Duration::from_millis(ctx.cfg().backend.connect_timeout_ms);
    let mut pg = match ctx.cfg().backend_pg_config() {
        Ok(pg) => pg,
        Err(e) => return e.into(),
    };
    // Findable in pg_stat_activity, per replica.
    pg.application_name(format!("pgtenant watch {}", std::process::id()));
    let connect = crate::pool::control::connect(ctx.pools.endpoint(), &pg);
    let (client, mut conn) = match ctx.timers.timeout(connect_timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return WatchError::Connect(e),
        Err(_) => return WatchError::ConnectTimeout,
    };
    // The connection must be polled to deliver notifications (and to run
    // our own queries); a task forwards notifications until it ends.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return "watcher stopped".to_owned();
                    }
                }
                Ok(_) => {} // notices
                Err(e) => return e.to_string(),
            }
        }
        "closed by the server".to_owned()
    });
    let _stop = AbortOnDrop(driver.abort_handle());
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return WatchError::Listen(e);
    }
    *backoff = MIN_BACKOFF;
    tracing::info!("watching registry changes");
    // Whatever changed while nobody listened is caught up with here.
    resync(ctx).await;

    let mut ping = ctx
        .timers
        .interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(first) => {
                    // A burst (a dropped tenant's keys) is handled as one.
                    let mut batch = vec![first];
                    while let Ok(p) = rx.try_recv() {
                        batch.push(p);
                    }
                    on_notifications(ctx, &batch).await;
                }
                None => {
                    let why = (&mut driver).await.unwrap_or_else(|e| e.to_string());
                    return WatchError::Lost(why);
                }
            },
            _ = ping.tick() => {
                match ctx
                    .timers
                    .timeout(PING_TIMEOUT, client.simple_query("SELECT 1"))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return WatchError::Ping(e.to_string()),
                    Err(_) => return WatchError::Ping("timed out".into()),
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `tenant:<uuid>`, `user:<uuid>`, `key:<uuid>`.
fn parse(payload: &str) -> Option<(&'static str, Uuid)> {
    let (kind, id) = payload.split_once(':')?;
    let kind = match kind {
        "tenant" => "tenant",
        "user" => "user",
        "key" => "key",
        _ => return None,
    };
    Some((kind, id.parse().ok()?))
}

async fn on_notifications(ctx: &Context, batch: &[String]) {
    let mut tenants = Vec::new();
    for payload in batch {
        match parse(payload) {
            Some((kind, id)) => {
                match kind {
                    "tenant" => {
                        ctx.registry.invalidate_tenant(id);
                        tenants.push(id);
                    }
                    "user" => ctx.registry.invalidate_user(id),
                    _ => ctx.registry.invalidate_key(id),
                }
                metrics::counter!("pgtenant_registry_events_total", "kind" => kind).increment(1);
                tracing::debug!(kind, %id, "registry change");
            }
            None => {
                // Someone else NOTIFYs on our channel; be safe, not clever.
                metrics::counter!("pgtenant_registry_events_total", "kind" => "unknown")
                    .increment(1);
                tracing::warn!(
                    len = payload.len(),
                    "unexpected registry notification; cache cleared"
                );
                ctx.registry.clear_cache();
            }
        }
    }
    tenants.sort_unstable();
    tenants.dedup();
    // Retired pools too: a tenant whose current pool was reaped may have
    // sessions left on one.
    if !tenants.is_empty() {
        let pooled = ctx.pools.pooled_tenant_ids();
        tenants.retain(|id| pooled.binary_search(id).is_ok());
    }
    tenants_changed(ctx, &tenants).await;
    if ctx.cfg().registry.on_revoke == OnRevoke::Terminate {
        recheck_sessions(ctx).await;
    }
}

/// A tenant's idle connections close only if what they were opened as
/// changed: the tenant is gone or inactive, renamed, or has another role
/// or schema. A change of its metadata keeps them; so does a notification
/// that only claims a change, which any role that can connect to the
/// database can send (NOTIFY needs no privilege): it costs one registry
/// query, not another tenant's pooled connections.
async fn tenants_changed(ctx: &Context, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    match ctx.registry.tenants(ids).await {
        Ok(now) => ids.iter().for_each(|&id| compare_tenant(ctx, id, &now)),
        Err(e) => {
            tracing::warn!(error = %e, tenants = ids.len(), "cannot read changed tenants; their idle connections close");
            ids.iter().for_each(|&id| ctx.pools.forget_tenant(id));
        }
    }
}

/// Acts on a pooled tenant as the registry has it `now`.
fn compare_tenant(ctx: &Context, id: Uuid, now: &HashMap<Uuid, Tenant>) {
    let Some(t) = now.get(&id) else {
        // Its pools, retired ones too, open no connection again.
        ctx.pools.tenant_gone(id);
        return;
    };
    // Retired pools alone serve sessions of what the tenant was; they stay.
    let Some(pooled) = ctx.pools.pooled_tenant(id) else {
        return;
    };
    if !(t.active && (&t.name, &t.schema, &t.role) == (&pooled.name, &pooled.schema, &pooled.role))
    {
        ctx.pools.forget_tenant(id);
    }
}

/// After a (re)connect and on every refresh: trust nothing cached. The
/// pooled tenants are read again too, whatever `on_revoke` says: one
/// dropped or changed while no notification arrived (a lost one, or the
/// watcher reconnecting) is found here; with `keep`, no session re-check
/// would notice it.
async fn resync(ctx: &Context) {
    ctx.registry.clear_cache();
    let pooled = ctx.pools.pooled_tenant_ids();
    if !pooled.is_empty() {
        match ctx.registry.tenants(&pooled).await {
            Ok(now) => pooled.iter().for_each(|&id| compare_tenant(ctx, id, &now)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read pooled tenants; the next refresh tries again")
            }
        }
    }
    if ctx.cfg().registry.on_revoke == OnRevoke::Terminate {
        recheck_sessions(ctx).await;
    }
}

/// What a terminated session is told.
fn reason(state: KeyState, tenant: &str) -> String {
    match state {
        KeyState::Valid => unreachable!("valid keys keep their sessions"),
        KeyState::Revoked => "pgtenant: API key revoked".into(),
        KeyState::Expired => "pgtenant: API key expired".into(),
        KeyState::UserInactive => "pgtenant: the API key's user was deactivated".into(),
        KeyState::TenantInactive => format!("pgtenant: tenant \"{tenant}\" was deactivated"),
        KeyState::TenantDropped => format!("pgtenant: tenant \"{tenant}\" was dropped"),
    }
}

/// Re-checks the key of every live session in one query and ends the
/// sessions whose key is no longer valid.
async fn recheck_sessions(ctx: &Context) {
    let sessions = ctx.sessions.snapshot();
    let noted = ctx.registry.take_next_expiry();
    let mut pairs: Vec<(Uuid, Uuid)> = sessions.iter().map(|s| (s.key_id, s.tenant.id)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let checks = match ctx.registry.check_keys(&pairs).await {
        Ok(c) => c,
        Err(e) => {
            // Next notification or refresh tries again.
            tracing::warn!(error = %e, "cannot re-check live sessions");
            if let Some(t) = noted {
                ctx.registry.note_expiry(t);
            }
            return;
        }
    };
    // A login may have noted its expiry before its session was registered.
    if let Some(t) = noted.filter(|t| *t > SystemTime::now()) {
        ctx.registry.note_expiry(t);
    }
    for (key_id, check) in checks {
        let session = sessions.iter().find(|s| s.key_id == key_id);
        if check.state == KeyState::Valid {
            if let Some(t) = check.expires_at {
                // Valid past its expiry by this clock: the database's is
                // behind. Checked again in a second, not at the timer's
                // floor, for as long as the clocks differ.
                let now = SystemTime::now();
                ctx.registry.note_expiry(if t > now {
                    t
                } else {
                    now + Duration::from_secs(1)
                });
            }
            // A re-check that raced a reactivation may have closed it.
            if let Some(s) = session {
                ctx.pools.reopen_tenant(s.tenant.id);
            }
            continue;
        }
        let tenant = session.map(|s| s.tenant.name.clone()).unwrap_or_default();
        if let (Some(s), KeyState::TenantInactive | KeyState::TenantDropped) =
            (session, check.state)
        {
            // Its sessions end below; their connections close as they
            // come back instead of idling for a tenant nobody may use.
            ctx.pools.close_tenant(s.tenant.id);
        }
        let why = reason(check.state, &tenant);
        let n = ctx
            .sessions
            .kill_where(|s| s.key_id == key_id, KillMode::Now, &why);
        if n > 0 {
            metrics::counter!(
                "pgtenant_registry_sessions_terminated_total",
                "reason" => check.state.as_str()
            )
            .increment(n as u64);
            tracing::info!(
                %key_id,
                tenant,
                reason = check.state.as_str(),
                sessions = n,
                "terminated sessions"
            );
        }
    }
}

/// Monotonic instant for a wall-clock time (now, if it has passed).
fn instant_at(t: SystemTime) -> Instant {
    Instant::now() + t.duration_since(SystemTime::now()).unwrap_or_default()
}

async fn housekeeping(ctx: Arc<Context>) {
    let cfg = ctx.cfg().registry.clone();
    let every = |ms: u64| Duration::from_millis(ms).max(MIN_INTERVAL);
    let (refresh_every, flush_every) = (
        every(cfg.refresh_interval_ms),
        every(cfg.last_used_flush_ms),
    );
    // A late tick delays the next ones (no burst to catch up).
    let mut refresh = ctx
        .timers
        .interval_at(Instant::now() + refresh_every, refresh_every);
    let mut flush = ctx
        .timers
        .interval_at(Instant::now() + flush_every, flush_every);
    let mut last_expiry_check = Instant::now();
    loop {
        let next_expiry = ctx
            .registry
            .peek_next_expiry()
            // on_revoke may change on reload; the intervals only on restart.
            .filter(|_| ctx.cfg().registry.on_revoke == OnRevoke::Terminate)
            .map(|t| instant_at(t).max(last_expiry_check + MIN_INTERVAL));
        let expiry = async {
            match next_expiry {
                Some(at) => ctx.timers.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = refresh.tick() => {
                metrics::counter!("pgtenant_registry_events_total", "kind" => "refresh").increment(1);
                resync(&ctx).await;
            }
            _ = flush.tick() => match ctx.registry.flush_last_used().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(keys = n, "last_used_at written"),
                Err(e) => tracing::warn!(error = %e, "cannot write last_used_at; will retry"),
            },
            _ = expiry => {
                last_expiry_check = Instant::now();
                metrics::counter!("pgtenant_registry_events_total", "kind" => "expiry").increment(1);
                recheck_sessions(&ctx).await;
            }
            // An earlier expiry was noted: go round and sleep less.
            _ = ctx.registry.expiry_changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_strictly() {
        let id = Uuid::from_u128(7);
        assert_eq!(parse(&format!("key:{id}")), Some(("key", id)));
        assert_eq!(parse(&format!("tenant:{id}")), Some(("tenant", id)));
        assert_eq!(parse(&format!("user:{id}")), Some(("user", id)));
        assert_eq!(parse(&format!("role:{id}")), None);
        assert_eq!(parse("key:not-a-uuid"), None);
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn reasons_say_why() {
        assert_eq!(reason(KeyState::Revoked, "a"), "pgtenant: API key revoked");
        assert_eq!(
            reason(KeyState::TenantInactive, "acme"),
            "pgtenant: tenant \"acme\" was deactivated"
        );
        assert!(reason(KeyState::TenantDropped, "acme").contains("dropped"));
    }
}

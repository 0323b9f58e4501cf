//! A server connection for the client's next transaction: from the
//! tenant's pool, with the client's settings (sent ahead of its statement
//! when that is safe, run first otherwise; see [`Plan`]), and its cancel
//! key pointed at it.

use super::relay::Session;
use super::socket::peer_closed;
use super::upstream::Upstream;
use crate::cancel::BackendKey;
use crate::context::Context;
use crate::error::ClientError;
use crate::pool::{Checkout, Release, ServerConn, Settings};
use crate::protocol::TxStatus;
use crate::tls::ClientStream;

/// [`attach`] when nothing needs waiting for: an idle connection, and the
/// client's settings already on it or sent ahead. Otherwise what the
/// wait starts from: the connection if there was one.
pub(super) fn attach_now(
    s: &Session<'_>,
    wanted: &Settings,
    up: &mut Upstream,
) -> Result<Checkout, Option<Checkout>> {
    let co = s.ctx.pools.acquire_now(s.admitted).ok_or(None)?;
    match settings_plan(s.ctx, &co, wanted) {
        Plan::Nothing => {}
        Plan::SendAhead(sql) => up.hidden_query(sql, wanted),
        Plan::RunFirst(_) => return Err(Some(co)),
    }
    s.cancel.set_backend(Some(backend_key(&co.conn)));
    Ok(co)
}

/// [`attach`] for a client that may have to wait (for a connection, at a
/// PAUSE, for its settings to run): it can still be killed meanwhile, or
/// leave (None).
pub(super) async fn attach_killable(
    s: &Session<'_>,
    client: &ClientStream,
    wanted: &Settings,
    up: &mut Upstream,
    got: Option<Checkout>,
) -> Result<Option<Checkout>, ClientError> {
    tokio::select! {
        biased;
        r = attach(s, wanted, up, got) => r.map(Some),
        _ = s.kill.killed() => {
            Err(ClientError::Terminated(s.kill.reason()))
        }
        _ = peer_closed(client, &s.ctx.timers) => {
            tracing::info!("client left while waiting for a server connection");
            Ok(None)
        }
    }
}

/// A server connection for the next transaction, with the client's settings.
async fn attach(
    s: &Session<'_>,
    wanted: &Settings,
    up: &mut Upstream,
    got: Option<Checkout>,
) -> Result<Checkout, ClientError> {
    let mut co = match got {
        Some(co) => co,
        None => s.ctx.pools.acquire(s.admitted).await?,
    };
    match client_settings(s.ctx, &mut co, wanted).await {
        Ok(Some(sql)) => up.hidden_query(sql, wanted),
        Ok(None) => {}
        Err(e) => {
            co.release(release_after(&e)).await;
            return Err(e);
        }
    }
    s.cancel.set_backend(Some(backend_key(&co.conn)));
    Ok(co)
}

/// Gives `co` the client's settings. Returns SQL to send ahead of the
/// client's next message (no round trip) when that is safe (see [`Plan`]);
/// otherwise applies them now and waits, so that a bad value fails before
/// any statement of the client's runs.
pub async fn client_settings(
    ctx: &Context,
    co: &mut Checkout,
    wanted: &Settings,
) -> Result<Option<String>, ClientError> {
    let sql = match settings_plan(ctx, co, wanted) {
        Plan::Nothing => return Ok(None),
        Plan::SendAhead(sql) => return Ok(Some(sql)),
        Plan::RunFirst(sql) => sql,
    };
    run_settings(ctx, co, &sql, wanted).await
}

async fn run_settings(
    ctx: &Context,
    co: &mut Checkout,
    sql: &str,
    wanted: &Settings,
) -> Result<Option<String>, ClientError> {
    co.conn.run_settings(sql).await?;
    co.conn.settings_applied(wanted);
    ctx.pools.settings_accepted(wanted);
    Ok(None)
}

/// How to give back a connection whose settings failed: the server's own
/// refusal leaves it at ReadyForQuery; a lost, late or garbled answer
/// leaves it in a state nobody knows, to be closed.
pub fn release_after(e: &ClientError) -> Release {
    match e {
        ClientError::Backend(_) => Release::Ready(TxStatus::Idle),
        _ => Release::Dirty,
    }
}

/// What giving a connection the client's settings takes.
///
/// The settings go as one Query, which the server runs as one transaction:
/// one value it refuses (a text search configuration dropped since, a
/// `temp_buffers` after temporary tables) or a cancel that lands on it
/// undoes the whole batch, and the client's statement, sent behind it, would
/// still run. So the batch is sent ahead only when it adds values and the
/// server has taken each before: refused, it leaves the connection with
/// some of the client's own values and none of another client's. A batch
/// that undoes an earlier client's value (a RESET, or a SET over it) runs
/// first, answered before the client's statement is sent, at the cost of a
/// round trip; at login this also lets the client be told the values a
/// RESET gives, which only the server knows (another client's `DateStyle`
/// fails pgjdbc's login, and its `application_name` is not this client's to
/// see).
enum Plan {
    /// The common case: what the last client had.
    Nothing,
    SendAhead(String),
    RunFirst(String),
}

fn settings_plan(ctx: &Context, co: &Checkout, wanted: &Settings) -> Plan {
    match co.conn.settings_sql(wanted) {
        None => Plan::Nothing,
        Some((sql, false)) if ctx.pools.settings_accepted_before(wanted) => Plan::SendAhead(sql),
        Some((sql, _)) => Plan::RunFirst(sql),
    }
}

pub fn backend_key(c: &ServerConn) -> BackendKey {
    BackendKey {
        addr: c.addr,
        pid: c.pid,
        secret: c.secret,
    }
}

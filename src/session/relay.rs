//! The data path: raw protocol messages between one client and a server
//! connection, in one task, without blocking either direction.
//!
//! In session mode the client keeps one server connection throughout. In
//! transaction mode the connection is attached when a message arrives and
//! given back at ReadyForQuery(idle) with nothing in flight, unless the
//! client ran something with session effects (see [`super::pinning`]).
//! One read and one write per batch in each direction.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::attach::{attach_killable, attach_now, backend_key};
use super::downstream::Downstream;
use super::events::{Event, MAX_AWAITED, Writes, next_event, write_now};
use super::live::{KillMode, KillSwitch};
use super::offload;
use super::upstream::{Inspector, Upstream};
use super::wakes::{Side, Waits};
use crate::cancel::CancelKey;
use crate::config::PoolMode;
use crate::context::Context;
use crate::error::ClientError;
use crate::firewall::misread_under;
use crate::pool::{Admission, Checkout, Release, Settings};
use crate::protocol::{self, TxStatus, tag};
use crate::tls::ClientStream;

const READ_CHUNK: usize = super::buffers::CHUNK;
/// Transaction mode: replies up to this size are written to the client
/// before the connection goes back to the pool.
const WRITE_BEFORE_RELEASE: usize = 16 * 1024;
/// What an idle client's read buffer starts at (most queries fit).
const IDLE_CHUNK: usize = 1024;

/// Everything a relay needs besides the two connections.
pub struct Session<'a> {
    pub ctx: &'a Context,
    /// The client's place in its tenant's pool.
    pub admitted: &'a Admission,
    pub settings: &'a Settings,
    pub mode: PoolMode,
    pub inspector: &'a dyn Inspector,
    pub kill: &'a KillSwitch,
    /// The client's cancel key, to point at whichever server it uses.
    pub cancel: &'a CancelKey<'a>,
    /// The session's number (see `live::Registration::id`).
    pub id: u64,
    /// The client's span: not entered while relaying (see
    /// [`super::serve_client`]), only where something may log.
    pub span: &'a tracing::Span,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub transactions: u64,
    pub queries: u64,
}

/// How a relay ended: an error to tell the client (if it is still there).
pub struct Outcome {
    pub error: Option<ClientError>,
    pub stats: Stats,
}

/// `settings`: SQL from [`client_settings`] still to run on `first`.
pub async fn run(
    s: &Session<'_>,
    client: &mut ClientStream,
    first: Checkout,
    settings: Option<String>,
    early: BytesMut,
) -> Outcome {
    let mut up = Upstream::new(
        s.mode == PoolMode::Transaction,
        s.inspector.reads_text(),
        s.id,
        s.span.clone(),
    );
    up.inbuf = early;
    up.startup = (!s.settings.is_empty()).then(|| s.settings.clone());
    // The client's settings: its startup ones, then whatever it SETs.
    let mut wanted = s.settings.clone();
    // Buffers grow on first use: an idle client costs little memory.
    let mut down = Downstream::new(BytesMut::new());
    down.guard_reading = s.inspector.enforces();
    let mut server = Some(first);
    let mut stats = Stats::default();
    if let Some(sql) = settings {
        up.hidden_query(sql, &wanted);
    }
    if let Some(why) =
        super::pinning::settings_pin(&wanted).filter(|_| s.mode == PoolMode::Transaction)
    {
        up.pin(why);
    }
    let mut waits = Waits::default();
    let error = relay(
        s,
        client,
        &mut server,
        &mut up,
        &mut down,
        &mut stats,
        &mut wanted,
        &mut waits,
    )
    .await;
    stats.transactions = down.transactions;
    stats.queries = down.queries;
    if let Some(co) = server.take()
        && let Some((co, how)) = detach(s, co, &up, &down, true)
    {
        finish_detach(s, co, how).instrument(s.span.clone()).await;
    }
    s.ctx.buffers.give(down.buf);
    Outcome { error, stats }
}

#[allow(clippy::too_many_arguments)]
async fn relay(
    s: &Session<'_>,
    client: &mut ClientStream,
    server: &mut Option<Checkout>,
    up: &mut Upstream,
    down: &mut Downstream,
    stats: &mut Stats,
    wanted: &mut Settings,
    waits: &mut Waits,
) -> Option<ClientError> {
    let max = s.ctx.cfg().max_message_bytes;
    let mut kill_order: Option<(KillMode, &str)> = None;
    let mut flushed_at_cap = false;
    let mut big_message = false;
    let mut writes = Writes::default();
    loop {
        // Set by the reply scan, before the client's next Sync is read.
        up.unsynced |= std::mem::take(&mut down.sync_owed);
        if let Some((mode, reason)) = kill_order
            && (mode == KillMode::Now || idle(up, down))
        {
            flush_rest(s, client, down).await;
            return Some(ClientError::Terminated(reason.to_owned()));
        }
        if !up.terminated && up.has_message(max) {
            // Long texts are read off the loop first (see `offload`).
            // (Inside a COPY only its messages may come.)
            if offload::may_hold_long_text(&up.inbuf) && !down.copy_in {
                let skipping = up.skips_to_sync() || down.skipping_to_sync;
                match offload::read_ahead(s, client, up, max, skipping).await {
                    Ok(true) => {}
                    Ok(false) => return None, // the client left
                    Err(e) => {
                        flush_rest(s, client, down).await;
                        return Some(e);
                    }
                }
            }
            if server.is_none() {
                match up.prepare_locally(max, s.inspector, down) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Some(e),
                }
                // Usually a connection is idle and has the client's
                // settings: no future to build and poll.
                let attached = match attach_now(s, wanted, up) {
                    Ok(co) => Ok(Some(co)),
                    Err(got) => {
                        attach_killable(s, client, wanted, up, got)
                            .instrument(s.span.clone())
                            .await
                    }
                };
                match attached {
                    Ok(Some(co)) => *server = Some(co),
                    Ok(None) => return None, // the client left
                    Err(e) => return Some(e),
                }
                waits.disarm(Side::Server); // another socket
                writes.server_unflushed = false;
            }
            let co = server.as_mut().expect("attached above");
            if let Err(e) = up.process(max, s.inspector, down, &mut co.conn) {
                return Some(e);
            }
            // Not idle: whatever the messages were (some the proxy answers).
            waits.idle_in_transaction = None;
            // Past MAX_AWAITED the client is not read, and the server must
            // not sit on replies the proxy's own answers wait behind:
            // replies to extended-protocol messages wait for a Sync or
            // Flush, which may be unread behind the cap. One Flush (no
            // reply of its own) each time the cap is reached. (The queue
            // grows only here.)
            if down.expect.len() < MAX_AWAITED {
                flushed_at_cap = false;
            } else if !flushed_at_cap {
                up.out.extend_from_slice(super::upstream::FLUSH);
                flushed_at_cap = true;
            }
        }
        if up.terminated && up.out.is_empty() && down.settled() && down.scanned == 0 {
            return up.quit.take().map(Into::into);
        }
        // A COPY begun before the bad message waits for data that will not
        // come: end now (the connection, mid-copy, is closed).
        if up.quit.is_some() && down.copy_in {
            flush_rest(s, client, down).await;
            return up.quit.take().map(Into::into);
        }
        // A RESET gave the client's startup settings up (the proxy sets
        // them with SET; PostgreSQL keeps them as reset values): back on
        // the same connection once it is answered, before anything else.
        // Not in a failed transaction: after its ROLLBACK (which may undo
        // the RESET, or, to a savepoint, not).
        up.restore_startup |= std::mem::take(&mut down.restore_again);
        if up.restore_startup
            && server.is_some()
            && !up.terminated
            && !up.unsynced
            && up.out.is_empty()
            && down.settled()
            && down.status != TxStatus::Failed
        {
            match crate::pool::restore_sql(s.settings) {
                Some(sql) => {
                    up.restore_startup_settings(&sql, down);
                    // A Query: it drops the unnamed statement.
                    let co = server.as_mut().expect("checked above");
                    co.conn.statements.unnamed_owner = 0;
                }
                None => up.restore_startup = false,
            }
        }
        // Transaction mode: give the connection back between transactions.
        // A short reply is written to the client first: the client waits
        // on that, not on this. Written here, in this pass, it usually goes
        // at once, and the connection goes back in the same pass (no poll
        // and event just to learn that the write is done).
        let between = s.mode == PoolMode::Transaction
            && server.is_some()
            && up.pinned.is_none()
            && !up.unsynced
            && !down.unnamed_unbound
            && up.out.is_empty()
            && down.settled()
            && down.status == TxStatus::Idle;
        if between
            && down.scanned > 0
            && down.scanned <= WRITE_BEFORE_RELEASE
            && !writes.client_unflushed
            && write_now(client, down, &mut writes).is_err()
        {
            return None; // the client is gone
        }
        if between
            && (down.scanned == 0 || down.scanned > WRITE_BEFORE_RELEASE)
            && let Some(mut co) = server.take()
        {
            if up.settings_changed {
                // SET/RESET/set_config ran: carry the result to the next
                // connection. The client's statements are done: a cancel it
                // sends now (a timer racing the reply) must not hit this
                // read, as PostgreSQL ignores one that finds the session idle.
                s.cancel.set_backend(None);
                match co.conn.capture_settings(&up.custom_settings, wanted).await {
                    Ok(now) => {
                        // The server's report of such a change ends the
                        // session; nor may this read carry one to the next
                        // connection.
                        let misread = |(n, v): &&(String, String)| misread_under(n, v);
                        if down.guard_reading
                            && let Some((n, v)) = now.iter().find(misread)
                        {
                            let e = ClientError::ReadingChanged(n.clone(), v.clone());
                            co.release(Release::Dirty).await;
                            return Some(e);
                        }
                        *wanted = s.ctx.pools.intern(&now);
                        co.conn.settings_applied(wanted); // the shared copy
                        if let Some(why) = super::pinning::settings_pin(wanted) {
                            up.pin(why);
                        }
                    }
                    Err(e) => {
                        co.release(Release::Dirty).await;
                        return Some(e.into());
                    }
                }
                up.settings_changed = false;
                if up.pinned.is_some() {
                    // Kept: the client's cancels reach it again.
                    s.cancel.set_backend(Some(backend_key(&co.conn)));
                    *server = Some(co);
                    continue;
                }
            }
            // Settings queued for this connection go with it unsent: the
            // next one gets them computed afresh.
            up.drop_hidden();
            up.between_transactions();
            if let Some((co, how)) = detach(s, co, up, down, false) {
                finish_detach(s, co, how).instrument(s.span.clone()).await;
            }
            // A client between transactions holds no full-size buffers:
            // ten thousand idle clients would keep 16 KiB or more each.
            if down.buf.is_empty() {
                s.ctx.buffers.give(std::mem::take(&mut down.buf));
            }
            if up.inbuf.is_empty() && up.inbuf.capacity() > 2 * IDLE_CHUNK {
                up.inbuf = BytesMut::new();
            }
        }
        // Room to read into: the server side only while attached. The
        // client side small while no message is partly read, except in
        // session mode, where a client holds its server and its buffers.
        if server.is_some() {
            if down.buf.capacity() == 0 {
                down.buf = s.ctx.buffers.take();
            } else {
                reserve(&mut down.buf, READ_CHUNK);
            }
        }
        let busy = (server.is_some() && s.mode == PoolMode::Session) || !up.inbuf.is_empty();
        if big_message && up.inbuf.is_empty() && up.out.is_empty() {
            // Read out and passed on: both buffers give their room back.
            (up.inbuf, up.out) = (BytesMut::new(), BytesMut::new());
            big_message = false;
        } else if !up.inbuf.is_empty() {
            big_message |= reserve_message(&mut up.inbuf, max);
        }
        reserve(&mut up.inbuf, if busy { READ_CHUNK } else { IDLE_CHUNK });
        // After "when idle", still watched for "now".
        let watch_kill =
            (waits.kill_seen != Some(KillMode::Now)).then_some((s.kill, &s.ctx.sessions));
        // What the loop above decides once the client has the whole reply:
        // the end after Terminate, or giving the connection back between
        // transactions (not after each statement inside one).
        writes.report_done = up.terminated
            || (s.mode == PoolMode::Transaction
                && server.is_some()
                && up.pinned.is_none()
                && !up.unsynced
                && !down.unnamed_unbound
                && down.status == TxStatus::Idle);
        // A transaction the client leaves idle holds its connection, and
        // its locks: past the limit the session ends (its transaction
        // rolled back). Idle from when the client has the server's last
        // answer to its next whole message; an extended-protocol batch
        // without its Sync, or an unnamed statement not yet bound, holds
        // the connection too.
        let idle_ms = s.ctx.pools.idle_transaction_ms();
        if idle_ms == 0 {
            waits.idle_in_transaction = None; // (a reload turned it off)
        } else if server.is_some()
            && (down.status != TxStatus::Idle || up.unsynced || down.unnamed_unbound)
            && down.settled()
            && up.out.is_empty()
            && !up.has_message(max)
        {
            // From when the client has all of the reply (PostgreSQL counts
            // from its flush): the end of the write is reported.
            if down.scanned > 0 || writes.client_unflushed {
                writes.report_done = true;
                waits.idle_in_transaction = None;
            } else if waits.idle_in_transaction.is_none() {
                let limit = Duration::from_millis(idle_ms);
                waits.idle_in_transaction = Some(s.ctx.timers.sleep(limit));
            }
        } else {
            waits.idle_in_transaction = None;
        }
        match next_event(
            client,
            server.as_mut().map(|c| &mut *c.conn),
            up,
            down,
            watch_kill,
            waits,
            &mut writes,
        )
        .await
        {
            // A reload may have turned the limit off since the count began.
            Event::IdleInTransaction if s.ctx.pools.idle_transaction_ms() == 0 => {
                waits.idle_in_transaction = None;
            }
            Event::IdleInTransaction => {
                flush_rest(s, client, down).await;
                return Some(ClientError::IdleInTransaction);
            }
            Event::Killed => {
                kill_order = s.kill.order();
                waits.kill_seen = kill_order.map(|(mode, _)| mode);
            }
            Event::ServerRead(n) if n > 0 => {
                stats.bytes_out += n as u64;
                let co = server.as_mut().expect("read from an attached server");
                if let Err(e) = down.scan(&mut co.conn.statements, &mut co.conn.params) {
                    return Some(e);
                }
            }
            Event::ServerRead(_) | Event::ServerWriteFailed => {
                // Let the client see what the server said last (often its
                // FATAL), then report the loss unless the server did. The
                // connection is closed first: a client slow to read must
                // not hold its slot.
                if let Some(co) = server.take() {
                    co.release(Release::Dirty).await;
                }
                flush_rest(s, client, down).await;
                return (down.last_tag != tag::ERROR_RESPONSE).then_some(ClientError::BackendLost);
            }
            Event::ClientRead(n) if n > 0 => {
                stats.bytes_in += n as u64;
                if up.terminated {
                    up.inbuf.clear(); // nothing after a Terminate counts
                }
            }
            Event::ClientRead(_) | Event::ClientWriteFailed => return None,
            Event::ClientWritten | Event::ServerWritten => {}
        }
    }
}

/// Returns the connection to the pool: as is between transactions (done
/// here, without an await), after a full reset when the client leaves,
/// closed if it can't be proven clean. The last two are returned for
/// [`finish_detach`].
fn detach(
    s: &Session<'_>,
    co: Checkout,
    up: &Upstream,
    down: &Downstream,
    leaving: bool,
) -> Option<(Checkout, Release)> {
    s.cancel.set_backend(None);
    if !(up.out.is_empty() && down.settled()) || up.unsynced || down.sync_owed {
        return Some((co, Release::Dirty));
    }
    if leaving
        && (s.mode == PoolMode::Session
            || up.pinned.is_some()
            || up.settings_changed
            || down.status != TxStatus::Idle)
    {
        return Some((co, Release::Ready(down.status)));
    }
    co.release_idle();
    None
}

async fn finish_detach(s: &Session<'_>, co: Checkout, how: Release) {
    if how == Release::Dirty {
        // Something may still run on the server: stop it before closing.
        let key = backend_key(&co.conn);
        let (ep, timers) = (s.ctx.pools.endpoint().clone(), s.ctx.timers.clone());
        tokio::spawn(async move {
            let _ = crate::cancel::send_cancel(key, &ep, &timers).await;
        });
    }
    co.release(how).await;
}

/// Nothing in flight and no transaction open: a safe moment to end.
fn idle(up: &Upstream, down: &Downstream) -> bool {
    up.out.is_empty()
        && up.inbuf.is_empty()
        && !up.unsynced
        && down.settled()
        && down.status == TxStatus::Idle
}

/// A client message larger than a few reads grows the read buffer by
/// doubling, as any other, until half of it has come; then the buffer is
/// made its size, once, instead of doubling past it (up to twice
/// `max_message_bytes`, copying each size on the way). Room is never taken
/// ahead of what the client sent: a header alone claims nothing. True for
/// such a message: the relay gives the room back once it is passed on.
fn reserve_message(inbuf: &mut BytesMut, max: usize) -> bool {
    match protocol::header(inbuf, max) {
        Ok(Some(h)) if h.frame_len > 4 * READ_CHUNK => {
            if h.frame_len > inbuf.capacity() && inbuf.len() >= h.frame_len / 2 {
                // A chunk more: `reserve` must not double it for the last read.
                let mut sized = BytesMut::with_capacity(h.frame_len + READ_CHUNK);
                sized.extend_from_slice(inbuf);
                *inbuf = sized;
            }
            true
        }
        _ => false,
    }
}

/// Room to read about `chunk` bytes into `buf`. Inlined: it runs for both
/// buffers at every turn of the relay loop (−0.5 to −1 % instructions per
/// transaction in callgrind).
#[inline]
fn reserve(buf: &mut BytesMut, chunk: usize) {
    // Consumed bytes are skipped, not reused: each read lands past the last
    // one and walks through the allocation, a cold cache line every few
    // messages (hundreds of sessions' buffers don't fit in a core's cache).
    // An empty buffer that has walked an eighth of a chunk (half of the
    // small idle one) goes back to the front; asking for more than is left
    // does that and never allocates.
    let walk = (chunk / 8).max(IDLE_CHUNK / 2);
    if buf.is_empty() && buf.capacity() < chunk - walk {
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

/// Writes what the client may still get of its reply before the session
/// ends, for at most [`super::LAST_WORDS`]: a client that stopped reading
/// must not keep its server connection forever.
async fn flush_rest(s: &Session<'_>, client: &mut ClientStream, down: &mut Downstream) {
    let n = down.scanned;
    if n > 0 {
        let write = async {
            client.write_all(&down.buf[..n]).await?;
            client.flush().await
        };
        let _ = s.ctx.timers.timeout(super::LAST_WORDS, write).await;
        down.buf.advance(n);
        down.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_message_gets_its_room_once_when_half_of_it_came() {
        let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
        let len = 10 << 20;
        inbuf.extend_from_slice(b"Q");
        inbuf.extend_from_slice(&(len as i32 - 1).to_be_bytes());
        inbuf.extend_from_slice(b"SELECT ");
        // A header alone takes no room.
        assert!(reserve_message(&mut inbuf, 256 << 20));
        assert_eq!(inbuf.capacity(), READ_CHUNK);
        // Half of it: room for the rest, at once.
        inbuf.resize(len / 2, b' ');
        let cap = inbuf.capacity();
        assert!(reserve_message(&mut inbuf, 256 << 20));
        assert_eq!(inbuf.capacity(), len + READ_CHUNK, "was {cap}");
        assert_eq!(&inbuf[5..12], b"SELECT ");
        reserve(&mut inbuf, READ_CHUNK);
        assert_eq!(inbuf.capacity(), len + READ_CHUNK, "no doubling");
        // A small one changes nothing.
        let mut small = BytesMut::from(&b"Q\0\0\0\x09SELECT"[..]);
        assert!(!reserve_message(&mut small, 256 << 20));
    }
}

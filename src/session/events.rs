//! The relay's wait: every socket operation that can make progress, and
//! the session's kill switch, polled in one future with the task's waker.
//! Writes are applied in place; what needs the loop comes back as an
//! [`Event`].

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::Buf;

use super::downstream::Downstream;
use super::live::{KillSwitch, LiveSessions};
use super::socket::{Wire, send_ready};
use super::upstream::Upstream;
use super::wakes::{Side, Waits};
use crate::pool::ServerConn;
use crate::tls::ClientStream;

/// Stop reading a peer while this much is still waiting to be written to
/// the other one: backpressure instead of unbounded buffering.
pub(super) const HIGH_WATER: usize = 256 * 1024;
/// Replies awaited at most before the client is no longer read: messages
/// the proxy answers itself (a Close of a statement it keeps, a Parse it
/// has) cost the server nothing and so meet no backpressure there.
pub(super) const MAX_AWAITED: usize = 8 * 1024;
/// Writes what the client's reply socket takes now, without waiting: the
/// rest (if any) waits in `next_event`, which polls the write again with
/// the task's waker.
pub(super) fn write_now(
    client: &mut ClientStream,
    down: &mut Downstream,
    writes: &mut Writes,
) -> std::io::Result<()> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    send_reply(client, &mut cx, down, &mut writes.client_unflushed)
}

/// Writes as much of the scanned reply as the client takes and drops it
/// from the buffer.
#[inline]
pub(super) fn send_reply(
    client: &mut ClientStream,
    cx: &mut std::task::Context<'_>,
    down: &mut Downstream,
    unflushed: &mut bool,
) -> std::io::Result<()> {
    let n = send_ready(client, cx, &down.buf[..down.scanned], unflushed)?;
    down.buf.advance(n);
    down.scanned -= n;
    Ok(())
}

pub(super) enum Event {
    Killed,
    /// Bytes read; 0: the peer closed or the read failed (either ends the
    /// relay, and no io::Error rides along to be dropped at every event).
    ServerRead(usize),
    ClientRead(usize),
    /// All of the reply reached the client, and the loop asked to know.
    ClientWritten,
    /// The last of a leaving client's messages reached the server.
    ServerWritten,
    /// Successful writes are applied in place; only failure surfaces.
    ClientWriteFailed,
    ServerWriteFailed,
    /// The client left its transaction idle for too long.
    IdleInTransaction,
}

/// The state of writes between events.
#[derive(Default)]
pub(super) struct Writes {
    /// Written but still in the client's TLS buffers.
    pub(super) client_unflushed: bool,
    /// Written but still in the server connection's TLS buffers.
    pub(super) server_unflushed: bool,
    /// The loop decides something once the client has the whole reply.
    pub(super) report_done: bool,
}

/// Polls every I/O operation that can make progress and returns the first
/// that completes. Writes come first: what was just relayed leaves before
/// any read is looked at, and a transaction-mode reply reaches the client
/// without another poll of the server it is about to leave. Successful
/// writes need no decision and are applied in place (one wake-up, one
/// pass), but the end of a reply when the loop asked for it.
pub(super) async fn next_event(
    client: &mut ClientStream,
    mut server: Option<&mut ServerConn>,
    up: &mut Upstream,
    down: &mut Downstream,
    watch_kill: Option<(&KillSwitch, &LiveSessions)>,
    waits: &mut Waits,
    writes: &mut Writes,
) -> Event {
    poll_fn(|cx| {
        // The socket calls skip tokio's cooperative budget (see
        // `super::socket`): a unit per event keeps a relay that always has
        // data (a long COPY) from starving the runtime's other tasks.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let event = 'event: {
            if let Some((kill, live)) = watch_kill
                && waits.kill_worth_polling(live.kills_issued(), |seen| kill.ordered_beyond(seen))
                && waits
                    .polled(Side::Kill, kill.poll_order(cx, waits.kill_seen))
                    .is_ready()
            {
                break 'event Event::Killed;
            }
            if let Some(srv) = server.as_deref_mut()
                && (!up.out.is_empty() || writes.server_unflushed)
            {
                match send_ready(&mut srv.stream, cx, &up.out, &mut writes.server_unflushed) {
                    Ok(n) => up.out.advance(n),
                    Err(_) => break 'event Event::ServerWriteFailed,
                }
                // Nothing is read from a client after its Terminate or bad
                // message: when the last of what it sent has no reply
                // (CopyData outside a COPY, a Flush), this write is the
                // last event, and the loop must see it to end.
                if up.terminated
                    && up.out.is_empty()
                    && !writes.server_unflushed
                    && down.settled()
                    && down.scanned == 0
                {
                    break 'event Event::ServerWritten;
                }
            }
            if down.scanned > 0 || writes.client_unflushed {
                if send_reply(client, cx, down, &mut writes.client_unflushed).is_err() {
                    break 'event Event::ClientWriteFailed;
                }
                if down.scanned == 0 && !writes.client_unflushed && writes.report_done {
                    break 'event Event::ClientWritten;
                }
            }
            // Past the mark, still read while nothing is ready for the
            // client: a message held until whole (a ParameterStatus) is
            // larger than the mark.
            if let Some(srv) = server.as_deref_mut()
                && (down.buf.len() < HIGH_WATER || down.scanned == 0)
                && waits.worth_polling(Side::Server, || srv.stream.maybe_readable())
                && let Poll::Ready(r) =
                    waits.polled(Side::Server, srv.stream.poll_recv(cx, &mut down.buf))
            {
                break 'event Event::ServerRead(r.unwrap_or(0));
            }
            // Without a server, read only while no whole message waits: the
            // loop must attach one first. Backpressure is on what waits for
            // the server: the read buffer holds whole messages only until
            // the loop moves them out, and a message larger than the mark
            // must still be read whole (its size is capped by
            // `max_message_bytes`). Nor while replies pile up for a client
            // that doesn't read them. After a Terminate, not at all (what
            // it asked for still runs to its end, as on PostgreSQL), unless
            // the server waits for COPY data from it: its close must be
            // seen then (and aborts the copy, as on PostgreSQL); what else
            // comes is dropped.
            if (!up.terminated || down.copy_in)
                && up.out.len() < HIGH_WATER
                && down.buf.len() < HIGH_WATER
                && (down.expect.len() < MAX_AWAITED || down.copy_in)
                && (server.is_some() || !up.has_message(usize::MAX))
                && waits.worth_polling(Side::Client, || client.maybe_readable())
                && let Poll::Ready(r) =
                    waits.polled(Side::Client, client.poll_recv(cx, &mut up.inbuf))
            {
                break 'event Event::ClientRead(r.unwrap_or(0));
            }
            if let Some(t) = waits.idle_in_transaction.as_mut()
                && Pin::new(t).poll(cx).is_ready()
            {
                break 'event Event::IdleInTransaction;
            }
            return Poll::Pending;
        };
        coop.made_progress();
        Poll::Ready(event)
    })
    .await
}

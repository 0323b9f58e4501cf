//! The data path: raw protocol messages between one client and its server
//! connection, in one task, without blocking either direction.
//!
//! Bytes read from a peer land directly in the buffer that is written to
//! the other peer; the relay only reads 5-byte headers to know where
//! messages start. Client messages are forwarded once complete (the
//! firewall needs whole statements; Postgres buffers them the same way);
//! server messages stream through as they arrive, so a large result never
//! sits in memory. One read and one write per batch in each direction.

use bytes::{Buf, BytesMut};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;

use crate::error::ClientError;
use crate::pool::{Release, ServerConn};
use crate::protocol::{self, HEADER_LEN, TxStatus, tag};
use crate::tls::ClientStream;

/// Stop reading a peer while this much is still waiting to be written to
/// the other one: backpressure instead of unbounded buffering.
const HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// How a relay ended.
pub struct Outcome {
    pub release: Release,
    /// An error to send the client before closing, if it is still there.
    pub error: Option<ClientError>,
    pub stats: Stats,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub transactions: u64,
}

/// Client → server direction.
struct Upstream {
    buf: BytesMut,
    /// `buf[..ready]` holds complete, approved messages to write.
    ready: usize,
    /// Sync points (Query, Sync, FunctionCall) not yet answered.
    in_flight: u32,
    /// Extended-protocol messages sent after the last Sync.
    dangling: bool,
    terminated: bool,
}

/// Server → client direction.
struct Downstream {
    buf: BytesMut,
    /// `buf[..scanned]` may be written; the rest is a partial header.
    scanned: usize,
    /// Body bytes of the current message still to pass through.
    remaining: usize,
    last_tag: u8,
    status: TxStatus,
}

pub async fn run(
    client: &mut ClientStream,
    server: &mut ServerConn,
    max_message: usize,
    initial: BytesMut,
) -> Outcome {
    let mut up = Upstream {
        buf: BytesMut::with_capacity(READ_CHUNK),
        ready: 0,
        in_flight: 0,
        dangling: false,
        terminated: false,
    };
    let mut down = Downstream {
        buf: initial,
        scanned: 0,
        remaining: 0,
        last_tag: 0,
        status: TxStatus::Idle,
    };
    let mut stats = Stats::default();
    let end = |up: &Upstream, down: &Downstream, error, stats| {
        let clean = up.in_flight == 0 && !up.dangling && up.ready == up.buf.len();
        Outcome {
            release: if clean {
                Release::Ready(down.status)
            } else {
                Release::Dirty
            },
            error,
            stats,
        }
    };
    if let Err(e) = down.scan(&mut up, &mut stats) {
        return end(&up, &down, Some(e), stats);
    }

    loop {
        if up.terminated && up.ready == 0 && up.in_flight == 0 && down.scanned == 0 {
            return end(&up, &down, None, stats);
        }
        reserve(&mut down.buf);
        reserve(&mut up.buf);
        match next_event(client, server, &mut up, &mut down).await {
            Event::ServerRead(Ok(n)) if n > 0 => {
                stats.bytes_out += n as u64;
                if let Err(e) = down.scan(&mut up, &mut stats) {
                    return end(&up, &down, Some(e), stats);
                }
            }
            Event::ServerRead(_) | Event::ServerWriteFailed => {
                // Let the client see what the server said last (often its
                // FATAL), then report the loss unless the server did.
                flush_rest(client, &mut down).await;
                let error =
                    (down.last_tag != tag::ERROR_RESPONSE).then_some(ClientError::BackendLost);
                return Outcome {
                    release: Release::Dirty,
                    error,
                    stats,
                };
            }
            Event::ClientRead(Ok(n)) if n > 0 => {
                stats.bytes_in += n as u64;
                if let Err(e) = up.scan(max_message) {
                    return end(&up, &down, Some(e), stats);
                }
            }
            Event::ClientRead(_) => return end(&up, &down, None, stats),
            Event::ClientWrote(n) => {
                down.buf.advance(n);
                down.scanned -= n;
                if down.scanned == 0 && client.flush().await.is_err() {
                    return end(&up, &down, None, stats);
                }
            }
            Event::ClientWriteFailed => return end(&up, &down, None, stats),
        }
    }
}

enum Event {
    ServerRead(std::io::Result<usize>),
    ClientRead(std::io::Result<usize>),
    /// Bytes of `down.buf` written to the client.
    ClientWrote(usize),
    ClientWriteFailed,
    /// Successful server writes are applied in place; only failure surfaces.
    ServerWriteFailed,
}

/// Polls the four possible I/O operations at once and returns the first
/// that completes. Successful writes to the server are applied in place
/// (they need no decision), so the loop above stays about decisions.
async fn next_event(
    client: &mut ClientStream,
    server: &mut ServerConn,
    up: &mut Upstream,
    down: &mut Downstream,
) -> Event {
    poll_fn(|cx| {
        if down.buf.len() < HIGH_WATER
            && let Poll::Ready(r) = poll_read_buf(Pin::new(&mut server.stream), cx, &mut down.buf)
        {
            return Poll::Ready(Event::ServerRead(r));
        }
        while up.ready > 0 {
            match Pin::new(&mut server.stream).poll_write(cx, &up.buf[..up.ready]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    up.buf.advance(n);
                    up.ready -= n;
                }
                Poll::Ready(_) => return Poll::Ready(Event::ServerWriteFailed),
                Poll::Pending => break,
            }
        }
        if !up.terminated
            && up.buf.len() < HIGH_WATER
            && let Poll::Ready(r) = poll_read_buf(Pin::new(&mut *client), cx, &mut up.buf)
        {
            return Poll::Ready(Event::ClientRead(r));
        }
        if down.scanned > 0
            && let Poll::Ready(r) = Pin::new(&mut *client).poll_write(cx, &down.buf[..down.scanned])
        {
            return Poll::Ready(match r {
                Ok(n) if n > 0 => Event::ClientWrote(n),
                _ => Event::ClientWriteFailed,
            });
        }
        Poll::Pending
    })
    .await
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

async fn flush_rest(client: &mut ClientStream, down: &mut Downstream) {
    let n = down.scanned;
    if n > 0 {
        let _ = client.write_all(&down.buf[..n]).await;
        let _ = client.flush().await;
        down.buf.advance(n);
        down.scanned = 0;
    }
}

impl Upstream {
    /// Frames newly read client bytes; complete messages become writable.
    fn scan(&mut self, max_message: usize) -> Result<(), ClientError> {
        loop {
            let Some(h) = protocol::header(&self.buf[self.ready..], max_message)? else {
                return Ok(());
            };
            if self.buf.len() - self.ready < h.frame_len {
                return Ok(());
            }
            match h.tag {
                tag::TERMINATE => {
                    // Never forwarded: the server connection outlives the client.
                    self.buf.truncate(self.ready);
                    self.terminated = true;
                    return Ok(());
                }
                tag::QUERY | tag::SYNC | tag::FUNCTION_CALL => {
                    self.in_flight += 1;
                    self.dangling = false;
                }
                tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => {}
                _ => self.dangling = true,
            }
            self.ready += h.frame_len;
        }
    }
}

impl Downstream {
    /// Walks message boundaries in newly read server bytes.
    fn scan(&mut self, up: &mut Upstream, stats: &mut Stats) -> Result<(), ClientError> {
        let len = self.buf.len();
        let mut pos = self.scanned;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min(len - pos);
                pos += take;
                self.remaining -= take;
                if self.remaining > 0 {
                    break;
                }
            }
            // Server messages can be large (a 1 GB bytea): no size cap here,
            // they stream through.
            let h = match protocol::header(&self.buf[pos..], usize::MAX) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return Err(ClientError::BackendLost),
            };
            if h.tag == tag::READY_FOR_QUERY {
                let Some(&b) = self.buf.get(pos + HEADER_LEN) else {
                    break; // wait for the status byte
                };
                let status = TxStatus::from_byte(b).ok_or(ClientError::BackendLost)?;
                // Each return to idle ends a transaction, implicit or not.
                if status == TxStatus::Idle {
                    stats.transactions += 1;
                }
                self.status = status;
                up.in_flight = up.in_flight.saturating_sub(1);
            }
            self.last_tag = h.tag;
            pos += HEADER_LEN;
            self.remaining = h.frame_len - HEADER_LEN;
        }
        self.scanned = pos;
        Ok(())
    }
}

//! The relay's reads and writes.
//!
//! On plain TCP they go straight to the socket through tokio's `try_io`
//! and wait on readiness only when the socket has nothing (or no room).
//! `AsyncRead::poll_read` would first take the readiness path and tokio's
//! cooperative budget at every call (−6 to −7 % instructions per
//! transaction in callgrind without them); the relay takes the budget once
//! per event instead (see `relay::next_event`). TLS streams keep the
//! generic path.

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use crate::timer::Timers;
use crate::tls::{ClientStream, MaybeTls};

/// A connection the relay reads from and writes to.
pub trait Wire {
    /// Reads what is there into `buf`'s spare room (which must not be
    /// empty); 0 is the end of the stream.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Pushes out what the stream buffered (TLS records).
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// After `poll_recv` was Pending: false only if nothing can have come
    /// since (see [`super::wakes`]).
    fn maybe_readable(&self) -> bool;
}

impl<T: AsyncRead + AsyncWrite + Unpin> Wire for MaybeTls<T> {
    #[inline]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        match self {
            MaybeTls::Plain(s) => recv_plain(s, cx, buf),
            MaybeTls::Tls(s) => poll_read_buf(Pin::new(s.as_mut()), cx, buf),
        }
    }

    #[inline]
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            MaybeTls::Plain(s) => send_plain(s, cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            MaybeTls::Plain(_) => Poll::Ready(Ok(())), // TCP buffers nothing of ours
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    #[inline]
    fn maybe_readable(&self) -> bool {
        match self {
            // tokio sets the readiness before it wakes the reader; the
            // closure runs only if it is set, and does nothing.
            MaybeTls::Plain(s) => s.try_io(Interest::READABLE, || Ok(())).is_ok(),
            // A TLS read may wait on the socket's writability too (rustls
            // flushing its own records): always worth a poll.
            MaybeTls::Tls(_) => true,
        }
    }
}

fn recv_plain(s: &TcpStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    debug_assert!(buf.capacity() > buf.len(), "the relay reserves room first");
    let room = buf.capacity() - buf.len();
    poll_plain(s, cx, Interest::READABLE, room, || s.try_read_buf(buf))
}

fn send_plain(s: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    poll_plain(s, cx, Interest::WRITABLE, buf.len(), || s.try_write(buf))
}

/// `op` (a read or write of up to `full` bytes) while tokio has seen the
/// socket ready for it; waits for readiness when it would block.
#[inline]
fn poll_plain(
    s: &TcpStream,
    cx: &mut Context<'_>,
    interest: Interest,
    full: usize,
    mut op: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        let (mut tried, mut done) = (false, 0);
        // The outer try_io is there for its readiness tick, taken before
        // the operation: a short read has drained the socket (a short write
        // filled it), and reporting that as WouldBlock makes tokio forget
        // the readiness (unless an event came since), as its own poll_read
        // and poll_write do, so that the next call waits for epoll instead
        // of making a syscall that finds nothing.
        let r = s.try_io(interest, || {
            tried = true;
            done = op()?;
            if done > 0 && done < full {
                Err(ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => return Poll::Ready(Ok(done)),
            Err(_) if done > 0 => return Poll::Ready(Ok(done)),
            // Not ready as far as tokio knew (no syscall made; the common
            // case, told apart without `io::Error::kind`), or the syscall
            // found nothing.
            Err(e) if !tried || e.kind() == ErrorKind::WouldBlock => {
                ready!(if interest == Interest::READABLE {
                    s.poll_read_ready(cx)
                } else {
                    s.poll_write_ready(cx)
                })?
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Writes as much of `buf` as `w` takes now and returns how much. Once all
/// of it went, pushes out what TLS buffered (a no-op on plain TCP), again
/// at each call while that is pending (`unflushed`).
pub fn send_ready<W: Wire>(
    w: &mut W,
    cx: &mut Context<'_>,
    buf: &[u8],
    unflushed: &mut bool,
) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match w.poll_send(cx, &buf[n..]) {
            Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(k)) => n += k,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(n),
        }
    }
    *unflushed = match w.poll_push(cx) {
        Poll::Ready(r) => r.map(|()| false)?,
        Poll::Pending => true,
    };
    Ok(n)
}

/// Completes when the client closes its side (or its socket fails) while
/// nobody reads from it: a client that gives up waiting for a connection
/// (a full pool, a PAUSE) leaves at once instead of at RESUME, and what it
/// sent is not run (nothing of it had started).
pub async fn peer_closed(client: &ClientStream, timers: &Timers) {
    let tcp = match client {
        MaybeTls::Plain(s) => s,
        MaybeTls::Tls(s) => s.get_ref().0,
    };
    // Waits for data or the end; past a readiness left by reads that took
    // just what they asked for (the startup's), which it clears.
    let mut byte = [0u8; 1];
    match std::future::poll_fn(|cx| tcp.poll_peek(cx, &mut ReadBuf::new(&mut byte))).await {
        Ok(0) | Err(_) => return,
        Ok(_) => {}
    }
    // Data (a pipelined message, a Terminate, TLS's close_notify): the
    // relay's to read. tokio wakes nobody for a close behind unread data,
    // so the close is looked for now and then.
    loop {
        timers.sleep(CLOSE_RECHECK).await;
        if let Some(r) = tcp.ready(Interest::READABLE).now_or_never()
            && r.is_ok_and(|r| r.is_read_closed())
        {
            return;
        }
    }
}

/// How often [`peer_closed`] looks for a close behind unread data.
const CLOSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Takes `room` bytes, three per write, and buffers them like TLS: the
    /// first flush is Pending.
    struct Buffered {
        room: usize,
        written: Vec<u8>,
        flushes: usize,
    }

    impl Wire for Buffered {
        fn poll_recv(&mut self, _: &mut Context<'_>, _: &mut BytesMut) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }

        fn poll_send(&mut self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(3).min(self.room);
            if n == 0 {
                return Poll::Pending;
            }
            self.room -= n;
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn maybe_readable(&self) -> bool {
            true
        }

        fn poll_push(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            if self.flushes == 1 {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
    }

    #[test]
    fn sends_what_fits_and_flushes_until_out() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = Buffered {
            room: 5,
            written: Vec::new(),
            flushes: 0,
        };
        let mut unflushed = false;
        // Full socket after five bytes: no flush of a partial write.
        assert_eq!(
            send_ready(&mut w, &mut cx, b"1234567", &mut unflushed).unwrap(),
            5
        );
        assert_eq!((w.flushes, unflushed), (0, false));
        w.room = 10;
        assert_eq!(
            send_ready(&mut w, &mut cx, b"67", &mut unflushed).unwrap(),
            2
        );
        assert_eq!(w.written, b"1234567");
        // All written, TLS still holds records: flushed again next time.
        assert!(unflushed);
        assert_eq!(send_ready(&mut w, &mut cx, b"", &mut unflushed).unwrap(), 0);
        assert_eq!((w.flushes, unflushed), (2, false));
    }

    async fn pair() -> (
        MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>,
        TcpStream,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (MaybeTls::Plain(a.unwrap()), b.unwrap().0)
    }

    /// Short reads, a drained socket, data that comes later, the end.
    #[tokio::test]
    async fn plain_reads_wait_for_data_after_draining_the_socket() {
        let (mut ours, mut peer) = pair().await;
        let mut buf = BytesMut::with_capacity(64);
        peer.write_all(b"hello").await.unwrap();
        let n = std::future::poll_fn(|cx| ours.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
        // Nothing there: Pending, and woken when the peer writes.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(ours.poll_recv(&mut cx, &mut buf).is_pending());
        assert!(!ours.maybe_readable(), "drained");
        peer.write_all(b" world").await.unwrap();
        std::future::poll_fn(|cx| match &ours {
            MaybeTls::Plain(s) => s.poll_read_ready(cx),
            MaybeTls::Tls(_) => unreachable!(),
        })
        .await
        .unwrap();
        assert!(ours.maybe_readable(), "the peer wrote");
        let n = std::future::poll_fn(|cx| ours.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!((n, &buf[..]), (6, &b"hello world"[..]));
        // More than the room: the rest comes with the next read.
        let mut small = BytesMut::with_capacity(4);
        peer.write_all(b"0123456789").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            small.clear();
            let n = std::future::poll_fn(|cx| ours.poll_recv(cx, &mut small))
                .await
                .unwrap();
            assert!(n > 0 && n <= small.capacity());
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, b"0123456789");
        drop(peer);
        buf.clear();
        let n = std::future::poll_fn(|cx| ours.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(n, 0, "end of stream");
    }

    /// A wait that tokio refused for want of budget registered no waker:
    /// it must not count as armed, or the relay would never look again.
    #[tokio::test]
    async fn a_read_refused_for_want_of_budget_is_polled_again() {
        use super::super::wakes::{Side, Waits};
        let (mut ours, mut peer) = pair().await;
        let mut buf = BytesMut::with_capacity(64);
        let mut waits = Waits::default();
        std::future::poll_fn(|cx| {
            // Use up the task's budget, as a long stretch of events does.
            while let Poll::Ready(c) = tokio::task::coop::poll_proceed(cx) {
                c.made_progress();
            }
            let r = ours.poll_recv(cx, &mut buf);
            assert!(waits.polled(Side::Server, r).is_pending());
            Poll::Ready(())
        })
        .await;
        assert!(
            waits.worth_polling(Side::Server, || ours.maybe_readable()),
            "no waker is registered with the socket"
        );
        peer.write_all(b"x").await.unwrap();
        let n = std::future::poll_fn(|cx| ours.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!((n, &buf[..]), (1, &b"x"[..]));
    }

    /// Writes until the socket is full (Pending), then all of it arrives.
    #[tokio::test]
    async fn plain_writes_wait_for_room() {
        let (mut ours, mut peer) = pair().await;
        let block = vec![7u8; 64 * 1024];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut sent = 0;
        while let Poll::Ready(n) = ours.poll_send(&mut cx, &block) {
            sent += n.unwrap();
            assert!(sent < 1 << 30, "the socket never filled");
        }
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut all)
                .await
                .unwrap();
            all.len()
        });
        let mut more = 0;
        while more < block.len() {
            more += std::future::poll_fn(|cx| ours.poll_send(cx, &block[more..]))
                .await
                .unwrap();
        }
        drop(ours);
        assert_eq!(reader.await.unwrap(), sent + block.len());
    }

    /// A plain client socket whose peer is `pair`'s second half.
    fn plain(ours: MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>) -> TcpStream {
        match ours {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(_) => unreachable!(),
        }
    }

    /// Waits for `peer_closed` to complete (fails after 10 s).
    async fn sees_close(ours: &ClientStream, timers: &Timers, why: &str) {
        let watch = peer_closed(ours, timers);
        if tokio::time::timeout(std::time::Duration::from_secs(10), watch)
            .await
            .is_err()
        {
            panic!("the close was not seen: {why}");
        }
    }

    /// Open and quiet: pending; closed: done. Also past a readiness left
    /// by a read that took just what it asked for, and behind unread data.
    #[tokio::test]
    async fn peer_closed_sees_the_close_behind_stale_readiness_and_data() {
        let timers = Timers::new().unwrap();
        tokio::spawn(timers.driver().unwrap());

        let (ours, peer) = pair().await;
        let ours: ClientStream = MaybeTls::Plain(plain(ours));
        assert!(peer_closed(&ours, &timers).now_or_never().is_none());
        drop(peer);
        sees_close(&ours, &timers, "quiet").await;

        let (ours, mut peer) = pair().await;
        let mut tcp = plain(ours);
        peer.write_all(b"ab").await.unwrap();
        let mut two = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut two)
            .await
            .unwrap();
        let ours: ClientStream = MaybeTls::Plain(tcp);
        assert!(peer_closed(&ours, &timers).now_or_never().is_none());
        drop(peer);
        sees_close(&ours, &timers, "stale readiness").await;

        let (ours, mut peer) = pair().await;
        let tcp = plain(ours);
        peer.write_all(b"X\0\0\0\x04").await.unwrap();
        tcp.readable().await.unwrap();
        let ours: ClientStream = MaybeTls::Plain(tcp);
        assert!(peer_closed(&ours, &timers).now_or_never().is_none());
        drop(peer);
        sees_close(&ours, &timers, "behind data").await;
    }
}

//! The control plane's connections (registry, watcher, CLI): tokio-postgres
//! over the data plane's own TCP and TLS path ([`super::tls::negotiate`]),
//! so that both planes follow one policy, the password's included. Left to
//! itself, tokio-postgres answers a cleartext password request from any
//! server; here, as in `ServerConn::login`, that answer goes only to this
//! host or to a server whose certificate was verified.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{NoTls, NoTlsStream};
use tokio_postgres::{Client, Config, Error};

use super::server::Endpoint;
use super::tls::{self, BackendStream};
use crate::config::BackendTls;
use crate::protocol::tag;

pub type ControlConnection = tokio_postgres::Connection<ControlStream, NoTlsStream>;

/// Connects and logs in; TLS is negotiated below tokio-postgres, which
/// therefore runs with `sslmode=disable` on an already-secured stream.
pub async fn connect(ep: &Endpoint, pg: &Config) -> Result<(Client, ControlConnection), Error> {
    let mut pg = pg.clone();
    pg.ssl_mode(SslMode::Disable);
    pg.connect_raw(ControlStream::open(ep.clone()), NoTls).await
}

/// For deadpool: connects, and drives the connection on a task of its own.
pub struct PoolConnect(pub Endpoint);

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(&self, pg: &Config) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), Error>> {
        let pg = pg.clone();
        Box::pin(async move {
            let (client, conn) = connect(&self.0, &pg).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "registry connection closed");
                }
            });
            Ok((client, task))
        })
    }
}

type Opening = Pin<Box<dyn Future<Output = io::Result<(BackendStream, bool)>> + Send>>;

/// A backend stream that opens itself on first use (so that a failure to
/// connect reaches the caller as tokio-postgres's own I/O error) and
/// watches the login for a cleartext password request.
pub struct ControlStream {
    state: State,
    guard: PasswordGuard,
}

enum State {
    Opening(Opening),
    Open(BackendStream),
    Failed,
}

impl ControlStream {
    fn open(ep: Endpoint) -> ControlStream {
        let opening = async move {
            let tcp = TcpStream::connect((ep.host.as_str(), ep.port)).await?;
            crate::net::configure(&tcp);
            let loopback = tcp.peer_addr()?.ip().is_loopback();
            let verified = matches!(ep.tls.mode, BackendTls::VerifyCa | BackendTls::VerifyFull);
            let stream = tls::negotiate(&ep, tcp)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            Ok((stream, loopback || verified))
        };
        ControlStream {
            state: State::Opening(Box::pin(opening)),
            guard: PasswordGuard::new(),
        }
    }

    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut BackendStream>> {
        if let State::Opening(f) = &mut self.state {
            match ready!(f.as_mut().poll(cx)) {
                Ok((stream, cleartext_ok)) => {
                    self.guard.cleartext_ok = cleartext_ok;
                    self.state = State::Open(stream);
                }
                Err(e) => {
                    self.state = State::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.state {
            State::Open(s) => Poll::Ready(Ok(s)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection failed",
            ))),
        }
    }
}

impl AsyncRead for ControlStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream = ready!(this.poll_open(cx))?;
        let before = buf.filled().len();
        ready!(Pin::new(stream).poll_read(cx, buf))?;
        if !this.guard.done {
            this.guard.scan(&buf.filled()[before..])?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ControlStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_open(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_open(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Open(s) => Pin::new(s).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Reads the server's side of the login, message by message, until it is
/// over, and fails the read that carries a cleartext password request
/// where one may not be answered: tokio-postgres never sees it.
struct PasswordGuard {
    cleartext_ok: bool,
    done: bool,
    /// Type, length and the first four bytes of the body (the request code).
    head: [u8; 9],
    have: usize,
    /// Body bytes of the current message still to pass.
    skip: usize,
}

impl PasswordGuard {
    fn new() -> PasswordGuard {
        PasswordGuard {
            cleartext_ok: false,
            done: false,
            head: [0; 9],
            have: 0,
            skip: 0,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !self.done && !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            // The header first, then (for a request) its code.
            let want = if self.have < 5 { 5 } else { 9 };
            let n = (want - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < want {
                continue;
            }
            let len = u32::from_be_bytes(self.head[1..5].try_into().expect("4 bytes")) as usize;
            match (self.head[0], self.have) {
                // Sent before the login: the server's minor protocol version.
                (tag::NEGOTIATE_PROTOCOL_VERSION, 5) if len >= 4 => {
                    self.skip = len - 4;
                    self.have = 0;
                }
                (tag::AUTHENTICATION, 5) if len >= 8 => {}
                (tag::AUTHENTICATION, 9) => {
                    let code = i32::from_be_bytes(self.head[5..9].try_into().expect("4 bytes"));
                    if code == 0 {
                        self.done = true;
                    } else if code == 3 && !self.cleartext_ok {
                        self.done = true;
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            "the server asked for the password in cleartext over a \
                             connection that may be read or intercepted; use \
                             scram-sha-256 in pg_hba.conf, or backend.tls = verify-ca \
                             or verify-full",
                        ));
                    }
                    self.skip = len - 8;
                    self.have = 0;
                }
                // An error, or a malformed message: the login is over
                // either way, and tokio-postgres says why.
                _ => self.done = true,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(code: i32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Every way of cutting the bytes into reads gives the same verdict.
    fn verdict(bytes: &[u8], cleartext_ok: bool) -> Vec<bool> {
        (1..=bytes.len())
            .map(|step| {
                let mut g = PasswordGuard::new();
                g.cleartext_ok = cleartext_ok;
                bytes.chunks(step).all(|c| g.scan(c).is_ok())
            })
            .collect()
    }

    #[test]
    fn a_cleartext_request_fails_the_read_unless_allowed() {
        let mut login = vec![b'v', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0];
        login.extend(auth(3, b""));
        assert!(verdict(&login, false).iter().all(|ok| !ok));
        assert!(verdict(&login, true).iter().all(|ok| *ok));
    }

    #[test]
    fn proofs_of_the_password_pass() {
        let mut scram = auth(10, b"SCRAM-SHA-256\0\0");
        scram.extend(auth(11, b"r=abc,s=def,i=4096"));
        scram.extend(auth(12, b"v=xyz"));
        scram.extend(auth(0, b""));
        assert!(verdict(&scram, false).iter().all(|ok| *ok));
        assert!(verdict(&auth(5, b"salt"), false).iter().all(|ok| *ok));
    }

    #[test]
    fn the_guard_stops_once_the_login_is_over() {
        // After AuthenticationOk the stream is the session's; a row that
        // happens to look like a request is data.
        let mut ok = auth(0, b"");
        ok.extend(auth(3, b""));
        assert!(verdict(&ok, false).iter().all(|ok| *ok));
        let mut refused = vec![b'E', 0, 0, 0, 5, 0];
        refused.extend(auth(3, b""));
        assert!(verdict(&refused, false).iter().all(|ok| *ok));
        // A request too short to hold its code: malformed, for
        // tokio-postgres to refuse; nothing after it is read as a request.
        let mut short = vec![b'R', 0, 0, 0, 4];
        short.extend(auth(3, b""));
        assert!(verdict(&short, false).iter().all(|ok| *ok));
    }
}

//! The control plane's connections (registry, watcher, CLI): tokio-postgres,
//! under the data plane's TLS policy (`backend.tls`, its verifier), with
//! SCRAM bound to the TLS channel where the server offers it. Left to
//! itself, tokio-postgres answers a cleartext password request from any
//! server; here, as in `ServerConn::login`, that answer goes only to this
//! host or to a server whose certificate was verified: a guard reads the
//! server's side of the login, in the clear or above TLS.

mod guard;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Config, Error};
use tokio_postgres_rustls::MakeRustlsConnect;

use self::guard::PasswordGuard;
use super::server::Endpoint;
use crate::config::BackendTls;

pub type ControlConnection = tokio_postgres::Connection<ControlStream, Guarded>;
type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<ControlStream>>::TlsConnect;
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<ControlStream>>::Stream;

/// Connects and logs in.
pub async fn connect(ep: &Endpoint, pg: &Config) -> Result<(Client, ControlConnection), Error> {
    let mut pg = pg.clone();
    pg.ssl_mode(match ep.tls.mode {
        BackendTls::Disable => SslMode::Disable,
        BackendTls::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let tls = ControlTls {
        connect: ep.tls.control_tls().map(|mut m| {
            match <MakeRustlsConnect as MakeTlsConnect<ControlStream>>::make_tls_connect(
                &mut m, &ep.host,
            ) {
                Ok(c) => c,
                Err(never) => match never {},
            }
        }),
        verified: matches!(ep.tls.mode, BackendTls::VerifyCa | BackendTls::VerifyFull),
    };
    pg.connect_raw(ControlStream::open(ep), tls).await
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

type Opening = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// The TCP connection, opened on first use (so that a failure to connect
/// reaches the caller as tokio-postgres's own I/O error), its login
/// watched while it is in the clear.
pub struct ControlStream {
    state: State,
    guard: PasswordGuard,
    loopback: bool,
}

enum State {
    Opening(Opening),
    Open(TcpStream),
    Failed,
}

impl ControlStream {
    fn open(ep: &Endpoint) -> ControlStream {
        let (host, port) = (ep.host.clone(), ep.port);
        let opening = async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            crate::net::configure(&tcp);
            Ok(tcp)
        };
        ControlStream {
            state: State::Opening(Box::pin(opening)),
            // Set once the peer is known (loopback).
            guard: PasswordGuard::new(false, ep.tls.mode != BackendTls::Disable),
            loopback: false,
        }
    }

    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TcpStream>> {
        if let State::Opening(f) = &mut self.state {
            match ready!(f.as_mut().poll(cx)) {
                Ok(tcp) => {
                    self.loopback = tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback());
                    self.guard.cleartext_ok = self.loopback;
                    self.state = State::Open(tcp);
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
        ready!(this.poll_open(cx))?;
        let State::Open(stream) = &mut this.state else {
            unreachable!("opened above")
        };
        this.guard.read(stream, cx, buf)
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

/// The TLS handshake tokio-postgres asks for after the server's 'S',
/// with the policy's verifier; its stream carries a guard of its own.
pub struct ControlTls {
    /// None with `backend.tls = disable`: never asked.
    connect: Option<RustlsConnect>,
    verified: bool,
}

impl TlsConnect<ControlStream> for ControlTls {
    type Stream = Guarded;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Guarded>>;

    fn connect(self, stream: ControlStream) -> Self::Future {
        Box::pin(async move {
            let connect = self
                .connect
                .ok_or_else(|| io::Error::other("backend.tls = disable"))?;
            let cleartext_ok = stream.loopback || self.verified;
            let inner = connect.connect(stream).await?;
            Ok(Guarded {
                inner,
                guard: PasswordGuard::new(cleartext_ok, false),
            })
        })
    }
}

/// The TLS stream, its login watched.
pub struct Guarded {
    inner: RustlsStream,
    guard: PasswordGuard,
}

impl TlsStream for Guarded {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.guard.read(&mut this.inner, cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

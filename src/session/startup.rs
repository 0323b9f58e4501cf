//! Everything before authentication: SSLRequest/GSSENCRequest negotiation,
//! CancelRequest, protocol version.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::TlsMode;
use crate::context::Context;
use crate::error::ClientError;
use crate::protocol::{
    self,
    startup::{Params, StartupError, StartupPacket, read_startup},
};
use crate::tls::ClientStream;

pub enum Hello {
    Cancel {
        pid: i32,
        secret: i32,
    },
    Startup {
        stream: ClientStream,
        params: Params,
    },
}

pub enum Failed {
    /// The peer went away or broke TLS: nobody to tell.
    Silent,
    Tell(ClientStream, ClientError),
}

pub async fn negotiate(ctx: &Context, mut tcp: TcpStream) -> Result<Hello, Failed> {
    let mut offered_tls = false;
    loop {
        let packet = match read_startup(&mut tcp).await {
            Ok(p) => p,
            Err(StartupError::Io(_)) => return Err(Failed::Silent),
            Err(e) => return Err(Failed::Tell(ClientStream::Plain(tcp), e.into())),
        };
        match packet {
            StartupPacket::SslRequest if !offered_tls => {
                offered_tls = true;
                let Some(acceptor) = ctx.tls.load().as_ref().clone() else {
                    tcp.write_all(b"N").await.map_err(|_| Failed::Silent)?;
                    continue;
                };
                // Boxed: the handshake's state would otherwise sit in every
                // session's future for as long as it lives.
                return Box::pin(start_tls(ctx, tcp, acceptor)).await;
            }
            StartupPacket::GssEncRequest => {
                tcp.write_all(b"N").await.map_err(|_| Failed::Silent)?;
            }
            p => return finish(ctx, ClientStream::Plain(tcp), p).await,
        }
    }
}

async fn start_tls(
    ctx: &Context,
    mut tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<Hello, Failed> {
    tcp.write_all(b"S").await.map_err(|_| Failed::Silent)?;
    let tls = acceptor.accept(tcp).await.map_err(|e| {
        tracing::debug!(error = %e, "TLS handshake failed");
        Failed::Silent
    })?;
    let mut stream = ClientStream::Tls(Box::new(tls));
    match read_startup(&mut stream).await {
        Ok(p) => finish(ctx, stream, p).await,
        Err(StartupError::Io(_)) => Err(Failed::Silent),
        Err(e) => Err(Failed::Tell(stream, e.into())),
    }
}

async fn finish(
    ctx: &Context,
    mut stream: ClientStream,
    p: StartupPacket,
) -> Result<Hello, Failed> {
    match p {
        StartupPacket::Cancel { pid, secret } => Ok(Hello::Cancel { pid, secret }),
        StartupPacket::Startup { minor, mut params } => {
            if ctx.cfg().tls.mode == TlsMode::Require && !stream.is_tls() {
                return Err(Failed::Tell(stream, ClientError::TlsRequired));
            }
            // Newer clients may ask for 3.x or send `_pq_.` extensions:
            // answer that we speak 3.0 without them, as Postgres does.
            let unknown: Vec<String> = params
                .0
                .iter()
                .filter(|(k, _)| k.starts_with("_pq_."))
                .map(|(k, _)| k.clone())
                .collect();
            if minor > 0 || !unknown.is_empty() {
                params.0.retain(|(k, _)| !k.starts_with("_pq_."));
                let mut buf = BytesMut::new();
                let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
                protocol::negotiate_protocol_version(&mut buf, 0, &names);
                stream.write_all(&buf).await.map_err(|_| Failed::Silent)?;
            }
            Ok(Hello::Startup { stream, params })
        }
        StartupPacket::SslRequest | StartupPacket::GssEncRequest => Err(Failed::Tell(
            stream,
            StartupError::Malformed("encryption requested twice").into(),
        )),
    }
}

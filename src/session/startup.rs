//! Everything before authentication: SSLRequest/GSSENCRequest negotiation,
//! direct TLS, CancelRequest, protocol version.

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
        /// What the client sent after its startup packet without waiting
        /// for an answer (the start of its password message, say).
        early: BytesMut,
    },
}

pub enum Failed {
    /// The peer went away or broke TLS: nobody to tell.
    Silent,
    Tell(ClientStream, ClientError),
}

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

pub async fn negotiate(ctx: &Context, mut tcp: TcpStream) -> Result<Hello, Failed> {
    // PostgreSQL 17's direct TLS (`sslnegotiation=direct`): a ClientHello
    // where a startup packet would be (no startup packet starts with 0x16:
    // its length would be over 369 MB). Looked for only when TLS is on, at
    // the cost of one peek per connection.
    if let Some(acceptor) = ctx.tls.load().as_ref().clone() {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(1) if first[0] == TLS_HANDSHAKE => {
                return Box::pin(start_tls(ctx, tcp, acceptor, Tls::Direct)).await;
            }
            Ok(0) | Err(_) => return Err(Failed::Silent),
            Ok(_) => {}
        }
    }
    let (mut offered_tls, mut offered_gss) = (false, false);
    let mut buf = BytesMut::new();
    loop {
        let packet = match read_startup(&mut tcp, &mut buf).await {
            Ok(p) => p,
            Err(e) if unanswered(&e) => return Err(Failed::Silent),
            Err(e) => return Err(Failed::Tell(ClientStream::Plain(tcp), e.into())),
        };
        match packet {
            StartupPacket::SslRequest if !offered_tls => {
                offered_tls = true;
                let acceptor = ctx.tls.load().as_ref().clone();
                if acceptor.is_none() {
                    tcp.write_all(b"N").await.map_err(|_| Failed::Silent)?;
                }
                if !buf.is_empty() {
                    return Err(sent_ahead(tcp, "SSL request"));
                }
                let Some(acceptor) = acceptor else {
                    continue;
                };
                // Boxed: the handshake's state would otherwise sit in every
                // session's future for as long as it lives.
                return Box::pin(start_tls(ctx, tcp, acceptor, Tls::Requested)).await;
            }
            StartupPacket::GssEncRequest if !offered_gss => {
                offered_gss = true;
                tcp.write_all(b"N").await.map_err(|_| Failed::Silent)?;
                if !buf.is_empty() {
                    return Err(sent_ahead(tcp, "GSSAPI encryption request"));
                }
            }
            p => return finish(ctx, ClientStream::Plain(tcp), p, buf).await,
        }
    }
}

/// Bytes sent after an SSLRequest or GSSENCRequest, before its answer,
/// were not encrypted, and may be a man in the middle's, to be taken for
/// the client's once encrypted: refused, as PostgreSQL refuses them after
/// its 'N'. Where the answer would be 'S' the refusal comes instead of it
/// (PostgreSQL 14 to 16 fail the handshake that follows; 17 takes such
/// bytes for the start of the handshake, which the proxy does not).
fn sent_ahead(tcp: TcpStream, request: &'static str) -> Failed {
    Failed::Tell(
        ClientStream::Plain(tcp),
        StartupError::UnencryptedAhead(request).into(),
    )
}

/// A peer gone, or a CancelRequest of the wrong length: PostgreSQL
/// answers neither (a cancel has no reply to carry an error).
fn unanswered(e: &StartupError) -> bool {
    if let StartupError::BadCancel(_) = e {
        tracing::debug!(error = %e, "startup packet refused");
    }
    matches!(e, StartupError::Io(_) | StartupError::BadCancel(_))
}

/// How the client started TLS.
#[derive(PartialEq, Eq)]
enum Tls {
    /// SSLRequest, answered with `S`.
    Requested,
    /// A ClientHello straight away.
    Direct,
}

async fn start_tls(
    ctx: &Context,
    mut tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    how: Tls,
) -> Result<Hello, Failed> {
    if how == Tls::Requested {
        tcp.write_all(b"S").await.map_err(|_| Failed::Silent)?;
    }
    let tls = acceptor.accept(tcp).await.map_err(|e| {
        tracing::debug!(error = %e, "TLS handshake failed");
        Failed::Silent
    })?;
    // As PostgreSQL: direct TLS only for a client that named the protocol
    // in ALPN, so that a TLS connection made for another service (an
    // HTTPS request sent here) is not taken for a PostgreSQL one.
    let alpn = tls.get_ref().1.alpn_protocol() == Some(b"postgresql".as_slice());
    let mut stream = ClientStream::Tls(Box::new(tls));
    if how == Tls::Direct && !alpn {
        let e = StartupError::Malformed(
            "direct TLS connection without the ALPN protocol \"postgresql\"",
        );
        return Err(Failed::Tell(stream, e.into()));
    }
    let mut buf = BytesMut::new();
    match read_startup(&mut stream, &mut buf).await {
        Ok(p) => finish(ctx, stream, p, buf).await,
        Err(e) if unanswered(&e) => Err(Failed::Silent),
        Err(e) => Err(Failed::Tell(stream, e.into())),
    }
}

async fn finish(
    ctx: &Context,
    mut stream: ClientStream,
    p: StartupPacket,
    early: BytesMut,
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
                .iter()
                .filter(|(k, _)| k.starts_with("_pq_."))
                .map(|(k, _)| k.to_owned())
                .collect();
            if minor > 0 || !unknown.is_empty() {
                params.retain(|k| !k.starts_with("_pq_."));
                let mut buf = BytesMut::new();
                let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
                protocol::negotiate_protocol_version(&mut buf, &names);
                stream.write_all(&buf).await.map_err(|_| Failed::Silent)?;
            }
            // Nearly always nothing: the read buffer goes now, not with
            // the session.
            let early = if early.is_empty() {
                BytesMut::new()
            } else {
                early
            };
            Ok(Hello::Startup {
                stream,
                params,
                early,
            })
        }
        // Asked again: PostgreSQL takes the code for a protocol version.
        StartupPacket::SslRequest => Err(Failed::Tell(
            stream,
            StartupError::UnsupportedVersion(1234, 5679).into(),
        )),
        StartupPacket::GssEncRequest => Err(Failed::Tell(
            stream,
            StartupError::UnsupportedVersion(1234, 5680).into(),
        )),
    }
}

//! Authentication: the API key comes from the startup options or as the
//! password; its SHA-256 is looked up in the registry.

pub mod key;
pub mod known;
pub mod logins;
pub mod options;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::meters::LoginOutcome;
use crate::context::Context;
use crate::error::ClientError;
use crate::protocol::startup::{Params, StartupError};
use crate::protocol::{self, tag};
use crate::registry::KeyInfo;
use crate::tls::ClientStream;
pub use options::ClientRequest;

/// Longest password message we accept; keys are 47 bytes.
const MAX_PASSWORD_MSG: usize = 1024;

pub struct Login {
    pub key: Arc<KeyInfo>,
    pub request: ClientRequest,
    /// The registry's [`generation`](crate::registry::Registry::generation)
    /// before the key was looked up.
    pub generation: u64,
    /// What the client sent behind its password (or behind its startup
    /// packet, the key given there), not waiting for the answer: its first
    /// messages, for the relay.
    pub early: BytesMut,
}

pub async fn authenticate(
    ctx: &Context,
    stream: &mut ClientStream,
    params: &Params,
    early: BytesMut,
    peer: SocketAddr,
) -> Result<Login, ClientError> {
    let request = options::split(params)?;
    secret_may_travel(ctx, stream, peer)?;
    let (key, early) = match &request.key {
        Some(k) => (k.clone(), early),
        None => ask_password(stream, early).await?,
    };
    let generation = ctx.registry.generation();
    let hash = key::is_well_formed(&key).then(|| key::hash(&key));
    let cached = hash.and_then(|h| ctx.registry.cached(&h));
    let info = match (cached, hash) {
        (Some(info), _) => usable(info),
        // A key that logged in before is no guess: it skips the throttle
        // (see `known`), and is forgotten if it no longer works.
        (None, Some(h)) if ctx.known_keys.contains(&h) => {
            let info = check_key(ctx, &key).await;
            if matches!(info, Err(ClientError::InvalidKey)) {
                ctx.known_keys.remove(&h);
            }
            info
        }
        (None, _) => {
            // A source that failed too often is refused unseen; a wrong key
            // costs it a token.
            let ticket = throttle::gate(ctx, peer).await?;
            let info = check_key(ctx, &key).await;
            ticket.settle(matches!(info, Err(ClientError::InvalidKey)));
            if let (Ok(_), Some(h)) = (&info, hash) {
                ctx.known_keys.add(h);
            }
            info
        }
    };
    ctx.meters.get().login(match &info {
        Ok(_) => LoginOutcome::Ok,
        Err(ClientError::TenantInactive(_)) => LoginOutcome::TenantInactive,
        Err(ClientError::RegistryUnavailable) => LoginOutcome::RegistryError,
        Err(_) => LoginOutcome::InvalidKey,
    });
    Ok(Login {
        key: info?,
        request,
        generation,
        early,
    })
}

/// A key (or the admin password) crosses the network in the clear
/// without TLS, as a password or in the startup options alike: refused
/// from a non-loopback address unless `auth.allow_plaintext_password`, so
/// that the client learns to fix its `sslmode` before its key is used.
pub(crate) fn secret_may_travel(
    ctx: &Context,
    stream: &ClientStream,
    peer: SocketAddr,
) -> Result<(), ClientError> {
    let encrypted = stream.is_tls() || on_loopback(peer.ip());
    if encrypted || ctx.cfg().auth.allow_plaintext_password {
        Ok(())
    } else {
        Err(ClientError::PlaintextPassword)
    }
}

/// Canonical first: on a dual-stack listener (`[::]`) 127.0.0.1 arrives as
/// ::ffff:127.0.0.1, which is not `::1`.
fn on_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

pub(crate) async fn check_key(ctx: &Context, key: &str) -> Result<Arc<KeyInfo>, ClientError> {
    if key.is_empty() {
        return Err(ClientError::MissingKey);
    }
    if !key::is_well_formed(key) {
        return Err(ClientError::InvalidKey);
    }
    let info = ctx
        .registry
        .lookup(&key::hash(key))
        .await
        .map_err(|e| {
            tracing::error!(error = %crate::error::with_causes(&e), "registry lookup failed");
            ClientError::RegistryUnavailable
        })?
        .ok_or(ClientError::InvalidKey)?;
    usable(info)
}

fn usable(info: Arc<KeyInfo>) -> Result<Arc<KeyInfo>, ClientError> {
    if !info.tenant.active {
        return Err(ClientError::TenantInactive(info.tenant.name.clone()));
    }
    Ok(info)
}

/// AuthenticationCleartextPassword, then the PasswordMessage; and what
/// came behind it in the same reads.
pub(crate) async fn ask_password(
    stream: &mut ClientStream,
    sent: BytesMut,
) -> Result<(String, BytesMut), ClientError> {
    let mut buf = BytesMut::with_capacity(64);
    protocol::auth_cleartext(&mut buf);
    let io = |_| ClientError::MissingKey;
    stream.write_all(&buf).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    buf.clear();
    // What came with the startup packet, unasked: the password message's
    // first bytes, or all of it.
    buf.extend_from_slice(&sent);
    // psql hangs up here to prompt for a password and reconnects: EOF is normal.
    let h = loop {
        if let Some(h) = protocol::header(&buf, MAX_PASSWORD_MSG)?
            && buf.len() >= h.frame_len
        {
            break h;
        }
        if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(ClientError::MissingKey);
        }
    };
    if h.tag != tag::PASSWORD {
        // As PostgreSQL answers it: the client skipped its turn.
        return Err(StartupError::Malformed("expected a password message").into());
    }
    // Most clients wait for the answer: nothing to keep, nothing to split.
    let early = if buf.len() > h.frame_len {
        buf.split_off(h.frame_len)
    } else {
        BytesMut::new()
    };
    let body = &buf[protocol::HEADER_LEN..h.frame_len];
    let pw = protocol::read_cstr(body).map(|(s, _)| s).unwrap_or(body);
    // A non-UTF-8 password can't be a key; treat it like a wrong one.
    let pw = String::from_utf8(pw.to_vec()).unwrap_or_else(|_| "?".into());
    Ok((pw, early))
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_seen_through_a_dual_stack_listener() {
        for (ip, local) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", false),
            ("10.0.0.1", false),
        ] {
            assert_eq!(super::on_loopback(ip.parse().unwrap()), local, "{ip}");
        }
    }
}

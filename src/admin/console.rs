//! The admin console: a client that connects to the virtual database
//! `pgtenant` with the admin password (`admin.password`) gets a SQL-ish
//! console speaking the simple query protocol (see [`super::commands`]).
//!
//! Admin API keys (a key flagged admin in the registry) are not supported
//! yet: the registry has no such flag. A tenant's key is refused with
//! 28000; a wrong password costs the source a throttle token like a wrong
//! key does.
//!
//! The message encoders are the proxy's own (`protocol::write`): a
//! console needs RowDescription, DataRow, CommandComplete and
//! ReadyForQuery, which is less code than adapting a server framework
//! (pgwire) to a stream the proxy has already negotiated and authenticated.

use std::net::SocketAddr;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::commands::{self, Command, Reply};
use crate::auth::{self, key, options, throttle};
use crate::context::Context;
use crate::error::ClientError;
use crate::protocol::{self, Severity, startup::Params, tag};
use crate::tls::ClientStream;

/// Largest console message; commands are short.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
enum ConsoleError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("password authentication failed for the admin console")]
    WrongPassword,
    #[error("a tenant's API key cannot open the admin console (database \"pgtenant\")")]
    TenantKey,
    #[error("the admin console is disabled: admin.password is not set")]
    Disabled,
}

impl ConsoleError {
    fn sqlstate(&self) -> &str {
        match self {
            ConsoleError::Client(e) => e.sqlstate(),
            ConsoleError::WrongPassword => "28P01",
            ConsoleError::TenantKey | ConsoleError::Disabled => "28000",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            ConsoleError::Client(e) => e.hint(),
            ConsoleError::TenantKey => Some("connect to your application's database instead"),
            ConsoleError::Disabled => Some("set admin.password (PGTENANT_ADMIN_PASSWORD)"),
            ConsoleError::WrongPassword => None,
        }
    }
}

/// `login_by`: the login's deadline; `place`: its place among its
/// source's logins, given back once it is done.
pub async fn serve(
    ctx: &Context,
    mut stream: ClientStream,
    params: Params,
    early: BytesMut,
    peer: SocketAddr,
    login_by: std::time::Instant,
    place: crate::auth::logins::LoginPlace<'_>,
) {
    let span = tracing::Span::current();
    span.record("tenant", super::CONSOLE_DB);
    span.record("user", crate::auth::options::user_shown(&params).as_str());
    let login = ctx
        .timers
        .timeout_at(login_by, login(ctx, &mut stream, &params, early, peer))
        .await
        .unwrap_or(Err(ConsoleError::Client(ClientError::LoginTimeout)));
    drop(place);
    let (logged_in_with, early) = match login {
        Ok(l) => l,
        Err(e) => {
            refused(&mut stream, e).await;
            return;
        }
    };
    metrics::counter!("pgtenant_logins_total", "outcome" => "admin").increment(1);
    tracing::info!("admin console session started");
    let _ = session(ctx, &mut stream, &logged_in_with, early).await;
    tracing::info!("admin console session ended");
}

async fn refused(stream: &mut ClientStream, e: ConsoleError) {
    let outcome = match e {
        ConsoleError::TenantKey => "admin_tenant_key",
        _ => "admin_refused",
    };
    metrics::counter!("pgtenant_logins_total", "outcome" => outcome).increment(1);
    tracing::info!(error = %e, "admin console login refused");
    crate::session::send_fatal(stream, e.sqlstate(), &e.to_string(), e.hint()).await;
}

/// The digest of the password the client gave, once it is the right one,
/// and what the client sent after it without waiting.
async fn login(
    ctx: &Context,
    stream: &mut ClientStream,
    params: &Params,
    early: BytesMut,
    peer: SocketAddr,
) -> Result<([u8; 32], BytesMut), ConsoleError> {
    let from_options = options::split(params).ok().and_then(|r| r.key);
    auth::secret_may_travel(ctx, stream, peer)?;
    let (secret, early) = match from_options {
        Some(k) => (k, early),
        None => auth::ask_password(stream, early).await?,
    };
    if secret.is_empty() {
        return Err(ClientError::MissingKey.into());
    }
    // Throttled: the same answer as a wrong password, after the delay.
    let ticket = throttle::gate(ctx, peer)
        .await
        .map_err(|_| ConsoleError::WrongPassword)?;
    let password = ctx.cfg().admin.password.0.clone();
    if !password.is_empty() && same_secret(&secret, &password) {
        ticket.settle(false);
        return Ok((Sha256::digest(password.as_bytes()).into(), early));
    }
    if key::is_well_formed(&secret) {
        match auth::check_key(ctx, &secret).await {
            Ok(_) | Err(ClientError::TenantInactive(_)) => {
                ticket.settle(false); // a valid key: no guess
                return Err(ConsoleError::TenantKey);
            }
            Err(_) => {}
        }
    }
    ticket.settle(true);
    Err(if password.is_empty() {
        ConsoleError::Disabled
    } else {
        ConsoleError::WrongPassword
    })
}

/// Constant-time equality of the two secrets' SHA-256 (which also hides
/// the length of the password).
fn same_secret(given: &str, expected: &str) -> bool {
    same_digest(
        &Sha256::digest(given.as_bytes()),
        &Sha256::digest(expected.as_bytes()),
    )
}

fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin password in force, as a digest (a session keeps this, not
/// the password).
fn password_digest(ctx: &Context) -> [u8; 32] {
    Sha256::digest(ctx.cfg().admin.password.0.as_bytes()).into()
}

fn hello(buf: &mut BytesMut) {
    protocol::auth_ok(buf);
    for (k, v) in [
        (
            "server_version",
            concat!(env!("CARGO_PKG_VERSION"), "/pgtenant"),
        ),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        protocol::parameter_status(buf, k, v);
    }
    protocol::ready_for_query(buf, b'I');
}

/// Serves queries until the client leaves, or until `admin.password` is
/// no longer the one it logged in with (`logged_in_with`, a digest): a
/// rotated password, say after a leak, must shut out who used the old one.
async fn session(
    ctx: &Context,
    stream: &mut ClientStream,
    logged_in_with: &[u8; 32],
    mut inbuf: BytesMut,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(4096);
    hello(&mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    inbuf.reserve(1024);
    // After an extended-protocol message: skip to Sync, as Postgres does.
    let mut skipping = false;
    loop {
        out.clear();
        let h = loop {
            match protocol::header(&inbuf, MAX_MESSAGE) {
                Ok(Some(h)) if inbuf.len() >= h.frame_len => break h,
                Ok(_) => {}
                Err(e) => {
                    let e = ClientError::from(e);
                    protocol::error_response(
                        &mut out,
                        Severity::Fatal,
                        e.sqlstate(),
                        &e.to_string(),
                        None,
                    );
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
            if stream.read_buf(&mut inbuf).await? == 0 {
                return Ok(());
            }
        };
        let msg = inbuf.split_to(h.frame_len);
        let body = &msg[protocol::HEADER_LEN..];
        match h.tag {
            tag::QUERY if !same_digest(&password_digest(ctx), logged_in_with) => {
                tracing::info!("admin console session ended: admin.password changed");
                protocol::error_response(
                    &mut out,
                    Severity::Fatal,
                    "28000",
                    "admin.password changed since this console session logged in",
                    Some("connect again with the new password"),
                );
                stream.write_all(&out).await?;
                return Ok(());
            }
            tag::QUERY => {
                let sql = protocol::read_cstr(body).map(|(s, _)| s).unwrap_or(body);
                query(ctx, &String::from_utf8_lossy(sql), &mut out).await;
                protocol::ready_for_query(&mut out, b'I');
            }
            tag::TERMINATE => return Ok(()),
            tag::SYNC => {
                skipping = false;
                protocol::ready_for_query(&mut out, b'I');
            }
            tag::PARSE
            | tag::BIND
            | tag::DESCRIBE
            | tag::EXECUTE
            | tag::CLOSE
            | tag::FUNCTION_CALL => {
                if !skipping {
                    skipping = true;
                    protocol::error_response(
                        &mut out,
                        Severity::Error,
                        "0A000",
                        "the admin console speaks the simple query protocol only",
                        Some("use psql, or a driver's simple query mode"),
                    );
                }
            }
            b'H' => {} // Flush: everything is flushed anyway
            _ => {
                protocol::error_response(
                    &mut out,
                    Severity::Fatal,
                    "08P01",
                    "unexpected message on the admin console",
                    None,
                );
                stream.write_all(&out).await?;
                return Ok(());
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
    }
}

/// Runs each `;`-separated command; the first error ends the batch, as
/// in Postgres.
async fn query(ctx: &Context, sql: &str, out: &mut BytesMut) {
    let statements: Vec<&str> = sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if statements.is_empty() {
        protocol::empty_query_response(out);
        return;
    }
    for stmt in statements {
        let reply = match commands::parse(stmt) {
            Ok(cmd) => {
                if matches!(cmd, Command::Show(_)) {
                    tracing::debug!(command = ?cmd, "admin console");
                } else {
                    tracing::info!(command = ?cmd, "admin console");
                }
                commands::execute(ctx, &cmd).await
            }
            Err(r) => r,
        };
        if !write_reply(out, reply) {
            return;
        }
    }
}

/// Appends the reply's messages; false after an error.
fn write_reply(out: &mut BytesMut, reply: Reply) -> bool {
    match reply {
        Reply::Rows { columns, rows } => {
            protocol::row_description(out, columns);
            for r in rows {
                protocol::data_row(out, &r);
            }
            protocol::command_complete(out, "SHOW");
            true
        }
        Reply::Done { tag, notice } => {
            if let Some(n) = notice {
                protocol::notice_response(out, &n);
            }
            protocol::command_complete(out, tag);
            true
        }
        Reply::Error {
            code,
            message,
            hint,
        } => {
            protocol::error_response(out, Severity::Error, code, &message, hint);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(same_secret(
            "correct horse battery",
            "correct horse battery"
        ));
        assert!(!same_secret(
            "correct horse batterx",
            "correct horse battery"
        ));
        assert!(!same_secret("", "x"));
    }
}

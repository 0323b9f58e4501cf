//! Every error a client can see, and its SQLSTATE, in one place.

use crate::protocol::startup::StartupError;
use crate::protocol::{ErrorFields, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // -- startup and authentication --
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("this pgtenant server accepts only TLS connections")]
    TlsRequired,
    #[error("an API key must not be sent over an unencrypted connection")]
    PlaintextPassword,
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    #[error("no API key given")]
    MissingKey,
    #[error("password authentication failed: invalid API key")]
    InvalidKey,
    #[error("tenant \"{0}\" is inactive")]
    TenantInactive(String),
    #[error("startup option \"{0}\" is not allowed through pgtenant")]
    ForbiddenOption(String),
    #[error("startup option \"{0}\" holds an API key, which pgtenant never passes on")]
    KeyInOption(String),
    #[error("timed out during startup and authentication")]
    LoginTimeout,
    #[error("the tenant registry is unavailable")]
    RegistryUnavailable,

    // -- capacity --
    #[error("too many client connections (max_client_connections = {0})")]
    TooManyClients(usize),
    #[error(
        "too many connections from this address are logging in at once \
         (auth.max_logins_per_source = {0})"
    )]
    TooManyLogins(u32),
    #[error(
        "too many client connections for tenant \"{tenant}\" (at most {max}: \
         pool.max_client_connections_per_tenant or pool.tenants.{tenant}.max_client_connections)"
    )]
    TooManyTenantClients { tenant: String, max: usize },
    #[error("no server connection for tenant \"{tenant}\" became free within {waited_ms} ms")]
    PoolTimeout { tenant: String, waited_ms: u64 },

    // -- backend --
    #[error("could not connect to the database server: {0}")]
    BackendConnect(String),
    /// The server refused the tenant role's login (its SQLSTATE): the
    /// proxy's problem, logged with the server's reason where it happened.
    #[error(
        "could not connect to the database server: the server refused the tenant's backend login (SQLSTATE {0}); see the proxy's log"
    )]
    BackendLoginRefused(String),
    /// The backend refused us; its own SQLSTATE and message are passed on.
    #[error("{}", .0.message)]
    Backend(ErrorFields),
    #[error("the server connection was lost")]
    BackendLost,

    // -- the session itself --
    #[error("protocol violation: {0}")]
    Protocol(#[from] FrameError),
    #[error("pgtenant is shutting down")]
    Shutdown,
    /// The session was ended on purpose; the text says why.
    #[error("{0}")]
    Terminated(String),
    #[error(
        "pgtenant: settings: the server's {0} became {1} (through dynamic SQL or a function): \
         the firewall no longer reads this session's statements as the server does"
    )]
    ReadingChanged(String, String),
    #[error(
        "pgtenant: terminating connection due to idle-in-transaction timeout \
         (pool.idle_transaction_timeout_ms)"
    )]
    IdleInTransaction,
}

impl ClientError {
    pub fn sqlstate(&self) -> &str {
        use ClientError::*;
        match self {
            Startup(StartupError::UnsupportedVersion(..)) => "0A000",
            Startup(_) | Protocol(_) => "08P01",
            TlsRequired | PlaintextPassword | NoUser | TenantInactive(_) | KeyInOption(_) => {
                "28000"
            }
            MissingKey | InvalidKey => "28P01",
            ForbiddenOption(_) | ReadingChanged(..) => "42501",
            LoginTimeout => "08006",
            RegistryUnavailable => "57P03",
            TooManyClients(_)
            | TooManyLogins(_)
            | TooManyTenantClients { .. }
            | PoolTimeout { .. } => "53300",
            BackendConnect(_) | BackendLoginRefused(_) | BackendLost => "08006",
            Backend(f) => &f.code,
            Shutdown | Terminated(_) => "57P01",
            IdleInTransaction => "25P03",
        }
    }

    /// What the person at the client can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        use ClientError::*;
        Some(match self {
            TlsRequired | PlaintextPassword => "connect with sslmode=require",
            MissingKey | KeyInOption(_) => {
                "give your API key as the password, or as options='-c pgtenant.api_key=KEY'"
            }
            InvalidKey => "check the API key; issue a new one with `pgtenant key issue`",
            TenantInactive(_) => "an administrator can run `pgtenant tenant activate`",
            ForbiddenOption(_) => {
                "search_path and role are pinned to your tenant; set other options after connecting"
            }
            PoolTimeout { .. } | TooManyClients(_) | TooManyTenantClients { .. } => {
                "retry later, or raise pool.pool_size / max_client_connections"
            }
            RegistryUnavailable => "retry in a moment",
            IdleInTransaction => "commit or roll back sooner; the transaction was rolled back",
            TooManyLogins(_) => {
                "retry in a moment; logins that never finish hold their place until login_timeout_ms"
            }
            ReadingChanged(..) => {
                "keep standard_conforming_strings on and client_encoding UTF8 or a single-byte encoding"
            }
            _ => return None,
        })
    }
}

/// An error with its causes, `a: b: c`, for operators' logs (libraries
/// such as tokio-postgres keep the useful part — "invalid peer
/// certificate: UnknownIssuer" — in the source chain).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Client-given text (a user name, an identifier from its SQL) as part of
/// one log line: control characters become `?`, so that a newline can't
/// start a line of the client's making.
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

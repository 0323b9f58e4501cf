//! The sections of the configuration file, one struct each, with their
//! defaults. Loading, environment overrides and validation are in
//! [`super`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// postgres:// URL of the control-plane (admin) connection. The data
    /// plane uses its host, port and database with each tenant's own role.
    pub url: Secret,
    /// Tenant role passwords are HMAC-SHA256(secret, role): nothing to store.
    pub secret: Secret,
    pub connect_timeout_ms: u64,
    /// TLS to the backend, libpq's sslmode semantics.
    pub tls: BackendTls,
    /// PEM CA bundle for `verify-ca` / `verify-full`.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackendTls {
    Disable,
    /// TLS if the server offers it, without verifying the certificate.
    #[default]
    Prefer,
    /// TLS or fail, without verifying the certificate.
    Require,
    /// TLS, certificate chain checked against `backend.tls_ca`.
    VerifyCa,
    /// Also the host name of `backend.url`.
    VerifyFull,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: Secret::default(),
            secret: Secret::default(),
            connect_timeout_ms: 5_000,
            tls: BackendTls::Prefer,
            tls_ca: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Disable,
    Allow,
    Require,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept an API key (as a cleartext password or a startup option)
    /// over a non-TLS connection from a non-loopback address. Off: such
    /// clients must use TLS.
    pub allow_plaintext_password: bool,
    /// Failed logins a source address may make at once before throttling.
    pub failed_login_burst: u32,
    /// Failed logins a source address earns back per second.
    pub failed_login_rate_per_sec: f64,
    /// A throttled attempt gets its 28P01 after this long.
    pub throttle_delay_ms: u64,
    /// Connections from one source address (an IPv6 /64) that may be
    /// logging in at once; more get 53300 at once. 0: no limit.
    pub max_logins_per_source: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_plaintext_password: false,
            failed_login_burst: 10,
            failed_login_rate_per_sec: 2.0,
            throttle_delay_ms: 1_000,
            max_logins_per_source: 256,
        }
    }
}

/// The metrics/health listener and the admin console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `/metrics`, `/healthz`, `/readyz` listen here; unset: off.
    pub metrics_addr: Option<SocketAddr>,
    /// Allow `metrics_addr` on a non-loopback address.
    pub metrics_public: bool,
    /// Tenants with their own metric label; the rest are `tenant="other"`.
    pub metrics_max_tenants: usize,
    /// Password of the admin console (database `pgtenant`); unset: off.
    pub password: Secret,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            metrics_addr: None,
            metrics_public: false,
            metrics_max_tenants: 100,
            password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    #[default]
    Session,
    Transaction,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub mode: PoolMode,
    /// Backend connections per tenant.
    pub pool_size: usize,
    /// Backend connections of all tenants together.
    pub max_backend_connections: usize,
    /// How long a client waits for a backend connection before 53300.
    pub query_wait_timeout_ms: u64,
    /// Idle backend connections older than this are closed (0: never).
    pub server_idle_timeout_ms: u64,
    /// Backend connections are retired after this long (0: never).
    pub server_lifetime_ms: u64,
    /// A client whose transaction stays idle this long is disconnected and
    /// its transaction rolled back (0: never), as PgBouncer's
    /// `idle_transaction_timeout`.
    pub idle_transaction_timeout_ms: u64,
    /// Transaction mode: named statements kept prepared per backend connection.
    pub prepared_statements_per_connection: usize,
    /// Idle backend connections kept open per tenant (after its first use).
    pub min_idle: usize,
    /// Client connections per tenant; more get 53300. 0: no per-tenant limit.
    pub max_client_connections_per_tenant: usize,
    /// Per-tenant overrides: `[pool.tenants.acme] mode = "transaction"`.
    pub tenants: BTreeMap<String, TenantPoolConfig>,
}

/// Settings one tenant may override; unset ones come from `[pool]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPoolConfig {
    pub mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub min_idle: Option<usize>,
    pub max_client_connections: Option<usize>,
}

/// A tenant's effective pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPool {
    pub mode: PoolMode,
    pub pool_size: usize,
    pub min_idle: usize,
    pub max_client_connections: usize,
}

impl PoolConfig {
    pub fn for_tenant(&self, tenant: &str) -> TenantPool {
        let o = self.tenants.get(tenant);
        let pick = |f: fn(&TenantPoolConfig) -> Option<usize>, d| o.and_then(f).unwrap_or(d);
        TenantPool {
            mode: o.and_then(|o| o.mode).unwrap_or(self.mode),
            pool_size: pick(|o| o.pool_size, self.pool_size),
            min_idle: pick(|o| o.min_idle, self.min_idle),
            max_client_connections: pick(
                |o| o.max_client_connections,
                self.max_client_connections_per_tenant,
            ),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Session,
            pool_size: 20,
            max_backend_connections: 100,
            query_wait_timeout_ms: 5_000,
            server_idle_timeout_ms: 600_000,
            server_lifetime_ms: 3_600_000,
            idle_transaction_timeout_ms: 0,
            prepared_statements_per_connection: 500,
            min_idle: 0,
            max_client_connections_per_tenant: 0,
            tenants: BTreeMap::new(),
        }
    }
}

/// What happens to live sessions when their key, user or tenant stops
/// being valid (revoked, expired, deactivated, dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRevoke {
    /// End them at once with 57P01 and a message that says why.
    #[default]
    Terminate,
    /// Let them run; only new logins are refused.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// How long a key → tenant lookup is trusted before it is read again.
    /// Changes are pushed by LISTEN/NOTIFY and invalidate entries at once;
    /// this bounds staleness only while notifications are not arriving.
    pub cache_ttl_ms: u64,
    /// Control-plane connections to the registry.
    pub pool_size: usize,
    pub on_revoke: OnRevoke,
    /// Safety net for missed notifications: this often the cache is
    /// cleared and every live session's key re-checked (min 100).
    pub refresh_interval_ms: u64,
    /// How often `last_used_at` of keys that logged in is written, in one
    /// statement (min 100). A key is written at most once a minute anyway.
    pub last_used_flush_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            cache_ttl_ms: 1_000,
            pool_size: 4,
            on_revoke: OnRevoke::Terminate,
            refresh_interval_ms: 30_000,
            last_used_flush_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `pgtenant=debug`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The statement firewall (see `crate::firewall`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// enforce | monitor | off, for every tenant without an override.
    pub mode: FirewallMode,
    /// Schemas every tenant may read besides pg_catalog and information_schema.
    pub shared_schemas: Vec<String>,
    /// Let tenants CREATE EXTENSION (into their own schema).
    pub allow_create_extension: bool,
    /// Analysed statement texts kept (LRU); 0 disables the cache.
    pub cache_capacity: usize,
    /// Per-tenant mode: `[firewall.tenants.legacy] mode = "monitor"`.
    pub tenants: BTreeMap<String, TenantFirewallConfig>,
}

pub use crate::firewall::Mode as FirewallMode;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFirewallConfig {
    pub mode: FirewallMode,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            mode: FirewallMode::Enforce,
            shared_schemas: Vec::new(),
            allow_create_extension: false,
            cache_capacity: 10_000,
            tenants: BTreeMap::new(),
        }
    }
}

impl FirewallConfig {
    pub fn mode_for(&self, tenant: &str) -> FirewallMode {
        self.tenants.get(tenant).map_or(self.mode, |t| t.mode)
    }

    pub fn policy(&self) -> crate::firewall::Policy {
        crate::firewall::Policy {
            shared_schemas: self.shared_schemas.clone(),
            allow_create_extension: self.allow_create_extension,
        }
    }
}

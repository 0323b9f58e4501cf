//! Typed configuration: a TOML file, then `PGTENANT_*` environment
//! overrides, then validation. Every setting has an environment name (see
//! [`ENV`]) so containers can run without a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {path} is not valid TOML: {err}")]
    Syntax { path: PathBuf, err: String },
    #[error("config key `{key}`: {msg}")]
    Invalid { key: String, msg: String },
}

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        msg: msg.into(),
    }
}

/// A string that must never reach a log line: Debug prints a placeholder.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where clients connect.
    pub listen_addr: SocketAddr,
    /// Client connections accepted at once; more get 53300.
    pub max_client_connections: usize,
    /// Time a client has to finish TLS, startup and authentication.
    pub login_timeout_ms: u64,
    /// Largest frontend message accepted (Postgres' own limit is 1 GiB).
    pub max_message_bytes: usize,
    pub backend: BackendConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub pool: PoolConfig,
    pub registry: RegistryConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: "127.0.0.1:6432".parse().expect("valid literal"),
            max_client_connections: 10_000,
            login_timeout_ms: 15_000,
            max_message_bytes: 256 << 20,
            backend: BackendConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            pool: PoolConfig::default(),
            registry: RegistryConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// postgres:// URL of the control-plane (admin) connection. The data
    /// plane uses its host, port and database with each tenant's own role.
    pub url: Secret,
    /// Tenant role passwords are HMAC-SHA256(secret, role): nothing to store.
    pub secret: Secret,
    pub connect_timeout_ms: u64,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: Secret::default(),
            secret: Secret::default(),
            connect_timeout_ms: 5_000,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept an API key sent as a cleartext password over a non-TLS
    /// connection from a non-loopback address. Off: such clients must use TLS.
    pub allow_plaintext_password: bool,
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
    /// Idle backend connections older than this are closed.
    pub server_idle_timeout_ms: u64,
    /// Backend connections are retired after this long.
    pub server_lifetime_ms: u64,
    /// Transaction mode: named statements kept prepared per backend connection.
    pub prepared_statements_per_connection: usize,
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
            prepared_statements_per_connection: 500,
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

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Environment variable → config key. Every setting is here.
#[rustfmt::skip]
const ENV: &[(&str, &str, Kind)] = &[
    ("PGTENANT_LISTEN_ADDR",                        "listen_addr",                             Kind::Str),
    ("PGTENANT_MAX_CLIENT_CONNECTIONS",             "max_client_connections",                  Kind::Int),
    ("PGTENANT_LOGIN_TIMEOUT_MS",                   "login_timeout_ms",                        Kind::Int),
    ("PGTENANT_MAX_MESSAGE_BYTES",                  "max_message_bytes",                       Kind::Int),
    ("PGTENANT_BACKEND_URL",                        "backend.url",                             Kind::Str),
    ("PGTENANT_BACKEND_SECRET",                     "backend.secret",                          Kind::Str),
    ("PGTENANT_BACKEND_CONNECT_TIMEOUT_MS",         "backend.connect_timeout_ms",              Kind::Int),
    ("PGTENANT_TLS_MODE",                           "tls.mode",                                Kind::Str),
    ("PGTENANT_TLS_CERT",                           "tls.cert",                                Kind::Str),
    ("PGTENANT_TLS_KEY",                            "tls.key",                                 Kind::Str),
    ("PGTENANT_AUTH_ALLOW_PLAINTEXT_PASSWORD",      "auth.allow_plaintext_password",           Kind::Bool),
    ("PGTENANT_POOL_MODE",                          "pool.mode",                               Kind::Str),
    ("PGTENANT_POOL_SIZE",                          "pool.pool_size",                          Kind::Int),
    ("PGTENANT_MAX_BACKEND_CONNECTIONS",            "pool.max_backend_connections",            Kind::Int),
    ("PGTENANT_QUERY_WAIT_TIMEOUT_MS",              "pool.query_wait_timeout_ms",              Kind::Int),
    ("PGTENANT_SERVER_IDLE_TIMEOUT_MS",             "pool.server_idle_timeout_ms",             Kind::Int),
    ("PGTENANT_SERVER_LIFETIME_MS",                 "pool.server_lifetime_ms",                 Kind::Int),
    ("PGTENANT_PREPARED_STATEMENTS_PER_CONNECTION", "pool.prepared_statements_per_connection", Kind::Int),
    ("PGTENANT_REGISTRY_CACHE_TTL_MS",              "registry.cache_ttl_ms",                   Kind::Int),
    ("PGTENANT_REGISTRY_POOL_SIZE",                 "registry.pool_size",                      Kind::Int),
    ("PGTENANT_REGISTRY_ON_REVOKE",                 "registry.on_revoke",                      Kind::Str),
    ("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS",       "registry.refresh_interval_ms",            Kind::Int),
    ("PGTENANT_REGISTRY_LAST_USED_FLUSH_MS",        "registry.last_used_flush_ms",             Kind::Int),
    ("PGTENANT_LOG_LEVEL",                          "log.level",                               Kind::Str),
    ("PGTENANT_LOG_FORMAT",                         "log.format",                              Kind::Str),
];

impl Config {
    /// Loads `path` (if any), applies the environment, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(path, |k| std::env::var(k).ok())
    }

    pub fn load_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|err| ConfigError::Read {
                    path: p.to_owned(),
                    err,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: p.to_owned(),
                        err: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for &(var, key, kind) in ENV {
            if let Some(raw) = env(var) {
                let value = match kind {
                    Kind::Str => toml::Value::String(raw),
                    Kind::Int => {
                        toml::Value::Integer(raw.trim().parse().map_err(|_| {
                            invalid(key, format!("{var}={raw:?} is not an integer"))
                        })?)
                    }
                    Kind::Bool => toml::Value::Boolean(match raw.trim() {
                        "1" | "true" | "on" | "yes" => true,
                        "0" | "false" | "off" | "no" => false,
                        _ => return Err(invalid(key, format!("{var}={raw:?} is not a boolean"))),
                    }),
                };
                set_path(&mut table, key, value);
            }
        }
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(&key, e.into_inner().to_string())
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.backend.url.0.is_empty() {
            return Err(invalid(
                "backend.url",
                "is required (set it in the file or PGTENANT_BACKEND_URL)",
            ));
        }
        let pg = self.backend_pg_config()?;
        if pg.get_user().is_none() {
            return Err(invalid("backend.url", "must name a user"));
        }
        if self.tls.mode != TlsMode::Disable && (self.tls.cert.is_none() || self.tls.key.is_none())
        {
            return Err(invalid(
                "tls.mode",
                "`allow` and `require` need tls.cert and tls.key (PEM files)",
            ));
        }
        for (key, v) in [
            ("pool.pool_size", self.pool.pool_size),
            (
                "pool.max_backend_connections",
                self.pool.max_backend_connections,
            ),
            ("max_client_connections", self.max_client_connections),
            ("registry.pool_size", self.registry.pool_size),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes", "must be at least 1024"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        Ok(())
    }

    /// The secret is only needed by commands that derive role passwords.
    pub fn require_secret(&self) -> Result<&str, ConfigError> {
        let s = &self.backend.secret.0;
        if s.len() < 16 {
            return Err(invalid(
                "backend.secret",
                "must be set to at least 16 characters (PGTENANT_BACKEND_SECRET); \
                 tenant role passwords are derived from it",
            ));
        }
        Ok(s)
    }

    pub fn backend_pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        // The parser's own message may quote the URL; don't echo it.
        self.backend
            .url
            .0
            .parse::<tokio_postgres::Config>()
            .map_err(|_| invalid("backend.url", "is not a valid postgres:// URL"))
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_millis(self.login_timeout_ms)
    }
}

fn set_path(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        None => {
            table.insert(dotted.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with(Some(&path), |k| env.get(k).cloned())
    }

    const URL: &str = "[backend]\nurl = \"postgres://admin@127.0.0.1:5432/app\"\n";

    #[test]
    fn env_overrides_file() {
        let c = load(
            &format!("{URL}[pool]\npool_size = 3\n"),
            &[
                ("PGTENANT_POOL_SIZE", "7"),
                ("PGTENANT_LISTEN_ADDR", "0.0.0.0:7000"),
            ],
        )
        .unwrap();
        assert_eq!(c.pool.pool_size, 7);
        assert_eq!(c.listen_addr.port(), 7000);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load(&format!("{URL}[pool]\npool_size = \"many\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("pool.pool_size"), "{e}");
        let e = load(&format!("{URL}[pool]\npool_sise = 1\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("pool_sise"), "{e}");
        let e = load(URL, &[("PGTENANT_TLS_MODE", "require")]).unwrap_err();
        assert!(e.to_string().contains("tls.mode"), "{e}");
        let e = load(URL, &[("PGTENANT_TLS_MODE", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("tls.mode"), "{e}");
        let e = load("", &[]).unwrap_err();
        assert!(e.to_string().contains("backend.url"), "{e}");
        let e = load(URL, &[("PGTENANT_POOL_SIZE", "x")]).unwrap_err();
        assert!(e.to_string().contains("pool.pool_size"), "{e}");
    }

    #[test]
    fn every_numeric_and_boolean_env_name_maps_to_a_real_key() {
        // deny_unknown_fields turns a mistyped path in ENV into an error here.
        for &(var, key, kind) in ENV {
            let value = match kind {
                Kind::Int => "4242",
                Kind::Bool => "true",
                Kind::Str => continue,
            };
            load(URL, &[(var, value)]).unwrap_or_else(|e| panic!("{var} -> {key}: {e}"));
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = load(
            "[backend]\nurl = \"postgres://admin:hunter2@h/db\"\nsecret = \"0123456789abcdefXYZ\"\n",
            &[],
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("XYZ"), "{dbg}");
    }

    #[test]
    fn example_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pgtenant.toml"))
                .unwrap();
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.listen_addr.port(), 6432);
    }
}

//! Typed configuration: a TOML file, then `PGTENANT_*` environment
//! overrides, then validation. Every setting has an environment name (see
//! [`ENV`]) so containers can run without a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod sections;
pub use sections::*;

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

/// Keys whose values are secrets: no error message ever quotes them.
const SECRET_KEYS: [&str; 3] = ["backend.url", "backend.secret", "admin.password"];

/// The largest connection count or pool size a setting may hold: beyond
/// any deployment, far below what tokio's semaphores take.
const MAX_COUNT: usize = 1_000_000;

/// Where the file stops being TOML, and why. Not the parser's own display,
/// which quotes the line: `secret = "…` with a bad escape would print the
/// secret to the log, the console's RELOAD reply and stderr.
fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let secret = SECRET_KEYS
        .iter()
        .any(|k| k.rsplit('.').next() == Some(key) || key.contains(k));
    let why = if secret {
        "a syntax error (not shown: the line holds a secret)"
    } else {
        e.message().trim()
    };
    ConfigError::Syntax {
        path: path.to_owned(),
        err: format!(
            "line {}, column {}: {why}",
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1
        ),
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
    /// SIGTERM: how long running transactions may take to finish.
    pub shutdown_timeout_ms: u64,
    /// Runtime threads. 1 (default): one event loop, like PgBouncer, the
    /// least CPU per transaction; 0: one per core; N: N.
    pub worker_threads: usize,
    pub backend: BackendConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub pool: PoolConfig,
    pub registry: RegistryConfig,
    pub log: LogConfig,
    pub firewall: FirewallConfig,
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: "127.0.0.1:6432".parse().expect("valid literal"),
            max_client_connections: 10_000,
            login_timeout_ms: 15_000,
            max_message_bytes: 256 << 20,
            shutdown_timeout_ms: 30_000,
            worker_threads: 1,
            backend: BackendConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            pool: PoolConfig::default(),
            registry: RegistryConfig::default(),
            log: LogConfig::default(),
            firewall: FirewallConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// Comma-separated strings.
    List,
}

/// Environment variable → config key. Every setting is here.
#[rustfmt::skip]
const ENV: &[(&str, &str, Kind)] = &[
    ("PGTENANT_LISTEN_ADDR",                        "listen_addr",                             Kind::Str),
    ("PGTENANT_MAX_CLIENT_CONNECTIONS",             "max_client_connections",                  Kind::Int),
    ("PGTENANT_LOGIN_TIMEOUT_MS",                   "login_timeout_ms",                        Kind::Int),
    ("PGTENANT_MAX_MESSAGE_BYTES",                  "max_message_bytes",                       Kind::Int),
    ("PGTENANT_SHUTDOWN_TIMEOUT_MS",                "shutdown_timeout_ms",                     Kind::Int),
    ("PGTENANT_WORKER_THREADS",                     "worker_threads",                          Kind::Int),
    ("PGTENANT_BACKEND_URL",                        "backend.url",                             Kind::Str),
    ("PGTENANT_BACKEND_SECRET",                     "backend.secret",                          Kind::Str),
    ("PGTENANT_BACKEND_CONNECT_TIMEOUT_MS",         "backend.connect_timeout_ms",              Kind::Int),
    ("PGTENANT_BACKEND_TLS",                        "backend.tls",                             Kind::Str),
    ("PGTENANT_BACKEND_TLS_CA",                     "backend.tls_ca",                          Kind::Str),
    ("PGTENANT_TLS_MODE",                           "tls.mode",                                Kind::Str),
    ("PGTENANT_TLS_CERT",                           "tls.cert",                                Kind::Str),
    ("PGTENANT_TLS_KEY",                            "tls.key",                                 Kind::Str),
    ("PGTENANT_AUTH_ALLOW_PLAINTEXT_PASSWORD",      "auth.allow_plaintext_password",           Kind::Bool),
    ("PGTENANT_AUTH_FAILED_LOGIN_BURST",            "auth.failed_login_burst",                 Kind::Int),
    ("PGTENANT_AUTH_FAILED_LOGIN_RATE_PER_SEC",     "auth.failed_login_rate_per_sec",          Kind::Float),
    ("PGTENANT_AUTH_THROTTLE_DELAY_MS",             "auth.throttle_delay_ms",                  Kind::Int),
    ("PGTENANT_AUTH_MAX_LOGINS_PER_SOURCE",         "auth.max_logins_per_source",              Kind::Int),
    ("PGTENANT_POOL_MODE",                          "pool.mode",                               Kind::Str),
    ("PGTENANT_POOL_SIZE",                          "pool.pool_size",                          Kind::Int),
    ("PGTENANT_MAX_BACKEND_CONNECTIONS",            "pool.max_backend_connections",            Kind::Int),
    ("PGTENANT_QUERY_WAIT_TIMEOUT_MS",              "pool.query_wait_timeout_ms",              Kind::Int),
    ("PGTENANT_SERVER_IDLE_TIMEOUT_MS",             "pool.server_idle_timeout_ms",             Kind::Int),
    ("PGTENANT_SERVER_LIFETIME_MS",                 "pool.server_lifetime_ms",                 Kind::Int),
    ("PGTENANT_IDLE_TRANSACTION_TIMEOUT_MS",        "pool.idle_transaction_timeout_ms",        Kind::Int),
    ("PGTENANT_PREPARED_STATEMENTS_PER_CONNECTION", "pool.prepared_statements_per_connection", Kind::Int),
    ("PGTENANT_POOL_MIN_IDLE",                      "pool.min_idle",                           Kind::Int),
    ("PGTENANT_MAX_CLIENT_CONNECTIONS_PER_TENANT",  "pool.max_client_connections_per_tenant",  Kind::Int),
    ("PGTENANT_REGISTRY_CACHE_TTL_MS",              "registry.cache_ttl_ms",                   Kind::Int),
    ("PGTENANT_REGISTRY_POOL_SIZE",                 "registry.pool_size",                      Kind::Int),
    ("PGTENANT_REGISTRY_ON_REVOKE",                 "registry.on_revoke",                      Kind::Str),
    ("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS",       "registry.refresh_interval_ms",            Kind::Int),
    ("PGTENANT_REGISTRY_LAST_USED_FLUSH_MS",        "registry.last_used_flush_ms",             Kind::Int),
    ("PGTENANT_FIREWALL_MODE",                      "firewall.mode",                           Kind::Str),
    ("PGTENANT_FIREWALL_SHARED_SCHEMAS",            "firewall.shared_schemas",                 Kind::List),
    ("PGTENANT_FIREWALL_ALLOW_CREATE_EXTENSION",    "firewall.allow_create_extension",         Kind::Bool),
    ("PGTENANT_FIREWALL_CACHE_CAPACITY",            "firewall.cache_capacity",                 Kind::Int),
    ("PGTENANT_LOG_LEVEL",                          "log.level",                               Kind::Str),
    ("PGTENANT_LOG_FORMAT",                         "log.format",                              Kind::Str),
    ("PGTENANT_METRICS_ADDR",                       "admin.metrics_addr",                      Kind::Str),
    ("PGTENANT_METRICS_PUBLIC",                     "admin.metrics_public",                    Kind::Bool),
    ("PGTENANT_METRICS_MAX_TENANTS",                "admin.metrics_max_tenants",               Kind::Int),
    ("PGTENANT_ADMIN_PASSWORD",                     "admin.password",                          Kind::Str),
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
                    .map_err(|e| syntax_error(p, &text, &e))?
            }
            None => toml::Table::new(),
        };
        for &(var, key, kind) in ENV {
            if let Some(raw) = env(var) {
                let value = match kind {
                    Kind::Str => toml::Value::String(raw),
                    Kind::Int => toml::Value::Integer(
                        raw.trim()
                            .parse()
                            .map_err(|_| invalid(key, format!("{var} is not an integer")))?,
                    ),
                    Kind::Float => toml::Value::Float(
                        raw.trim()
                            .parse()
                            .map_err(|_| invalid(key, format!("{var} is not a number")))?,
                    ),
                    Kind::List => toml::Value::Array(
                        raw.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| toml::Value::String(s.to_owned()))
                            .collect(),
                    ),
                    Kind::Bool => toml::Value::Boolean(match raw.trim() {
                        "1" | "true" | "on" | "yes" => true,
                        "0" | "false" | "off" | "no" => false,
                        _ => return Err(invalid(key, format!("{var} is not a boolean"))),
                    }),
                };
                set_path(&mut table, key, value);
            }
        }
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let msg = e.into_inner().to_string();
                // serde quotes the value it could not take ("invalid type:
                // string \"…\""): not for a secret, nor for a table above one
                // (`backend = "postgres://…"`) or the whole file (path ".").
                let secret = SECRET_KEYS.contains(&key.as_str());
                let above = key == "."
                    || SECRET_KEYS
                        .iter()
                        .any(|k| k.starts_with(&format!("{key}.")));
                if secret || (above && msg.starts_with("invalid")) {
                    let want = if secret { "a string" } else { "a table" };
                    return invalid(&key, format!("must be {want}"));
                }
                // Nor for any other setting, where a secret may be put by
                // mistake (`tls.mode = "postgres://…"`): only what was
                // expected is said.
                // (The last ", expected": the value may hold the word.)
                let msg = match msg.rfind(", expected") {
                    Some(i) if msg.starts_with("invalid") || msg.starts_with("unknown variant") => {
                        format!("invalid value{}", &msg[i..])
                    }
                    _ => msg,
                };
                // One line: serde's messages may span several.
                invalid(&key, msg.split_whitespace().collect::<Vec<_>>().join(" "))
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
        if matches!(
            self.backend.tls,
            BackendTls::VerifyCa | BackendTls::VerifyFull
        ) && self.backend.tls_ca.is_none()
        {
            return Err(invalid(
                "backend.tls",
                "verify-ca and verify-full need backend.tls_ca (a PEM CA bundle)",
            ));
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
            (
                "pool.prepared_statements_per_connection",
                self.pool.prepared_statements_per_connection,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (name, o) in &self.pool.tenants {
            if o.pool_size == Some(0) {
                return Err(invalid(
                    &format!("pool.tenants.{name}.pool_size"),
                    "must be at least 1",
                ));
            }
            let t = self.pool.for_tenant(name);
            if t.min_idle > t.pool_size {
                return Err(invalid(
                    &format!("pool.tenants.{name}.min_idle"),
                    "must not exceed pool_size",
                ));
            }
        }
        if self.pool.min_idle > self.pool.pool_size {
            return Err(invalid("pool.min_idle", "must not exceed pool.pool_size"));
        }
        // Sizes of semaphores, which panic far below usize::MAX, and of
        // caches: a typo'd value must fail the load (or the reload), not
        // the running proxy.
        let mut counts = vec![
            (
                "pool.prepared_statements_per_connection".to_owned(),
                self.pool.prepared_statements_per_connection,
            ),
            (
                "firewall.cache_capacity".to_owned(),
                self.firewall.cache_capacity,
            ),
            ("pool.pool_size".to_owned(), self.pool.pool_size),
            (
                "pool.max_backend_connections".to_owned(),
                self.pool.max_backend_connections,
            ),
            (
                "max_client_connections".to_owned(),
                self.max_client_connections,
            ),
            ("registry.pool_size".to_owned(), self.registry.pool_size),
            (
                "pool.max_client_connections_per_tenant".to_owned(),
                self.pool.max_client_connections_per_tenant,
            ),
        ];
        for (name, o) in &self.pool.tenants {
            counts.push((
                format!("pool.tenants.{name}.pool_size"),
                o.pool_size.unwrap_or(0),
            ));
            counts.push((
                format!("pool.tenants.{name}.max_client_connections"),
                o.max_client_connections.unwrap_or(0),
            ));
        }
        if let Some((key, _)) = counts.iter().find(|(_, v)| *v > MAX_COUNT) {
            return Err(invalid(key, format!("must be at most {MAX_COUNT}")));
        }
        for (key, v) in [
            (
                "registry.refresh_interval_ms",
                self.registry.refresh_interval_ms,
            ),
            (
                "registry.last_used_flush_ms",
                self.registry.last_used_flush_ms,
            ),
        ] {
            if v < 100 {
                return Err(invalid(key, "must be at least 100"));
            }
        }
        for (key, v) in [
            ("login_timeout_ms", self.login_timeout_ms),
            // A client that waits for ever hides an outage; a large value
            // says so on purpose.
            (
                "pool.query_wait_timeout_ms",
                self.pool.query_wait_timeout_ms,
            ),
            (
                "backend.connect_timeout_ms",
                self.backend.connect_timeout_ms,
            ),
        ] {
            // 0 would time every login or connect out at once.
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes", "must be at least 1024"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        self.validate_ops()
    }

    fn validate_ops(&self) -> Result<(), ConfigError> {
        // Metrics name tenants: not for the open network unless asked for.
        if let Some(a) = self.admin.metrics_addr
            && !a.ip().is_loopback()
            && !self.admin.metrics_public
        {
            return Err(invalid(
                "admin.metrics_addr",
                format!(
                    "{a} is not a loopback address; set admin.metrics_public = true to allow it"
                ),
            ));
        }
        let pw = &self.admin.password.0;
        if !pw.is_empty() && pw.len() < 12 {
            return Err(invalid("admin.password", "must be at least 12 characters"));
        }
        if self.auth.failed_login_burst == 0 {
            return Err(invalid("auth.failed_login_burst", "must be at least 1"));
        }
        let rate = self.auth.failed_login_rate_per_sec;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid(
                "auth.failed_login_rate_per_sec",
                "must be a positive number",
            ));
        }
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
        let pg = self
            .backend
            .url
            .0
            .parse::<tokio_postgres::Config>()
            .map_err(|_| invalid("backend.url", "is not a valid postgres:// URL"))?;
        // tokio-postgres would time the connect with tokio's timers, which
        // the proxy's runtime does not have (see `crate::timer`).
        if pg.get_connect_timeout().is_some() {
            return Err(invalid(
                "backend.url",
                "sets connect_timeout: remove it and set backend.connect_timeout_ms \
                 (PGTENANT_BACKEND_CONNECT_TIMEOUT_MS) instead, which pgtenant applies to \
                 its backend and registry connections",
            ));
        }
        // The data plane connects to one TCP address; the control plane
        // (tokio-postgres) would follow a socket path or a host list
        // elsewhere, and tenants' data and the registry would part.
        let hosts = pg.get_hosts();
        let tcp = matches!(hosts, [tokio_postgres::config::Host::Tcp(_)]);
        if !tcp || pg.get_ports().len() > 1 || !pg.get_hostaddrs().is_empty() {
            return Err(invalid(
                "backend.url",
                "must name exactly one host, by TCP (no Unix socket, host list or hostaddr)",
            ));
        }
        // TLS to the backend is `backend.tls`, for both planes; an sslmode
        // in the URL would be overridden without a word.
        if pg.get_ssl_mode() != tokio_postgres::config::SslMode::Prefer {
            return Err(invalid(
                "backend.url",
                "sets sslmode: remove it and set backend.tls (PGTENANT_BACKEND_TLS) instead",
            ));
        }
        // Only the control plane binds SCRAM to the TLS channel (where the
        // server offers it); the tenants' logins don't, so requiring it
        // would promise what half the connections can't keep.
        if pg.get_channel_binding() == tokio_postgres::config::ChannelBinding::Require {
            return Err(invalid(
                "backend.url",
                "sets channel_binding=require, which would hold for the registry's connections \
                 only, not the tenants': remove it and set backend.tls = verify-full \
                 (PGTENANT_BACKEND_TLS) to authenticate the server for both",
            ));
        }
        Ok(pg)
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
mod tests;

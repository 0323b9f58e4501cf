//! Command-line interface: `serve` runs the proxy, the rest administer the
//! registry through an ordinary tokio-postgres connection. Every command
//! prints human output by default and one JSON document with `--json`; on
//! error it exits non-zero with one line (`pgtenant: <reason>`, printed by
//! main) and, since every change is one transaction, changes nothing.

mod key;
mod legacy;
mod output;
mod tenant;
mod user;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::registry::admin;
pub use key::KeyCmd;
pub use tenant::TenantCmd;
pub use user::UserCmd;

#[derive(Parser, Debug)]
#[command(name = "pgtenant", version, about = "Tenant-aware PostgreSQL proxy")]
pub struct Cli {
    /// TOML config file (every setting can also come from PGTENANT_* variables).
    #[arg(long, global = true, env = "PGTENANT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of human-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Serve,
    /// Create or upgrade the registry schema and create the default tenant (idempotent).
    Init {
        /// Prefix for this registry's backend role names (`<prefix>tenant_<name>`).
        /// Roles are cluster-wide: a second registry (database) in the same
        /// cluster needs its own prefix. Fixed by the first `init`.
        #[arg(long)]
        role_prefix: Option<String>,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Move a single-tenant application's objects (tables, views, sequences,
    /// functions, types) into the default tenant's schema and give them to
    /// its role, in one transaction. Idempotent.
    AdoptLegacy {
        /// The schema the legacy application uses.
        #[arg(long, default_value = "public")]
        from_schema: String,
        /// List what would move; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Installs the tracing subscriber; returns the hook that changes its
/// filter at runtime (SIGHUP, `RELOAD`). Logs go to stdout: libpg_query
/// briefly redirects the process's stderr while it parses, which would
/// swallow log lines written by other threads meanwhile.
pub fn init_logging(cfg: &Config) -> crate::context::LogReload {
    use tracing_subscriber::EnvFilter;
    let filter = log_filter(&cfg.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    fn hook<L, S>(h: tracing_subscriber::reload::Handle<L, S>) -> crate::context::LogReload
    where
        L: From<EnvFilter> + Send + Sync + 'static,
        S: 'static,
    {
        Box::new(move |level: &str| {
            h.reload(L::from(log_filter(level)?))
                .map_err(|e| e.to_string())
        })
    }
    // Two chains: formatter and writer must be chosen before the reload layer.
    match cfg.log.format {
        LogFormat::Json => {
            let b = tracing_subscriber::fmt()
                .json()
                .with_writer(std::io::stdout)
                .with_env_filter(filter)
                .with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            hook(h)
        }
        LogFormat::Text => {
            let b = tracing_subscriber::fmt()
                .with_writer(std::io::stdout)
                .with_ansi(ansi)
                .with_env_filter(filter)
                .with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            hook(h)
        }
    }
}

/// `log.level`, with tokio-postgres held at `info` when it would say more:
/// at `debug` it logs every statement's parameters, the key hashes of the
/// registry's lookups among them.
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::filter::LevelFilter;
    let f = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    let verbose = f.max_level_hint().is_none_or(|l| l > LevelFilter::INFO);
    Ok(if verbose {
        f.add_directive("tokio_postgres=info".parse().expect("a valid directive"))
    } else {
        f
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    let json = cli.json;
    match cli.command {
        Command::Serve => {
            let log_reload = init_logging(&cfg);
            crate::serve(cfg, cli.config.clone(), log_reload).await
        }
        Command::Init { role_prefix } => {
            let secret = cfg.require_secret()?.to_owned();
            let mut client = connect(&cfg).await?;
            let created = admin::init(&mut client, &secret, role_prefix.as_deref()).await?;
            let value = serde_json::json!({ "default_tenant_created": created });
            output::emit(json, &value, || match created {
                Some(id) => println!("registry created; default tenant {id}"),
                None => println!("registry up to date"),
            })
        }
        Command::Tenant(cmd) => tenant::run(&cfg, json, cmd).await,
        Command::User(cmd) => user::run(&cfg, json, cmd).await,
        Command::Key(cmd) => key::run(&cfg, json, cmd).await,
        Command::AdoptLegacy {
            from_schema,
            dry_run,
        } => legacy::run(&cfg, json, &from_schema, dry_run).await,
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let tls =
        crate::pool::tls::BackendTlsPolicy::new(cfg.backend.tls, cfg.backend.tls_ca.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
    let pg = cfg.backend_pg_config()?;
    let timeout = std::time::Duration::from_millis(cfg.backend.connect_timeout_ms);
    let ep = crate::pool::server::Endpoint::from_pg(&pg, timeout, tls);
    // The CLI's runtime has tokio's timers (the proxy's has its own): an
    // unreachable database fails the command instead of hanging it.
    let (client, conn) = tokio::time::timeout(timeout, crate::pool::control::connect(&ep, &pg))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "cannot connect to backend.url: no answer within backend.connect_timeout_ms ({} ms)",
                timeout.as_millis()
            )
        })?
        .map_err(admin::AdminError::from)
        .context("cannot connect to backend.url")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "control connection closed");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokio_postgres_never_logs_below_info() {
        let shown = |level: &str| super::log_filter(level).unwrap().to_string();
        assert!(shown("debug").contains("tokio_postgres=info"));
        let told = shown("warn,tokio_postgres=trace");
        assert!(
            told.contains("tokio_postgres=info") && !told.contains("trace"),
            "{told}"
        );
        assert!(
            !shown("warn").contains("tokio_postgres"),
            "{}",
            shown("warn")
        );
    }
}

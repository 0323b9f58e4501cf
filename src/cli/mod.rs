//! Command-line interface: `serve` runs the proxy, the rest administer the
//! registry through an ordinary tokio-postgres connection. Every command
//! prints human output by default and one JSON document with `--json`; on
//! error it exits non-zero with one line (`pgtenant: <reason>`, printed by
//! main) and, since every change is one transaction, changes nothing.

mod key;
mod legacy;
mod logging;
mod output;
mod tenant;
mod user;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::registry::admin;
pub use key::KeyCmd;
pub use logging::init_logging;
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
        /// Also make ROLE a member of every tenant role, so that it can
        /// manage tenants as a control plane that is not superuser (run as
        /// a superuser, once, when moving to such a role).
        #[arg(long, value_name = "ROLE")]
        grant_roles_to: Option<String>,
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    let json = cli.json;
    match cli.command {
        Command::Serve => {
            let log_reload = init_logging(&cfg);
            crate::serve(cfg, cli.config.clone(), log_reload).await
        }
        Command::Init {
            role_prefix,
            grant_roles_to,
        } => {
            let secret = cfg.require_secret()?.to_owned();
            let mut client = connect(&cfg).await?;
            let (created, granted) = admin::init(
                &mut client,
                &secret,
                role_prefix.as_deref(),
                grant_roles_to.as_deref(),
            )
            .await?;
            let value = serde_json::json!({
                "default_tenant_created": created,
                "tenant_roles_granted": granted,
            });
            output::emit(json, &value, || {
                match created {
                    Some(id) => println!("registry created; default tenant {id}"),
                    None => println!("registry up to date"),
                }
                if let (Some(n), Some(to)) = (granted, &grant_roles_to) {
                    println!("{n} tenant roles granted to {to}");
                }
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

//! Command-line interface: `serve` runs the proxy, the rest administer the
//! registry through an ordinary tokio-postgres connection.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::registry::admin;

#[derive(Parser, Debug)]
#[command(name = "pgtenant", version, about = "Tenant-aware PostgreSQL proxy")]
pub struct Cli {
    /// TOML config file (every setting can also come from PGTENANT_* variables).
    #[arg(long, global = true, env = "PGTENANT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Serve,
    /// Create the registry schema and the default tenant (idempotent).
    Init,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant: registry row, schema and backend role, in one transaction. Prints its id.
    Create {
        name: String,
        /// Schema name (default: tenant_<name>).
        #[arg(long)]
        schema: Option<String>,
    },
    /// Refuse new logins of a tenant.
    Deactivate { name: String },
    /// Allow logins of a tenant again.
    Activate { name: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Issue an API key for a tenant. Prints the key (shown once) and nothing else.
    Issue {
        #[arg(long)]
        tenant: String,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a key by its id.
    Revoke { key_id: String },
}

pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            init_logging(&cfg);
            crate::serve(cfg).await
        }
        Command::Init => {
            let secret = cfg.require_secret()?.to_owned();
            let mut client = connect(&cfg).await?;
            match admin::init(&mut client, &secret).await? {
                Some(id) => println!("registry created; default tenant {id}"),
                None => println!("registry up to date"),
            }
            Ok(())
        }
        Command::Tenant(TenantCmd::Create { name, schema }) => {
            let secret = cfg.require_secret()?.to_owned();
            let mut client = connect(&cfg).await?;
            let id = admin::create_tenant(&mut client, &secret, &name, schema.as_deref()).await?;
            println!("{id}");
            Ok(())
        }
        Command::Tenant(TenantCmd::Deactivate { name }) => {
            admin::set_tenant_active(&mut connect(&cfg).await?, &name, false).await?;
            Ok(())
        }
        Command::Tenant(TenantCmd::Activate { name }) => {
            admin::set_tenant_active(&mut connect(&cfg).await?, &name, true).await?;
            Ok(())
        }
        Command::Key(KeyCmd::Issue { tenant, name }) => {
            let mut client = connect(&cfg).await?;
            let (id, key) = admin::issue_key(&mut client, &tenant, name.as_deref()).await?;
            eprintln!("key id {id} (the key below is shown once)");
            println!("{key}");
            Ok(())
        }
        Command::Key(KeyCmd::Revoke { key_id }) => {
            admin::revoke_key(&mut connect(&cfg).await?, &key_id).await?;
            Ok(())
        }
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let pg = cfg.backend_pg_config()?;
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(admin::AdminError::from)
        .context("cannot connect to backend.url")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "control connection closed");
        }
    });
    Ok(client)
}

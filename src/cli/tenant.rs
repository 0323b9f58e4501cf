//! `pgtenant tenant …`

use clap::Subcommand;

use super::connect;
use super::output::{emit, table};
use crate::config::Config;
use crate::registry::admin::{self, NewTenant, SchemaChoice, TenantInfo};

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant: registry row, schema and backend role, in one
    /// transaction. Prints its id.
    Create {
        /// [a-z][a-z0-9_]*, not pg_*, not reserved.
        name: String,
        /// Schema name (default: tenant_<name>).
        #[arg(long, conflicts_with = "opaque_schema")]
        schema: Option<String>,
        /// A JSON object stored with the tenant.
        #[arg(long)]
        metadata: Option<String>,
        /// Name schema and role t_<16 hex digits>, so the tenant's name shows
        /// up in no catalog other tenants can read.
        #[arg(long)]
        opaque_schema: bool,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Show { name: String },
    /// Refuse new logins of a tenant and end its live sessions.
    Deactivate { name: String },
    /// Allow logins of a tenant again.
    Activate { name: String },
    /// Drop a tenant: its schema with all data, its role, its users and
    /// keys, in one transaction. Not the default tenant.
    Drop {
        name: String,
        /// Confirm that the tenant's data is to be deleted.
        #[arg(long)]
        yes: bool,
    },
}

fn show(t: &TenantInfo) {
    println!("id:          {}", t.id);
    println!("name:        {}", t.name);
    println!("schema:      {}", t.schema);
    println!("role:        {}", t.role);
    println!("active:      {}", t.active);
    println!("created:     {}", t.created_at);
    println!("users:       {}", t.users);
    println!("active keys: {}", t.active_keys);
    println!("metadata:    {}", t.metadata);
}

pub async fn run(cfg: &Config, json: bool, cmd: TenantCmd) -> anyhow::Result<()> {
    let mut client = connect(cfg).await?;
    match cmd {
        TenantCmd::Create {
            name,
            schema,
            metadata,
            opaque_schema,
        } => {
            let secret = cfg.require_secret()?.to_owned();
            let schema = match (schema, opaque_schema) {
                (_, true) => SchemaChoice::Opaque,
                (Some(s), false) => SchemaChoice::Named(s),
                (None, false) => SchemaChoice::Default,
            };
            let new = NewTenant {
                name: &name,
                schema,
                metadata: metadata.as_deref(),
            };
            let t = admin::create_tenant(&mut client, &secret, &new).await?;
            emit(json, &t, || {
                eprintln!(
                    "tenant \"{}\" created: schema {}, role {}",
                    t.name, t.schema, t.role
                );
                println!("{}", t.id);
            })
        }
        TenantCmd::List => {
            let ts = admin::list_tenants(&client).await?;
            emit(json, &ts, || {
                let rows: Vec<Vec<String>> = ts
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.id.to_string(),
                            if t.active { "yes" } else { "no" }.into(),
                            t.schema.clone(),
                            t.role.clone(),
                            t.users.to_string(),
                            t.active_keys.to_string(),
                            t.created_at.clone(),
                        ]
                    })
                    .collect();
                let headers = [
                    "NAME", "ID", "ACTIVE", "SCHEMA", "ROLE", "USERS", "KEYS", "CREATED",
                ];
                table(&headers, &rows, "no tenants");
            })
        }
        TenantCmd::Show { name } => {
            let t = admin::show_tenant(&client, &name).await?;
            emit(json, &t, || show(&t))
        }
        TenantCmd::Deactivate { name } => set_active(&mut client, json, &name, false).await,
        TenantCmd::Activate { name } => set_active(&mut client, json, &name, true).await,
        TenantCmd::Drop { name, yes } => {
            let d = admin::drop_tenant(&mut client, &name, yes).await?;
            emit(json, &d, || {
                println!(
                    "tenant \"{}\" dropped (schema {}, role {}, its users and keys)",
                    d.name, d.schema, d.role
                )
            })
        }
    }
}

async fn set_active(
    client: &mut tokio_postgres::Client,
    json: bool,
    name: &str,
    active: bool,
) -> anyhow::Result<()> {
    let (t, changed) = admin::set_tenant_active(client, name, active).await?;
    let value = serde_json::json!({ "tenant": t, "changed": changed });
    emit(json, &value, || {
        let state = if active { "active" } else { "inactive" };
        if changed {
            let verb = if active { "activated" } else { "deactivated" };
            println!("tenant \"{}\" {verb}", t.name);
        } else {
            println!("tenant \"{}\" was already {state}", t.name);
        }
    })
}

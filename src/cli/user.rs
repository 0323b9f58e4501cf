//! `pgtenant user …`

use clap::Subcommand;

use super::connect;
use super::output::{emit, opt, table};
use crate::config::Config;
use crate::registry::admin;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user to a tenant (e-mails are unique per tenant, in any case).
    Add {
        #[arg(long)]
        tenant: String,
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's users.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Deactivate a user: its keys stop working and its sessions end.
    Deactivate {
        #[arg(long)]
        tenant: String,
        email: String,
    },
    /// Activate a user again.
    Activate {
        #[arg(long)]
        tenant: String,
        email: String,
    },
}

pub async fn run(cfg: &Config, json: bool, cmd: UserCmd) -> anyhow::Result<()> {
    let mut client = connect(cfg).await?;
    match cmd {
        UserCmd::Add {
            tenant,
            email,
            name,
        } => {
            let u = admin::add_user(&mut client, &tenant, &email, name.as_deref()).await?;
            emit(json, &u, || {
                eprintln!("user {} added to tenant \"{}\"", u.email, u.tenant);
                println!("{}", u.id);
            })
        }
        UserCmd::List { tenant } => {
            let us = admin::list_users(&client, &tenant).await?;
            emit(json, &us, || {
                let rows: Vec<Vec<String>> = us
                    .iter()
                    .map(|u| {
                        vec![
                            u.email.clone(),
                            opt(&u.name),
                            u.id.to_string(),
                            if u.active { "yes" } else { "no" }.into(),
                            u.active_keys.to_string(),
                            u.created_at.clone(),
                        ]
                    })
                    .collect();
                let headers = ["EMAIL", "NAME", "ID", "ACTIVE", "KEYS", "CREATED"];
                table(&headers, &rows, "no users");
            })
        }
        UserCmd::Deactivate { tenant, email } => {
            set_active(&mut client, json, &tenant, &email, false).await
        }
        UserCmd::Activate { tenant, email } => {
            set_active(&mut client, json, &tenant, &email, true).await
        }
    }
}

async fn set_active(
    client: &mut tokio_postgres::Client,
    json: bool,
    tenant: &str,
    email: &str,
    active: bool,
) -> anyhow::Result<()> {
    let (u, changed) = admin::set_user_active(client, tenant, email, active).await?;
    let value = serde_json::json!({ "user": u, "changed": changed });
    emit(json, &value, || {
        let (verb, state) = if active {
            ("activated", "active")
        } else {
            ("deactivated", "inactive")
        };
        if changed {
            println!("user {} of tenant \"{}\" {verb}", u.email, u.tenant);
        } else {
            println!(
                "user {} of tenant \"{}\" was already {state}",
                u.email, u.tenant
            );
        }
    })
}

//! `pgtenant key …`. A new key is printed once, alone on stdout (so that
//! `KEY=$(pgtenant key issue …)` works); everything else about it goes to
//! stderr. No command ever prints a key's hash.

use clap::Subcommand;

use super::connect;
use super::output::{emit, opt, table};
use crate::config::Config;
use crate::registry::admin::{self, NewKey};

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Issue an API key for a tenant. Prints the key (shown once) and nothing
    /// else on stdout.
    Issue {
        #[arg(long)]
        tenant: String,
        /// Issue the key to this user of the tenant (by e-mail).
        #[arg(long)]
        user: Option<String>,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime (90m, 12h, 30d, 2w, 1h30m) or a timestamp
        /// (2030-01-31T00:00:00Z). Default: no expiry.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never the key or its hash).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by its id: new logins fail and its sessions end.
    Revoke { key_id: String },
    /// Issue a successor of a key (same tenant, user and label) and keep the
    /// old key valid for a grace period, so clients can switch without downtime.
    Rotate {
        key_id: String,
        /// How long the old key keeps working (0s: revoke it now).
        #[arg(long, default_value = "24h")]
        grace: String,
        /// Lifetime of the new key, as for `key issue`. Default: no expiry.
        #[arg(long)]
        expires: Option<String>,
    },
}

pub async fn run(cfg: &Config, json: bool, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Issue {
            tenant,
            user,
            name,
            expires,
        } => {
            let expires = expires.as_deref().map(admin::parse_expiry).transpose()?;
            let mut client = connect(cfg).await?;
            let new = NewKey {
                tenant: &tenant,
                user: user.as_deref(),
                name: name.as_deref(),
                expires: expires.as_ref(),
            };
            let k = admin::issue_key(&mut client, &new).await?;
            emit(json, &k, || {
                let until = k
                    .expires_at
                    .as_ref()
                    .map(|e| format!(", valid until {e}"))
                    .unwrap_or_default();
                eprintln!("key id {}{until} (the key below is shown once)", k.id);
                println!("{}", k.key);
            })
        }
        KeyCmd::List { tenant } => {
            let client = connect(cfg).await?;
            let ks = admin::list_keys(&client, tenant.as_deref()).await?;
            emit(json, &ks, || {
                let rows: Vec<Vec<String>> = ks
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.to_string(),
                            k.tenant.clone(),
                            opt(&k.name),
                            opt(&k.user),
                            k.created_at.clone(),
                            opt(&k.last_used_at),
                            opt(&k.expires_at),
                            k.status.clone(),
                        ]
                    })
                    .collect();
                let headers = [
                    "ID",
                    "TENANT",
                    "NAME",
                    "USER",
                    "CREATED",
                    "LAST USED",
                    "EXPIRES",
                    "STATUS",
                ];
                table(&headers, &rows, "no keys");
            })
        }
        KeyCmd::Revoke { key_id } => {
            let mut client = connect(cfg).await?;
            let (tenant, changed) = admin::revoke_key(&mut client, &key_id).await?;
            let value =
                serde_json::json!({ "id": key_id.trim(), "tenant": tenant, "changed": changed });
            emit(json, &value, || {
                if changed {
                    println!("key {} of tenant \"{tenant}\" revoked", key_id.trim());
                } else {
                    println!(
                        "key {} of tenant \"{tenant}\" was already revoked",
                        key_id.trim()
                    );
                }
            })
        }
        KeyCmd::Rotate {
            key_id,
            grace,
            expires,
        } => {
            let grace = admin::parse_duration(&grace)?;
            let expires = expires.as_deref().map(admin::parse_expiry).transpose()?;
            let mut client = connect(cfg).await?;
            let r = admin::rotate_key(&mut client, &key_id, grace, expires.as_ref()).await?;
            emit(json, &r, || {
                let old = match &r.old_valid_until {
                    Some(t) => format!("stays valid until {t}"),
                    None => "is revoked".to_owned(),
                };
                eprintln!(
                    "key id {} replaces {}, which {old} (the new key below is shown once)",
                    r.new.id, r.old_id
                );
                println!("{}", r.new.key);
            })
        }
    }
}

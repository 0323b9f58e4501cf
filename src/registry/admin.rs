//! Control-plane operations behind the CLI. Each change runs in one
//! transaction, so a failure leaves the registry and the catalog as they were.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_postgres::Client;
use uuid::Uuid;

use super::schema::{ADVISORY_LOCK, DDL};
use crate::auth::key;

pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Db(String),
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("tenant \"{0}\" already exists")]
    TenantExists(String),
    #[error("no tenant named \"{0}\"")]
    NoSuchTenant(String),
    #[error("no API key with id {0}")]
    NoSuchKey(String),
    #[error("the registry is not initialised in this database; run `pgtenant init` first")]
    NotInitialised,
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The database's own message is what a person can act on.
        AdminError::Db(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

/// The password of a tenant's backend role: HMAC-SHA256(secret, role), hex.
/// Derived, so nothing secret is stored anywhere.
pub fn role_password(secret: &str, role: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(role.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const RESERVED: &[&str] = &["pgtenant", "public", "information_schema", "postgres"];

/// Tenant and schema names: `[a-z][a-z0-9_]*`, at most 63 bytes, not
/// `pg_*`, not a reserved name.
pub fn validate_name(name: &str) -> Result<(), AdminError> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 63 {
        "must be at most 63 bytes"
    } else if !name.as_bytes()[0].is_ascii_lowercase()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        "must match [a-z][a-z0-9_]*"
    } else if name.starts_with("pg_") {
        "must not start with pg_ (reserved by PostgreSQL)"
    } else if RESERVED.contains(&name) {
        "is reserved"
    } else {
        return Ok(());
    };
    Err(AdminError::InvalidName {
        name: name.to_owned(),
        why,
    })
}

/// Creates the registry and the default tenant (idempotent).
pub async fn init(client: &mut Client, secret: &str) -> Result<Option<Uuid>, AdminError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADVISORY_LOCK])
        .await?;
    tx.batch_execute(DDL).await?;
    let exists = tx
        .query_opt(
            "SELECT id FROM pgtenant.tenants WHERE name = $1",
            &[&DEFAULT_TENANT],
        )
        .await?;
    let created = match exists {
        Some(_) => None,
        None => Some(provision(&tx, secret, DEFAULT_TENANT, None).await?),
    };
    tx.commit().await?;
    Ok(created)
}

pub async fn create_tenant(
    client: &mut Client,
    secret: &str,
    name: &str,
    schema: Option<&str>,
) -> Result<Uuid, AdminError> {
    validate_name(name)?;
    let tx = client.transaction().await?;
    lock(&tx).await?;
    let id = provision(&tx, secret, name, schema).await?;
    tx.commit().await?;
    Ok(id)
}

/// Registry row + role + schema, pinned together, inside the caller's transaction.
async fn provision(
    tx: &tokio_postgres::Transaction<'_>,
    secret: &str,
    name: &str,
    schema: Option<&str>,
) -> Result<Uuid, AdminError> {
    let schema = match schema {
        Some(s) => s.to_owned(),
        None => format!("tenant_{name}"),
    };
    validate_name(&schema)?;
    // The role is named after the schema: one name to recognise in pg_stat_activity.
    let role = schema.clone();
    let taken = tx
        .query_opt(
            "SELECT 1 FROM pgtenant.tenants WHERE name = $1 OR schema_name = $2",
            &[&name, &schema],
        )
        .await?;
    if taken.is_some() {
        return Err(AdminError::TenantExists(name.to_owned()));
    }
    let id = Uuid::new_v4();
    tx.execute(
        "INSERT INTO pgtenant.tenants (id, name, schema_name, role_name) VALUES ($1, $2, $3, $4)",
        &[&id, &name, &schema, &role],
    )
    .await?;
    // The SCRAM verifier is computed here, so the password itself never
    // appears in a statement (or in the server log).
    let verifier =
        postgres_protocol::password::scram_sha_256(role_password(secret, &role).as_bytes());
    let (r, s) = (quote_ident(&role), quote_ident(&schema));
    tx.batch_execute(&format!(
        "CREATE ROLE {r} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD '{verifier}';
         CREATE SCHEMA {s} AUTHORIZATION {r};
         ALTER ROLE {r} SET search_path = {s};"
    ))
    .await?;
    Ok(id)
}

async fn lock(tx: &tokio_postgres::Transaction<'_>) -> Result<(), AdminError> {
    let initialised: bool = tx
        .query_one("SELECT to_regclass('pgtenant.tenants') IS NOT NULL", &[])
        .await?
        .get(0);
    if !initialised {
        return Err(AdminError::NotInitialised);
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADVISORY_LOCK])
        .await?;
    Ok(())
}

/// Issues a key; returns its id and the key itself (shown once, never stored).
pub async fn issue_key(
    client: &mut Client,
    tenant: &str,
    label: Option<&str>,
) -> Result<(Uuid, String), AdminError> {
    let tx = client.transaction().await?;
    lock(&tx).await?;
    let tenant_id: Uuid = tx
        .query_opt(
            "SELECT id FROM pgtenant.tenants WHERE name = $1",
            &[&tenant],
        )
        .await?
        .ok_or_else(|| AdminError::NoSuchTenant(tenant.to_owned()))?
        .get(0);
    let key = key::generate();
    let id = Uuid::new_v4();
    tx.execute(
        "INSERT INTO pgtenant.api_keys (id, tenant_id, key_hash, name) VALUES ($1, $2, $3, $4)",
        &[&id, &tenant_id, &key::hash_hex(&key), &label],
    )
    .await?;
    tx.commit().await?;
    Ok((id, key))
}

pub async fn revoke_key(client: &mut Client, key_id: &str) -> Result<(), AdminError> {
    let id: Uuid = key_id
        .parse()
        .map_err(|_| AdminError::NoSuchKey(key_id.to_owned()))?;
    let n = client
        .execute(
            "UPDATE pgtenant.api_keys SET active = false WHERE id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(AdminError::NoSuchKey(key_id.to_owned()));
    }
    Ok(())
}

/// Sets a tenant's `active` flag.
pub async fn set_tenant_active(
    client: &mut Client,
    name: &str,
    active: bool,
) -> Result<(), AdminError> {
    let n = client
        .execute(
            "UPDATE pgtenant.tenants SET active = $2 WHERE name = $1",
            &[&name, &active],
        )
        .await?;
    if n == 0 {
        return Err(AdminError::NoSuchTenant(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["acme", "a1_b", "tenant_default"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Acme",
            "1a",
            "a-b",
            "pg_x",
            "public",
            "pgtenant",
            &"a".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_password_is_deterministic_per_role() {
        let a = role_password("s3cret-s3cret-s3cret", "tenant_a");
        assert_eq!(a, role_password("s3cret-s3cret-s3cret", "tenant_a"));
        assert_ne!(a, role_password("s3cret-s3cret-s3cret", "tenant_b"));
        assert_eq!(a.len(), 64);
    }
}

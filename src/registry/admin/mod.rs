//! Control-plane operations behind the CLI, one concern per file:
//! [`tenants`], [`users`], [`keys`], [`legacy`] adoption. Every change runs
//! in one transaction under the registry's advisory lock, so a failure
//! leaves the registry and the catalog exactly as they were.

pub mod keys;
pub mod legacy;
pub mod tenants;
pub mod users;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::schema::ADVISORY_LOCK;

pub use keys::{
    Expiry, IssuedKey, KeyRow, NewKey, Rotated, issue_key, list_keys, parse_duration, parse_expiry,
    revoke_key, rotate_key,
};
pub use legacy::{Adoption, LegacyObject, adopt_legacy};
pub use tenants::{
    DroppedTenant, NewTenant, SchemaChoice, TenantInfo, create_tenant, drop_tenant, init,
    list_tenants, set_tenant_active, show_tenant,
};
pub use users::{UserInfo, add_user, list_users, set_user_active};

pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database refused; its SQLSTATE and message are what a person can act on.
    #[error("{0}")]
    Db(String),
    #[error("invalid {what} {name:?}: {why}")]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("tenant \"{0}\" already exists")]
    TenantExists(String),
    #[error("schema \"{schema}\" is already used by tenant \"{tenant}\"")]
    SchemaTaken { schema: String, tenant: String },
    #[error(
        "schema \"{0}\" already exists in this database but belongs to no tenant; \
         choose another with --schema"
    )]
    SchemaExists(String),
    #[error(
        "role \"{0}\" already exists in this PostgreSQL cluster (roles are cluster-wide: \
         another pgtenant registry or an application may own it); {1}"
    )]
    RoleExists(String, &'static str),
    #[error("no tenant named \"{0}\"")]
    NoSuchTenant(String),
    #[error("no API key with id {0}")]
    NoSuchKey(Uuid),
    /// The text given is never shown: it may be the key itself.
    #[error(
        "not an API key id: ids are UUIDs, as `pgtenant key list` shows them (never pass the key itself)"
    )]
    NotAKeyId,
    #[error("tenant \"{tenant}\" has no user with e-mail {email:?}")]
    NoSuchUser { tenant: String, email: String },
    #[error(
        "tenant \"{tenant}\" already has a user with e-mail {email:?} (e-mails are case-insensitive)"
    )]
    UserExists { tenant: String, email: String },
    #[error("user {0:?} is inactive; activate it first")]
    UserInactive(String),
    #[error("invalid e-mail address {0:?}")]
    InvalidEmail(String),
    #[error("--metadata: {0}")]
    InvalidMetadata(String),
    #[error("invalid duration {value:?}: {why}")]
    InvalidDuration { value: String, why: &'static str },
    #[error("--expires {0:?} is not in the future")]
    ExpiresInPast(String),
    #[error("API key {0} is revoked or expired; issue a new one with `pgtenant key issue`")]
    KeyNotActive(Uuid),
    #[error("API key {old} was already rotated to {new}; rotate {new} instead")]
    AlreadyRotated { old: Uuid, new: Uuid },
    #[error("the default tenant cannot be dropped (it holds the adopted legacy data)")]
    DropDefault,
    #[error(
        "refusing to drop tenant \"{tenant}\" without --yes: this drops schema \"{schema}\" \
         with all its data and role \"{role}\""
    )]
    NotConfirmed {
        tenant: String,
        schema: String,
        role: String,
    },
    #[error(
        "a session of tenant \"{0}\" holds locks on its objects; run `pgtenant tenant \
         deactivate {0}` first (with registry.on_revoke = terminate, the default, that \
         ends its sessions; otherwise wait for them to end), then drop it"
    )]
    TenantBusy(String),
    #[error(
        "this registry's role prefix is {stored:?} and cannot be changed to {given:?} \
         (existing roles keep their names)"
    )]
    PrefixMismatch { stored: String, given: String },
    #[error("--from-schema {0:?}: {1}")]
    BadLegacySchema(String, &'static str),
    #[error("the registry is not initialised in this database; run `pgtenant init` first")]
    NotInitialised,
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        AdminError::Db(match e.as_db_error() {
            Some(db) => {
                let mut s = format!("{}: {}", db.code().code(), db.message());
                if let Some(d) = db.detail() {
                    s.push_str(&format!(" ({d})"));
                }
                // The CLI promises one line.
                s.replace('\n', "; ")
            }
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

/// Names PostgreSQL or pgtenant itself uses. `none`, `current_user` & co.
/// are refused by CREATE ROLE even when quoted.
const RESERVED: &[&str] = &[
    "pgtenant",
    "public",
    "information_schema",
    "postgres",
    "none",
    "current_user",
    "current_role",
    "session_user",
    "user",
];

/// What a name is for, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Tenant,
    Schema,
    RolePrefix,
}

impl NameKind {
    fn what(self) -> &'static str {
        match self {
            NameKind::Tenant => "tenant name",
            NameKind::Schema => "schema name",
            NameKind::RolePrefix => "role prefix",
        }
    }
}

/// Tenant and schema names (and role prefixes): `[a-z][a-z0-9_]*`, at most
/// 63 bytes (PostgreSQL's identifier limit), not `pg_*`, not reserved.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), AdminError> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 63 {
        "must be at most 63 bytes"
    } else if !name.as_bytes()[0].is_ascii_lowercase()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        "must be a lowercase letter followed by lowercase letters, digits or _ ([a-z][a-z0-9_]*)"
    } else if name.starts_with("pg_") {
        "must not start with pg_ (reserved by PostgreSQL)"
    } else if RESERVED.contains(&name) {
        "is reserved"
    } else {
        return Ok(());
    };
    Err(AdminError::InvalidName {
        what: kind.what(),
        name: name.to_owned(),
        why,
    })
}

/// Starts the one transaction a change runs in, serialized with every other
/// change (and `init`) by the registry's advisory lock.
pub(crate) async fn begin(client: &mut Client) -> Result<Transaction<'_>, AdminError> {
    let tx = client.transaction().await?;
    let initialised: bool = tx
        .query_one("SELECT to_regclass('pgtenant.tenants') IS NOT NULL", &[])
        .await?
        .get(0);
    if !initialised {
        return Err(AdminError::NotInitialised);
    }
    // Bounded: a change stuck behind another (a hung CLI, an open
    // transaction) fails with 55P03 instead of waiting for ever.
    tx.batch_execute("SET LOCAL lock_timeout = '30s'").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADVISORY_LOCK])
        .await?;
    tx.batch_execute("SET LOCAL lock_timeout = DEFAULT").await?;
    Ok(tx)
}

/// For read-only commands: the same "not initialised" message as changes get.
pub(crate) async fn check_initialised(c: &impl GenericClient) -> Result<(), AdminError> {
    let ok: bool = c
        .query_one("SELECT to_regclass('pgtenant.tenants') IS NOT NULL", &[])
        .await?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(AdminError::NotInitialised)
    }
}

/// A tenant's registry row, as commands need it.
#[derive(Debug, Clone)]
pub(crate) struct TenantRef {
    pub id: Uuid,
    pub name: String,
    pub schema: String,
    pub role: String,
    pub active: bool,
}

/// The tenant named `name`; `FOR UPDATE` when `lock` (inside a change).
pub(crate) async fn find_tenant(
    c: &impl GenericClient,
    name: &str,
    lock: bool,
) -> Result<TenantRef, AdminError> {
    let sql = format!(
        "SELECT id, name, schema_name::text, role_name::text, active \
           FROM pgtenant.tenants WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = c
        .query_opt(&sql, &[&name])
        .await?
        .ok_or_else(|| AdminError::NoSuchTenant(name.to_owned()))?;
    Ok(TenantRef {
        id: row.get(0),
        name: row.get(1),
        schema: row.get(2),
        role: row.get(3),
        active: row.get(4),
    })
}

/// SQL rendering a timestamptz column as RFC 3339 UTC text: the registry
/// client has no date/time crate, and text is what the CLI prints anyway.
pub(crate) fn ts(col: &str) -> String {
    format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["acme", "a1_b", "tenant_default", &"a".repeat(63)] {
            validate_name(NameKind::Tenant, ok).unwrap();
        }
        for bad in [
            "",
            "Acme",
            "1a",
            "a-b",
            "a b",
            "é",
            "pg_x",
            "public",
            "pgtenant",
            "none",
            "current_user",
            &"a".repeat(64),
        ] {
            assert!(validate_name(NameKind::Tenant, bad).is_err(), "{bad}");
        }
        let e = validate_name(NameKind::Schema, "Bad")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid schema name \"Bad\": "), "{e}");
    }

    #[test]
    fn role_password_is_deterministic_per_role() {
        let a = role_password("s3cret-s3cret-s3cret", "tenant_a");
        assert_eq!(a, role_password("s3cret-s3cret-s3cret", "tenant_a"));
        assert_ne!(a, role_password("s3cret-s3cret-s3cret", "tenant_b"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}

//! Tenants: a registry row, a schema and a backend role that owns it,
//! created and dropped together.

use serde::Serialize;
use tokio_postgres::{Client, GenericClient, Row, Transaction};
use uuid::Uuid;

use super::{
    AdminError, DEFAULT_TENANT, NameKind, begin, check_initialised, find_tenant, quote_ident,
    role_password, ts, validate_name,
};
use crate::registry::schema::{ADVISORY_LOCK, DDL};

/// How a new tenant's schema is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChoice {
    /// `tenant_<name>`.
    Default,
    Named(String),
    /// `t_<16 hex>`: the tenant's name shows up in no catalog that other
    /// tenants can read (pg_namespace, pg_roles are world-readable).
    Opaque,
}

pub struct NewTenant<'a> {
    pub name: &'a str,
    pub schema: SchemaChoice,
    /// A JSON object, stored as given.
    pub metadata: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub id: Uuid,
    pub name: String,
    pub schema: String,
    pub role: String,
    pub active: bool,
    pub created_at: String,
    pub metadata: serde_json::Value,
    pub users: i64,
    /// Keys that can log in now (active, unexpired).
    pub active_keys: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DroppedTenant {
    pub id: Uuid,
    pub name: String,
    pub schema: String,
    pub role: String,
}

/// Creates or upgrades the registry and creates the default tenant
/// (idempotent). `role_prefix` is fixed at the first `init`: every tenant
/// role of this registry is named `<prefix><schema>`, so that two registries
/// (two databases) can share one cluster, where roles are global.
/// With `grant_to`, also grants every tenant role to that role (see
/// `grant_tenant_roles`): the number granted.
pub async fn init(
    client: &mut Client,
    secret: &str,
    role_prefix: Option<&str>,
    grant_to: Option<&str>,
) -> Result<(Option<Uuid>, Option<u64>), AdminError> {
    if let Some(p) = role_prefix.filter(|p| !p.is_empty()) {
        validate_name(NameKind::RolePrefix, p)?;
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADVISORY_LOCK])
        .await?;
    // The DDL's `IF NOT EXISTS` still takes its table locks, and every
    // login's key lookup would queue behind one waiting on, say, a
    // pg_dump: re-running `init` on a busy registry fails (55P03, retry)
    // rather than stall logins.
    tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
    tx.batch_execute(DDL).await?;
    let stored: Option<String> = tx
        .query_opt("SELECT role_prefix FROM pgtenant.settings", &[])
        .await?
        .map(|r| r.get(0));
    let has_tenants: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pgtenant.tenants)", &[])
        .await?
        .get(0);
    // A registry from before the settings table has unprefixed roles.
    let stored = stored.or_else(|| has_tenants.then(String::new));
    let prefix = match (stored, role_prefix) {
        (Some(s), Some(g)) if s != g => {
            return Err(AdminError::PrefixMismatch {
                stored: s,
                given: g.to_owned(),
            });
        }
        (Some(s), _) => s,
        (None, g) => g.unwrap_or("").to_owned(),
    };
    tx.execute(
        "INSERT INTO pgtenant.settings (role_prefix) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&prefix],
    )
    .await?;
    let created = if has_tenants
        && tx
            .query_opt(
                "SELECT 1 FROM pgtenant.tenants WHERE name = $1",
                &[&DEFAULT_TENANT],
            )
            .await?
            .is_some()
    {
        None
    } else {
        let new = NewTenant {
            name: DEFAULT_TENANT,
            schema: SchemaChoice::Default,
            metadata: None,
        };
        Some(provision(&tx, secret, &new, INIT_HINT).await?)
    };
    let granted = match grant_to {
        Some(to) => Some(grant_tenant_roles(&tx, to).await?),
        None => None,
    };
    tx.commit().await?;
    Ok((created, granted))
}

/// Makes `grantee` a member of every tenant role of the registry (that
/// exists), so that it can manage them as a control plane that is not
/// superuser: roles `tenant create` made before it granted its own
/// (0f3117e), or made by another role. Needs a superuser (or a role with
/// ADMIN on them); the number granted. Idempotent.
async fn grant_tenant_roles(tx: &Transaction<'_>, grantee: &str) -> Result<u64, AdminError> {
    let roles: Vec<String> = tx
        .query(
            "SELECT t.role_name FROM pgtenant.tenants t \
              WHERE EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = t.role_name) \
              ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let to = quote_ident(grantee);
    let sql: String = roles
        .iter()
        .map(|r| format!("GRANT {} TO {to};", quote_ident(r)))
        .collect();
    if !sql.is_empty() {
        tx.batch_execute(&sql).await?;
    }
    Ok(roles.len() as u64)
}

const INIT_HINT: &str = "give this registry its own role names with \
                         `pgtenant init --role-prefix <prefix>` (e.g. app2_)";
const CREATE_HINT: &str = "choose another tenant name or --schema";

pub async fn create_tenant(
    client: &mut Client,
    secret: &str,
    new: &NewTenant<'_>,
) -> Result<TenantInfo, AdminError> {
    validate_name(NameKind::Tenant, new.name)?;
    let tx = begin(client).await?;
    let id = provision(&tx, secret, new, CREATE_HINT).await?;
    let info = info_by_id(&tx, id).await?;
    tx.commit().await?;
    Ok(info)
}

/// Registry row + role + schema, pinned together, inside the caller's transaction.
async fn provision(
    tx: &Transaction<'_>,
    secret: &str,
    new: &NewTenant<'_>,
    role_hint: &'static str,
) -> Result<Uuid, AdminError> {
    let metadata = match new.metadata {
        None => "{}".to_owned(),
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| AdminError::InvalidMetadata(format!("not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(AdminError::InvalidMetadata("must be a JSON object".into()));
            }
            v.to_string()
        }
    };
    let schema = match &new.schema {
        SchemaChoice::Default => {
            let s = format!("tenant_{}", new.name);
            if s.len() > 63 {
                return Err(AdminError::InvalidName {
                    what: "tenant name",
                    name: new.name.to_owned(),
                    why: "is too long for the schema name tenant_<name> (63 bytes); \
                          give --schema or --opaque-schema",
                });
            }
            s
        }
        SchemaChoice::Named(s) => s.clone(),
        SchemaChoice::Opaque => opaque_schema(tx).await?,
    };
    validate_name(NameKind::Schema, &schema)?;
    let prefix: String = tx
        .query_opt("SELECT role_prefix FROM pgtenant.settings", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or_default();
    // The role is named after the schema: one name to recognise in pg_stat_activity.
    let role = format!("{prefix}{schema}");
    if role.len() > 63 {
        return Err(AdminError::InvalidName {
            what: "role name",
            name: role,
            why: "role prefix + schema name must be at most 63 bytes",
        });
    }
    let taken = tx
        .query_opt(
            // Two tenants may hold the name and the schema: the name first.
            "SELECT name, schema_name::text FROM pgtenant.tenants \
              WHERE name = $1 OR schema_name = $2 OR role_name = $3 \
              ORDER BY (name = $1) DESC LIMIT 1",
            &[&new.name, &schema, &role],
        )
        .await?;
    if let Some(row) = taken {
        let owner: String = row.get(0);
        return Err(if owner == new.name {
            AdminError::TenantExists(owner)
        } else {
            AdminError::SchemaTaken {
                schema,
                tenant: owner,
            }
        });
    }
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
            &[&schema, &role],
        )
        .await?;
    if row.get::<_, bool>(0) {
        return Err(AdminError::SchemaExists(schema));
    }
    if row.get::<_, bool>(1) {
        return Err(AdminError::RoleExists(role, role_hint));
    }
    let id = Uuid::new_v4();
    tx.execute(
        "INSERT INTO pgtenant.tenants (id, name, schema_name, role_name, metadata) \
         VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        &[&id, &new.name, &schema, &role, &metadata],
    )
    .await?;
    // The SCRAM verifier is computed here, so the password itself never
    // appears in a statement (or in the server log).
    let verifier =
        postgres_protocol::password::scram_sha_256(role_password(secret, &role).as_bytes());
    let (r, s) = (quote_ident(&role), quote_ident(&schema));
    // A control-plane role that is not superuser (managed PostgreSQL
    // gives none) may create a schema owned by the tenant role, and later
    // drop what it owns, only as a member of it.
    tx.batch_execute(&format!(
        "CREATE ROLE {r} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD '{verifier}';
         GRANT {r} TO CURRENT_USER;
         CREATE SCHEMA {s} AUTHORIZATION {r};
         ALTER ROLE {r} SET search_path = {s};"
    ))
    .await
    .map_err(|e| made_meanwhile(e, &role, role_hint, &schema))?;
    Ok(id)
}

/// The role or schema was made by another since it was looked for (roles
/// are cluster-wide: another registry's `tenant create`, which this one's
/// lock does not hold back): the same answer as when it was there before.
fn made_meanwhile(
    e: tokio_postgres::Error,
    role: &str,
    role_hint: &'static str,
    schema: &str,
) -> AdminError {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        return e.into();
    };
    let code = db.code();
    let index = db.constraint().unwrap_or("");
    if *code == SqlState::DUPLICATE_OBJECT || index == "pg_authid_rolname_index" {
        AdminError::RoleExists(role.to_owned(), role_hint)
    } else if *code == SqlState::DUPLICATE_SCHEMA || index == "pg_namespace_nspname_index" {
        AdminError::SchemaExists(schema.to_owned())
    } else {
        e.into()
    }
}

/// `t_` + 64 random bits in hex; retried on the (unlikely) clash.
async fn opaque_schema(tx: &Transaction<'_>) -> Result<String, AdminError> {
    loop {
        let s = format!("t_{:016x}", rand::random::<u64>());
        let used: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) \
                     OR EXISTS (SELECT 1 FROM pgtenant.tenants WHERE schema_name = $1)",
                &[&s],
            )
            .await?
            .get(0);
        if !used {
            return Ok(s);
        }
    }
}

fn info_sql(filter: &str) -> String {
    format!(
        "SELECT t.id, t.name, t.schema_name::text, t.role_name::text, t.active, {}, \
                t.metadata::text, \
                (SELECT count(*) FROM pgtenant.users u WHERE u.tenant_id = t.id), \
                (SELECT count(*) FROM pgtenant.api_keys k WHERE k.tenant_id = t.id AND k.active \
                    AND (k.expires_at IS NULL OR k.expires_at > now())) \
           FROM pgtenant.tenants t {filter} ORDER BY t.name",
        ts("t.created_at")
    )
}

fn info_from(row: &Row) -> TenantInfo {
    TenantInfo {
        id: row.get(0),
        name: row.get(1),
        schema: row.get(2),
        role: row.get(3),
        active: row.get(4),
        created_at: row.get(5),
        metadata: serde_json::from_str(row.get(6)).unwrap_or(serde_json::Value::Null),
        users: row.get(7),
        active_keys: row.get(8),
    }
}

async fn info_by_id(c: &impl GenericClient, id: Uuid) -> Result<TenantInfo, AdminError> {
    let row = c.query_one(&info_sql("WHERE t.id = $1"), &[&id]).await?;
    Ok(info_from(&row))
}

pub async fn list_tenants(client: &Client) -> Result<Vec<TenantInfo>, AdminError> {
    check_initialised(client).await?;
    let rows = client.query(&info_sql(""), &[]).await?;
    Ok(rows.iter().map(info_from).collect())
}

pub async fn show_tenant(client: &Client, name: &str) -> Result<TenantInfo, AdminError> {
    check_initialised(client).await?;
    let row = client
        .query_opt(&info_sql("WHERE t.name = $1"), &[&name])
        .await?
        .ok_or_else(|| AdminError::NoSuchTenant(name.to_owned()))?;
    Ok(info_from(&row))
}

/// Sets a tenant's `active` flag; returns the tenant and whether it changed.
/// The registry trigger tells every proxy, which refuses new logins (and,
/// with `on_revoke = terminate`, ends the tenant's sessions).
pub async fn set_tenant_active(
    client: &mut Client,
    name: &str,
    active: bool,
) -> Result<(TenantInfo, bool), AdminError> {
    let tx = begin(client).await?;
    let t = find_tenant(&tx, name, true).await?;
    let changed = t.active != active;
    if changed {
        tx.execute(
            "UPDATE pgtenant.tenants SET active = $2 WHERE id = $1",
            &[&t.id, &active],
        )
        .await?;
    }
    let info = info_by_id(&tx, t.id).await?;
    tx.commit().await?;
    Ok((info, changed))
}

/// Drops the tenant's schema with everything in it, its role and its
/// registry rows (users and keys cascade), in one transaction.
pub async fn drop_tenant(
    client: &mut Client,
    name: &str,
    confirmed: bool,
) -> Result<DroppedTenant, AdminError> {
    if name == DEFAULT_TENANT {
        return Err(AdminError::DropDefault);
    }
    let tx = begin(client).await?;
    let t = find_tenant(&tx, name, true).await?;
    if !confirmed {
        return Err(AdminError::NotConfirmed {
            tenant: t.name,
            schema: t.schema,
            role: t.role,
        });
    }
    // A live session inside a transaction on the tenant's tables would make
    // DROP SCHEMA wait forever; fail with advice instead.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
    let (r, s) = (quote_ident(&t.role), quote_ident(&t.schema));
    let role_exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&t.role],
        )
        .await?
        .get(0);
    // DROP OWNED also takes the role's grants and objects outside its schema
    // in this database; objects in other databases make DROP ROLE fail, and
    // its message names them.
    let sql = if role_exists {
        format!("DROP SCHEMA IF EXISTS {s} CASCADE; DROP OWNED BY {r}; DROP ROLE {r};")
    } else {
        format!("DROP SCHEMA IF EXISTS {s} CASCADE;")
    };
    let dropped = tx.batch_execute(&sql).await;
    if let Err(e) = dropped {
        return Err(match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => {
                AdminError::TenantBusy(t.name)
            }
            _ => e.into(),
        });
    }
    tx.execute("DELETE FROM pgtenant.tenants WHERE id = $1", &[&t.id])
        .await?;
    tx.commit().await?;
    Ok(DroppedTenant {
        id: t.id,
        name: t.name,
        schema: t.schema,
        role: t.role,
    })
}

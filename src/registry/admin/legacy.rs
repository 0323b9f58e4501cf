//! `adopt-legacy`: moves a single-tenant application's objects from its
//! schema (usually `public`) into the default tenant's schema and gives them
//! to the default tenant's role, so the app keeps working unchanged through
//! the proxy with a default-tenant key (its unqualified names now resolve
//! through the role's pinned search_path).
//!
//! Moved: tables (with their indexes, constraints, triggers and owned or
//! identity sequences, which `ALTER TABLE … SET SCHEMA` carries along),
//! partitioned tables and partitions, views, materialized views, standalone
//! sequences, foreign tables, functions, procedures, aggregates, enum,
//! composite, range and multirange types, domains. Extension members stay where their
//! extension put them. `SET SCHEMA` keeps OIDs, so every reference by OID
//! (column defaults, view definitions, foreign keys) stays valid.

use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use super::{AdminError, DEFAULT_TENANT, begin, find_tenant, quote_ident};

#[derive(Debug, Clone, Serialize)]
pub struct LegacyObject {
    pub kind: &'static str,
    /// Name in the legacy schema; routines with their argument types.
    pub name: String,
    /// Owned sequences that move along with a table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moves_with: Vec<String>,
    #[serde(skip)]
    alter: &'static str,
    /// Reference to the object in the source schema, ready for SQL.
    #[serde(skip)]
    target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adoption {
    pub from_schema: String,
    pub to_schema: String,
    pub role: String,
    pub dry_run: bool,
    pub objects: Vec<LegacyObject>,
    /// Things that may still need a person's attention afterwards.
    pub warnings: Vec<String>,
}

const NOT_EXTENSION_MEMBER: &str = "NOT EXISTS (SELECT 1 FROM pg_depend e \
     WHERE e.classid = '{catalog}'::regclass AND e.objid = {oid} AND e.deptype = 'e')";

fn not_extension_member(catalog: &str, oid: &str) -> String {
    NOT_EXTENSION_MEMBER
        .replace("{catalog}", catalog)
        .replace("{oid}", oid)
}

pub async fn adopt_legacy(
    client: &mut Client,
    from_schema: &str,
    dry_run: bool,
) -> Result<Adoption, AdminError> {
    let bad = |why| AdminError::BadLegacySchema(from_schema.to_owned(), why);
    if from_schema.starts_with("pg_") || ["pgtenant", "information_schema"].contains(&from_schema) {
        return Err(bad("is a system schema"));
    }
    let tx = begin(client).await?;
    let target = find_tenant(&tx, DEFAULT_TENANT, true).await?;
    let is_tenant_schema = tx
        .query_opt(
            "SELECT 1 FROM pgtenant.tenants WHERE schema_name = $1",
            &[&from_schema],
        )
        .await?
        .is_some();
    if is_tenant_schema {
        return Err(bad("is a tenant's schema"));
    }
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&from_schema],
        )
        .await?
        .is_some();
    if !exists {
        return Err(bad("no such schema in this database"));
    }
    // A legacy app still connected directly holds locks; fail, don't hang.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
    let objects = list(&tx, from_schema).await?;
    let warnings = search_path_warnings(&tx, from_schema).await?;
    if !dry_run {
        let (role, to) = (quote_ident(&target.role), quote_ident(&target.schema));
        for o in &objects {
            // Owner first, while the name still resolves in the source schema.
            tx.batch_execute(&format!(
                "ALTER {a} {t} OWNER TO {role}; ALTER {a} {t} SET SCHEMA {to};",
                a = o.alter,
                t = o.target,
            ))
            .await?;
        }
        tx.commit().await?;
    }
    Ok(Adoption {
        from_schema: from_schema.to_owned(),
        to_schema: target.schema,
        role: target.role,
        dry_run,
        objects,
        warnings,
    })
}

/// Everything to move, in a safe order: routines first (their argument
/// lists name types, which must still resolve), then relations, then types.
async fn list(tx: &Transaction<'_>, schema: &str) -> Result<Vec<LegacyObject>, AdminError> {
    let s = quote_ident(schema);
    let ns = "(SELECT oid FROM pg_namespace WHERE nspname = $1)";
    let mut out = Vec::new();

    let routines = format!(
        "SELECT p.proname::text, p.prokind::text, pg_get_function_identity_arguments(p.oid) \
           FROM pg_proc p \
          WHERE p.pronamespace = {ns} AND p.prokind IN ('f', 'p', 'a', 'w') AND {} \
          ORDER BY 1, 3",
        not_extension_member("pg_proc", "p.oid")
    );
    for r in tx.query(&routines, &[&schema]).await? {
        let (name, kind, args): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let (kind, alter) = match kind.as_str() {
            "p" => ("procedure", "PROCEDURE"),
            "a" => ("aggregate", "AGGREGATE"),
            _ => ("function", "FUNCTION"),
        };
        out.push(LegacyObject {
            kind,
            target: format!("{s}.{}({args})", quote_ident(&name)),
            name: format!("{name}({args})"),
            moves_with: Vec::new(),
            alter,
        });
    }

    // Sequences owned by a column (serial, OWNED BY, identity) move with
    // their table; moving them on their own is an error.
    let relations = format!(
        "SELECT c.relname::text, c.relkind::text, \
                coalesce((SELECT array_agg(q.relname::text ORDER BY q.relname) \
                            FROM pg_depend d JOIN pg_class q ON q.oid = d.objid \
                           WHERE d.classid = 'pg_class'::regclass \
                             AND d.refclassid = 'pg_class'::regclass \
                             AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') \
                             AND q.relkind = 'S'), '{{}}') \
           FROM pg_class c \
          WHERE c.relnamespace = {ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
            AND {} \
            AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d \
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                       AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) \
          ORDER BY 1",
        not_extension_member("pg_class", "c.oid")
    );
    for r in tx.query(&relations, &[&schema]).await? {
        let (name, kind, seqs): (String, String, Vec<String>) = (r.get(0), r.get(1), r.get(2));
        let (kind, alter) = match kind.as_str() {
            "r" => ("table", "TABLE"),
            "p" => ("partitioned table", "TABLE"),
            "v" => ("view", "VIEW"),
            "m" => ("materialized view", "MATERIALIZED VIEW"),
            "S" => ("sequence", "SEQUENCE"),
            _ => ("foreign table", "FOREIGN TABLE"),
        };
        out.push(LegacyObject {
            kind,
            target: format!("{s}.{}", quote_ident(&name)),
            name,
            moves_with: seqs.into_iter().map(|q| format!("sequence {q}")).collect(),
            alter,
        });
    }

    // Row types of tables and array types move with their owners.
    let types = format!(
        "SELECT t.typname::text, t.typtype::text \
           FROM pg_type t \
          WHERE t.typnamespace = {ns} \
            AND (t.typtype IN ('e', 'd', 'r', 'm') \
                 OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c \
                                                  WHERE c.oid = t.typrelid AND c.relkind = 'c'))) \
            AND {} \
          ORDER BY 1",
        not_extension_member("pg_type", "t.oid")
    );
    for r in tx.query(&types, &[&schema]).await? {
        let (name, kind): (String, String) = (r.get(0), r.get(1));
        let (kind, alter) = match kind.as_str() {
            "d" => ("domain", "DOMAIN"),
            "e" => ("enum type", "TYPE"),
            "r" => ("range type", "TYPE"),
            // Not carried along by its range type, unlike array types.
            "m" => ("multirange type", "TYPE"),
            _ => ("composite type", "TYPE"),
        };
        out.push(LegacyObject {
            kind,
            target: format!("{s}.{}", quote_ident(&name)),
            name,
            moves_with: Vec::new(),
            alter,
        });
    }
    Ok(out)
}

/// Routines with their own `search_path` keep looking in the old schema.
async fn search_path_warnings(
    tx: &Transaction<'_>,
    schema: &str,
) -> Result<Vec<String>, AdminError> {
    let rows = tx
        .query(
            "SELECT p.proname::text || '(' || pg_get_function_identity_arguments(p.oid) || ')', c \
               FROM pg_proc p, unnest(p.proconfig) c \
              WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) \
                AND c LIKE 'search_path=%' \
              ORDER BY 1",
            &[&schema],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (f, setting): (String, String) = (r.get(0), r.get(1));
            format!(
                "{f} sets {setting}; after the move it may not find the moved objects \
                 (ALTER FUNCTION … RESET search_path)"
            )
        })
        .collect())
}

//! Rule ids, refusal texts and the name tables shared by the walker and the
//! lexical pre-check.
//!
//! Rule ids are stable: they appear in client errors, logs and the
//! `pgtenant_firewall_verdicts_total{rule=...}` metric. The pre-check treats
//! every name listed here as "needs a full parse", so adding a name to a
//! table below can never let the fast path skip it.

use super::Refusal;

/// A qualified name names a schema other than the tenant's own (or a DDL
/// target outside it).
pub const CROSS_SCHEMA: &str = "cross_schema";
/// `SET search_path` / `set_config('search_path', ...)` to a foreign schema.
pub const SEARCH_PATH: &str = "search_path";
/// `SET ROLE <name>` / `set_config('role', ...)`.
pub const ROLE: &str = "role";
/// `SET SESSION AUTHORIZATION <name>`.
pub const SESSION_AUTHORIZATION: &str = "session_authorization";
/// Settings the firewall's own parse depends on (`standard_conforming_strings`,
/// `client_encoding`), or a `set_config` whose setting name is not visible.
pub const SETTINGS: &str = "settings";
/// `CREATE/ALTER/DROP SCHEMA`, moving objects to another schema.
pub const SCHEMA_DDL: &str = "schema_ddl";
/// Roles, databases, `ALTER SYSTEM`.
pub const ROLE_DDL: &str = "role_ddl";
/// `GRANT/REVOKE` on foreign objects, role membership, ownership transfer.
pub const GRANT: &str = "grant";
/// `CREATE/ALTER/DROP EXTENSION` unless the policy allows it.
pub const EXTENSION: &str = "extension";
/// `LOAD`.
pub const LOAD: &str = "load";
/// Cluster-wide or superuser-only operations (tablespaces, foreign servers,
/// replication, event triggers, `CHECKPOINT`, ...).
pub const CLUSTER_ADMIN: &str = "cluster_admin";
/// Server-side files and programs, outbound connections (`dblink`).
pub const SERVER_FILES: &str = "server_files";
/// Functions that run SQL given as a string the firewall cannot see.
pub const DYNAMIC_SQL: &str = "dynamic_sql";
/// Views and functions that show or signal other tenants' sessions.
pub const OTHER_TENANTS: &str = "other_tenants";
/// `LISTEN/NOTIFY/UNLISTEN`, `pg_notify()`.
pub const LISTEN_NOTIFY: &str = "listen_notify";
/// The FunctionCall protocol message (libpq's `PQfn`): a function called
/// by OID, with no SQL text to check; only large objects may use it.
pub const FUNCTION_CALL: &str = "function_call";
/// Something the walker cannot classify: refused rather than guessed.
pub const UNCLASSIFIED: &str = "unclassified";
/// Text that does not parse and is not provably harmless.
pub const UNPARSABLE: &str = "unparsable";
/// Text that is not UTF-8, which the firewall can't read (checked before
/// the firewall proper, by the session's inspector).
pub const ENCODING: &str = "encoding";

/// Every rule id, for docs and tests.
pub const ALL: &[&str] = &[
    CROSS_SCHEMA,
    SEARCH_PATH,
    ROLE,
    SESSION_AUTHORIZATION,
    SETTINGS,
    SCHEMA_DDL,
    ROLE_DDL,
    GRANT,
    EXTENSION,
    LOAD,
    CLUSTER_ADMIN,
    SERVER_FILES,
    DYNAMIC_SQL,
    OTHER_TENANTS,
    LISTEN_NOTIFY,
    FUNCTION_CALL,
    UNCLASSIFIED,
    UNPARSABLE,
];

/// Functions a FunctionCall message may call, by their fixed OIDs in
/// `pg_catalog`: the large-object functions that libpq's `lo_*` and JDBC's
/// `LargeObjectManager` call that way. The server checks each large
/// object's own privileges; SQL may call them too.
pub const FASTPATH_FUNCTIONS: &[(u32, &str)] = &[
    (715, "lo_create"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
];

/// May the function-call message call `oid`?
pub fn is_fastpath_function(oid: u32) -> bool {
    FASTPATH_FUNCTIONS.iter().any(|(f, _)| *f == oid)
}

/// The SQLSTATE of a refusal: what PostgreSQL itself would report for
/// text it can't read (42601 syntax error, 22021 a byte sequence invalid
/// in the encoding), so that clients and ORMs classify it the same way;
/// otherwise 42501, insufficient privilege.
pub fn sqlstate(rule: &str) -> &'static str {
    match rule {
        UNPARSABLE => "42601",
        ENCODING => "22021",
        _ => "42501",
    }
}

/// What to do instead, per rule.
pub fn hint(rule: &str) -> &'static str {
    match rule {
        CROSS_SCHEMA => {
            "Refer to your own tables without a schema name; your session's search_path is already your schema."
        }
        SEARCH_PATH => {
            "Your search_path is pinned to your schema; schema-qualify pg_catalog or shared objects instead."
        }
        ROLE | SESSION_AUTHORIZATION => {
            "Each tenant works as one fixed database role; connect with that tenant's credentials instead."
        }
        SETTINGS => {
            "Keep standard_conforming_strings on and client_encoding UTF8, and use set_config() with a literal setting name."
        }
        SCHEMA_DDL => "Each tenant has exactly one schema; create and keep your objects in it.",
        ROLE_DDL => "Roles and databases are managed by the operator.",
        GRANT => {
            "Grant privileges only on objects in your own schema, and without transferring ownership or role membership."
        }
        EXTENSION => "Ask the operator to install the extension into a shared schema.",
        LOAD => "Loading server modules is reserved to the operator.",
        CLUSTER_ADMIN => "This is a cluster-wide operation reserved to the operator.",
        SERVER_FILES => {
            "Use COPY ... FROM STDIN / TO STDOUT (psql's \\copy) to move data through your connection."
        }
        DYNAMIC_SQL => "Run the query directly and convert its result in the client.",
        OTHER_TENANTS => {
            "Other tenants' sessions are not visible; use pg_backend_pid() and your own session's functions."
        }
        LISTEN_NOTIFY => {
            "LISTEN/NOTIFY channels are not yet separated per tenant, so they are disabled."
        }
        FUNCTION_CALL => "Call the function with SELECT, where the firewall can see it.",
        UNCLASSIFIED => "Rewrite the statement in a more common form, or ask the operator.",
        UNPARSABLE => {
            "Fix the syntax error; the firewall forwards unparsable text only when it is provably harmless."
        }
        _ => "",
    }
}

/// Builds a refusal: `message` is `pgtenant: <rule>: <what>`.
pub(crate) fn refusal(rule: &'static str, what: std::fmt::Arguments<'_>) -> Refusal {
    Refusal {
        rule,
        message: format!("pgtenant: {rule}: {what}"),
        hint: hint(rule).to_owned(),
    }
}

/// Schemas every tenant may read and call into.
pub(crate) const ALWAYS_ALLOWED_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// The session's own temporary schema. Each session has a private one, so it
/// cannot reach another tenant; `pg_temp_<n>` (another session's) is refused.
pub(crate) const OWN_TEMP_SCHEMA: &str = "pg_temp";

/// How the walker treats a call to a function with this name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FuncClass {
    /// Always refused.
    Refuse(&'static str, &'static str),
    /// Refused when called with this many arguments (`ts_rewrite(q, 'select')`).
    RefuseWithArgs(usize, &'static str, &'static str),
    /// Every constant text argument is an object name, possibly qualified.
    ObjectNameArgs,
    /// The argument `n`-th from the end is a schema name.
    SchemaArgFromEnd(usize),
    /// `set_config(name, value, is_local)`.
    SetConfig,
    /// `pg_notify(channel, payload)`.
    Notify,
    /// Allowed, but what it does outlives the session on its server
    /// connection (`setseed`): named so that every text calling it is
    /// read in full, where the session notes it (`session::pinning`).
    Lasting,
}

use FuncClass::*;

const READS_FILES: &str = "reads server files";
const WRITES_FILES: &str = "writes server files";
const CONNECTS_OUT: &str = "opens connections from the server";
const RUNS_SQL: &str = "runs SQL from a string that the firewall cannot check";
const SEES_OTHERS: &str = "shows other tenants' sessions";
const SIGNALS_OTHERS: &str = "signals other sessions";
const ADMIN: &str = "is a cluster-wide operation";

/// Exact function names, sorted (checked by a test) for binary search.
const FUNCTIONS: &[(&str, FuncClass)] = &[
    ("connectby", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("crosstab", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("crosstab2", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("crosstab3", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("crosstab4", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("currval", ObjectNameArgs),
    ("cursor_to_xml", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("cursor_to_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("database_to_xml", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    (
        "database_to_xml_and_xmlschema",
        Refuse(DYNAMIC_SQL, RUNS_SQL),
    ),
    ("database_to_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("has_any_column_privilege", ObjectNameArgs),
    ("has_column_privilege", ObjectNameArgs),
    ("has_function_privilege", ObjectNameArgs),
    ("has_schema_privilege", SchemaArgFromEnd(2)),
    ("has_sequence_privilege", ObjectNameArgs),
    ("has_table_privilege", ObjectNameArgs),
    ("has_type_privilege", ObjectNameArgs),
    ("lo_export", Refuse(SERVER_FILES, WRITES_FILES)),
    ("lo_import", Refuse(SERVER_FILES, READS_FILES)),
    ("nextval", ObjectNameArgs),
    ("pg_blocking_pids", Refuse(OTHER_TENANTS, SEES_OTHERS)),
    ("pg_cancel_backend", Refuse(OTHER_TENANTS, SIGNALS_OTHERS)),
    ("pg_column_is_updatable", ObjectNameArgs),
    ("pg_create_restore_point", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_file_read", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_file_rename", Refuse(SERVER_FILES, WRITES_FILES)),
    ("pg_file_sync", Refuse(SERVER_FILES, WRITES_FILES)),
    ("pg_file_unlink", Refuse(SERVER_FILES, WRITES_FILES)),
    ("pg_file_write", Refuse(SERVER_FILES, WRITES_FILES)),
    ("pg_get_replica_identity_index", ObjectNameArgs),
    ("pg_get_serial_sequence", ObjectNameArgs),
    ("pg_get_viewdef", ObjectNameArgs),
    ("pg_indexes_size", ObjectNameArgs),
    ("pg_lock_status", Refuse(OTHER_TENANTS, SEES_OTHERS)),
    (
        "pg_log_backend_memory_contexts",
        Refuse(OTHER_TENANTS, SIGNALS_OTHERS),
    ),
    ("pg_logdir_ls", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_notify", Notify),
    ("pg_partition_ancestors", ObjectNameArgs),
    ("pg_partition_root", ObjectNameArgs),
    ("pg_partition_tree", ObjectNameArgs),
    ("pg_prewarm", ObjectNameArgs),
    ("pg_promote", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_read_binary_file", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_read_file", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_relation_filenode", ObjectNameArgs),
    ("pg_relation_filepath", ObjectNameArgs),
    ("pg_relation_is_updatable", ObjectNameArgs),
    ("pg_relation_size", ObjectNameArgs),
    ("pg_reload_conf", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_relpages", ObjectNameArgs),
    ("pg_rotate_logfile", Refuse(CLUSTER_ADMIN, ADMIN)),
    (
        "pg_safe_snapshot_blocking_pids",
        Refuse(OTHER_TENANTS, SEES_OTHERS),
    ),
    ("pg_sequence_last_value", ObjectNameArgs),
    ("pg_signal_backend", Refuse(OTHER_TENANTS, SIGNALS_OTHERS)),
    ("pg_stat_file", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_stat_get_activity", Refuse(OTHER_TENANTS, SEES_OTHERS)),
    // What the pg_stat_progress_* views read: other sessions' pids.
    (
        "pg_stat_get_progress_info",
        Refuse(OTHER_TENANTS, SEES_OTHERS),
    ),
    ("pg_stat_statements", Refuse(OTHER_TENANTS, SEES_OTHERS)),
    (
        "pg_stat_statements_info",
        Refuse(OTHER_TENANTS, SEES_OTHERS),
    ),
    // Every session's statistics, reset.
    ("pg_stat_statements_reset", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_switch_wal", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_table_size", ObjectNameArgs),
    (
        "pg_terminate_backend",
        Refuse(OTHER_TENANTS, SIGNALS_OTHERS),
    ),
    ("pg_total_relation_size", ObjectNameArgs),
    ("pgrowlocks", ObjectNameArgs),
    ("pgstatginindex", ObjectNameArgs),
    ("pgstathashindex", ObjectNameArgs),
    ("pgstatindex", ObjectNameArgs),
    ("pgstattuple", ObjectNameArgs),
    ("pgstattuple_approx", ObjectNameArgs),
    ("query_to_xml", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("query_to_xml_and_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("query_to_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    // Function-call syntax for casts: regclass('s.t') is 's.t'::regclass.
    ("regclass", ObjectNameArgs),
    ("regcollation", ObjectNameArgs),
    ("regconfig", ObjectNameArgs),
    ("regdictionary", ObjectNameArgs),
    ("regnamespace", SchemaArgFromEnd(1)),
    ("regoper", ObjectNameArgs),
    ("regoperator", ObjectNameArgs),
    ("regproc", ObjectNameArgs),
    ("regprocedure", ObjectNameArgs),
    ("regtype", ObjectNameArgs),
    ("row_security_active", ObjectNameArgs),
    ("schema_to_xml", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("schema_to_xml_and_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("schema_to_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("set_config", SetConfig),
    ("setseed", Lasting),
    ("setval", ObjectNameArgs),
    ("table_to_xml", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("table_to_xml_and_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("table_to_xmlschema", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    ("to_regclass", ObjectNameArgs),
    ("to_regcollation", ObjectNameArgs),
    ("to_regnamespace", SchemaArgFromEnd(1)),
    ("to_regoper", ObjectNameArgs),
    ("to_regoperator", ObjectNameArgs),
    ("to_regproc", ObjectNameArgs),
    ("to_regprocedure", ObjectNameArgs),
    ("to_regtype", ObjectNameArgs),
    ("to_regtypemod", ObjectNameArgs),
    ("ts_rewrite", RefuseWithArgs(2, DYNAMIC_SQL, RUNS_SQL)),
    ("ts_stat", Refuse(DYNAMIC_SQL, RUNS_SQL)),
    // xml2's: its last argument is a WHERE clause, run as SQL.
    ("xpath_table", Refuse(DYNAMIC_SQL, RUNS_SQL)),
];

/// Function families matched by prefix (after the exact table).
const FUNCTION_PREFIXES: &[(&str, FuncClass)] = &[
    ("dblink", Refuse(SERVER_FILES, CONNECTS_OUT)),
    ("pg_ls_", Refuse(SERVER_FILES, READS_FILES)),
    ("pg_stat_get_backend_", Refuse(OTHER_TENANTS, SEES_OTHERS)),
    ("pg_stat_reset", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_backup_", Refuse(CLUSTER_ADMIN, ADMIN)),
    (
        "pg_create_logical_replication_slot",
        Refuse(CLUSTER_ADMIN, ADMIN),
    ),
    (
        "pg_create_physical_replication_slot",
        Refuse(CLUSTER_ADMIN, ADMIN),
    ),
    ("pg_drop_replication_slot", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_logical_", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_replication_origin", Refuse(CLUSTER_ADMIN, ADMIN)),
    ("pg_wal_replay_", Refuse(CLUSTER_ADMIN, ADMIN)),
];

/// Class of a function by its unqualified (already case-folded) name.
///
/// Matched whatever the schema: `pg_catalog.pg_read_file`, an extension's
/// `extensions.dblink` and an unqualified call are the same danger. A tenant
/// function that happens to share one of these names is refused too.
pub(crate) fn function_class(name: &str) -> Option<FuncClass> {
    if let Ok(i) = FUNCTIONS.binary_search_by(|(n, _)| (*n).cmp(name)) {
        return Some(FUNCTIONS[i].1);
    }
    // The first byte before the whole prefix: most words fail on it.
    let first = name.as_bytes().first();
    FUNCTION_PREFIXES
        .iter()
        .find(|(p, _)| p.as_bytes().first() == first && name.starts_with(p))
        .map(|(_, c)| *c)
}

/// Relations (views) that expose other tenants' sessions or statements.
pub(crate) fn relation_refusal(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "pg_stat_activity"
        | "pg_stat_statements"
        | "pg_stat_statements_info"
        | "pg_locks"
        | "pg_stat_ssl"
        | "pg_stat_gssapi" => Some((OTHER_TENANTS, SEES_OTHERS)),
        _ if name.starts_with("pg_stat_progress_") => Some((OTHER_TENANTS, SEES_OTHERS)),
        _ => None,
    }
}

/// How the text of a reg* literal names its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegKind {
    /// A possibly qualified object name (`'s.t'::regclass`).
    Object,
    /// A bare schema name (`'s'::regnamespace`).
    Schema,
}

/// Object-identifier types whose text input looks a name up by schema.
/// `regrole` is absent: roles live outside schemas.
pub(crate) fn reg_type(name: &str) -> Option<RegKind> {
    match name {
        "regclass" | "regtype" | "regproc" | "regprocedure" | "regoper" | "regoperator"
        | "regcollation" | "regconfig" | "regdictionary" => Some(RegKind::Object),
        "regnamespace" => Some(RegKind::Schema),
        _ => None,
    }
}

/// The first three bytes of every name above (relations and `pg_` words
/// start with `pg_`, reg types with `reg`), one bit per triple, so that
/// almost every word is cleared with one table lookup. Each byte counts by
/// its low five bits: that folds ASCII case, and the digits, which share
/// bits with letters, only cost a needless lookup.
static FIRST_THREE: [u64; 512] = {
    const fn add(t: &mut [u64; 512], name: &str) {
        let b = name.as_bytes();
        let i = triple(b[0], b[1], b[2]);
        t[i / 64] |= 1 << (i % 64);
    }
    let mut t = [0u64; 512];
    add(&mut t, "pg_");
    add(&mut t, "reg");
    let mut i = 0;
    while i < FUNCTIONS.len() {
        add(&mut t, FUNCTIONS[i].0);
        i += 1;
    }
    let mut i = 0;
    while i < FUNCTION_PREFIXES.len() {
        add(&mut t, FUNCTION_PREFIXES[i].0);
        i += 1;
    }
    t
};

const fn triple(a: u8, b: u8, c: u8) -> usize {
    ((a & 31) as usize) << 10 | ((b & 31) as usize) << 5 | (c & 31) as usize
}

/// Cheap filter on a word's first three bytes, in any case: false means
/// the word cannot be sensitive (every name above has at least six bytes).
pub(crate) fn may_be_sensitive(word: &[u8]) -> bool {
    let [a, b, c, ..] = *word else {
        return false;
    };
    let i = triple(a, b, c);
    FIRST_THREE[i / 64] & (1 << (i % 64)) != 0
}

/// True when a lower-case word names anything the walker treats specially,
/// so that the pre-check must hand the text to the full parse.
pub(crate) fn is_sensitive_word(word: &str) -> bool {
    // Every catalog object, and most dangerous functions, start with pg_;
    // so do the relations refused, so those need no lookup of their own.
    may_be_sensitive(word.as_bytes())
        && (word.starts_with("pg_") || function_class(word).is_some() || reg_type(word).is_some())
}

/// Statements refused outright: (rule, what to call them in the message).
pub(crate) fn refused_statement(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "CreateSchemaStmt" => (SCHEMA_DDL, "CREATE SCHEMA"),
        "GrantRoleStmt" => (GRANT, "GRANT/REVOKE of role membership"),
        "CreateRoleStmt" => (ROLE_DDL, "CREATE ROLE/USER/GROUP"),
        "AlterRoleStmt" => (ROLE_DDL, "ALTER ROLE/USER/GROUP"),
        "AlterRoleSetStmt" => (ROLE_DDL, "ALTER ROLE ... SET"),
        "DropRoleStmt" => (ROLE_DDL, "DROP ROLE/USER/GROUP"),
        "CreatedbStmt" => (ROLE_DDL, "CREATE DATABASE"),
        "AlterDatabaseStmt" | "AlterDatabaseSetStmt" | "AlterDatabaseRefreshCollStmt" => {
            (ROLE_DDL, "ALTER DATABASE")
        }
        "DropdbStmt" => (ROLE_DDL, "DROP DATABASE"),
        "AlterSystemStmt" => (ROLE_DDL, "ALTER SYSTEM"),
        "LoadStmt" => (LOAD, "LOAD"),
        "ListenStmt" => (LISTEN_NOTIFY, "LISTEN (not supported yet)"),
        "NotifyStmt" => (LISTEN_NOTIFY, "NOTIFY (not supported yet)"),
        "AlterExtensionContentsStmt" => (EXTENSION, "ALTER EXTENSION ... ADD/DROP"),
        "AlterObjectDependsStmt" => (EXTENSION, "ALTER ... DEPENDS ON EXTENSION"),
        "CreateTableSpaceStmt" => (CLUSTER_ADMIN, "CREATE TABLESPACE"),
        "DropTableSpaceStmt" => (CLUSTER_ADMIN, "DROP TABLESPACE"),
        "AlterTableSpaceOptionsStmt" => (CLUSTER_ADMIN, "ALTER TABLESPACE"),
        "AlterTableMoveAllStmt" => (CLUSTER_ADMIN, "ALTER ... ALL IN TABLESPACE"),
        "CreateFdwStmt" | "AlterFdwStmt" => (CLUSTER_ADMIN, "CREATE/ALTER FOREIGN DATA WRAPPER"),
        "CreateForeignServerStmt" | "AlterForeignServerStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER SERVER")
        }
        "CreateForeignTableStmt" => (CLUSTER_ADMIN, "CREATE FOREIGN TABLE"),
        "CreateUserMappingStmt" | "AlterUserMappingStmt" | "DropUserMappingStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER/DROP USER MAPPING")
        }
        "ImportForeignSchemaStmt" => (CLUSTER_ADMIN, "IMPORT FOREIGN SCHEMA"),
        "CreateEventTrigStmt" | "AlterEventTrigStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER EVENT TRIGGER")
        }
        "CreatePLangStmt" => (CLUSTER_ADMIN, "CREATE LANGUAGE"),
        "CreateAmStmt" => (CLUSTER_ADMIN, "CREATE ACCESS METHOD"),
        "CreateCastStmt" => (CLUSTER_ADMIN, "CREATE CAST"),
        "CreateTransformStmt" => (CLUSTER_ADMIN, "CREATE TRANSFORM"),
        "CreateOpClassStmt" | "CreateOpFamilyStmt" | "AlterOpFamilyStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER OPERATOR CLASS/FAMILY")
        }
        "CheckPointStmt" => (CLUSTER_ADMIN, "CHECKPOINT"),
        "ReassignOwnedStmt" => (CLUSTER_ADMIN, "REASSIGN OWNED"),
        "SecLabelStmt" => (CLUSTER_ADMIN, "SECURITY LABEL"),
        "CreatePublicationStmt" | "AlterPublicationStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER PUBLICATION")
        }
        "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt" => {
            (CLUSTER_ADMIN, "CREATE/ALTER/DROP SUBSCRIPTION")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_table_is_sorted_and_unique() {
        for w in FUNCTIONS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} must sort before {}", w[0].0, w[1].0);
        }
    }

    #[test]
    fn every_listed_name_is_sensitive_for_the_precheck() {
        for (name, _) in FUNCTIONS.iter().chain(FUNCTION_PREFIXES) {
            assert!(is_sensitive_word(name), "{name}");
            assert!(may_be_sensitive(name.to_uppercase().as_bytes()), "{name}");
        }
        // Every relation `relation_refusal` names starts with pg_.
        for name in [
            "pg_stat_activity",
            "pg_stat_statements",
            "pg_stat_statements_info",
            "pg_locks",
            "pg_stat_ssl",
            "pg_stat_gssapi",
            "pg_stat_progress_vacuum",
            "regnamespace",
            "regclass",
        ] {
            assert!(is_sensitive_word(name), "{name}");
        }
        assert!(!is_sensitive_word("pgbench_accounts"));
        assert!(!is_sensitive_word("abalance"));
        // The filter alone clears most words.
        for w in [
            "pgbench_accounts",
            "abalance",
            "aid",
            "tid",
            "id",
            "x",
            "users",
            "orders",
        ] {
            assert!(!may_be_sensitive(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            function_class("dblink_exec"),
            Some(Refuse(SERVER_FILES, CONNECTS_OUT))
        );
        assert_eq!(
            function_class("pg_ls_waldir"),
            Some(Refuse(SERVER_FILES, READS_FILES))
        );
        assert_eq!(function_class("nextval"), Some(ObjectNameArgs));
        assert_eq!(function_class("lower"), None);
        assert_eq!(reg_type("regnamespace"), Some(RegKind::Schema));
        assert_eq!(reg_type("regrole"), None);
        assert!(relation_refusal("pg_stat_progress_vacuum").is_some());
    }

    #[test]
    fn every_rule_has_a_hint() {
        for r in ALL {
            assert!(!hint(r).is_empty(), "{r}");
        }
    }
}

//! Statement-level classification: which statements are forwarded, which
//! are refused, and the special fields (DDL targets, object addresses,
//! settings, bodies) that the generic walk cannot interpret alone.
//!
//! Decisions:
//! - DDL targets (`CREATE TABLE s.t`, `DROP ...`, `ALTER ...`, `COMMENT ON`,
//!   `GRANT ... ON`) are "strict": only the tenant's schema or `pg_temp`;
//!   shared schemas can be read and called into, not changed.
//! - `RESET ALL`, `DISCARD ALL`, `RESET ROLE`, `SET ROLE NONE` and
//!   `SET SESSION AUTHORIZATION DEFAULT` are forwarded: the backend logs in
//!   as the tenant's own role whose search_path is pinned with
//!   `ALTER ROLE ... SET search_path`, so resetting lands on the tenant's
//!   own identity and schema (and the proxy re-pins on hand-over anyway).
//!   If the proxy ever logs in as a shared role and uses `SET ROLE`, these
//!   must be refused instead (see `settings.rs` and `DiscardStmt` below).
//! - `LISTEN/NOTIFY/UNLISTEN` and `pg_notify()` are refused until channels
//!   are namespaced per tenant (`rules::refused_statement`, `FuncClass::
//!   Notify`). To add namespacing, record the channel name like a schema
//!   reference and let `Analysis::verdict` require the tenant's prefix.

use pg_query::protobuf::{
    AlterTableType, GrantTargetType, ObjectType as O, ReindexObjectType, RoleSpecType,
};

use super::rules::{self, CROSS_SCHEMA as X};
use super::tree::N;
use super::walk::{Cx, Parts, Walker};

/// What a statement does to an object, for object-address checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Drop,
    Comment,
    Rename,
    Owner,
    SetSchema,
    Grant,
}

impl Verb {
    fn label(self) -> &'static str {
        match self {
            Verb::Drop => "DROP",
            Verb::Comment => "COMMENT ON",
            Verb::Rename => "RENAME of",
            Verb::Owner => "OWNER TO on",
            Verb::SetSchema => "SET SCHEMA on",
            Verb::Grant => "GRANT/REVOKE on",
        }
    }
    fn rule(self) -> &'static str {
        if self == Verb::Grant { rules::GRANT } else { X }
    }
}

fn object_type(v: i64) -> Option<O> {
    O::try_from(i32::try_from(v).ok()?).ok()
}

impl Walker<'_> {
    /// Classifies a statement node. Returns false when its subtree must not
    /// be walked (it was refused).
    pub(crate) fn statement(&mut self, kind: &'static str, n: N<'_>, cx: &Cx<'_>) -> bool {
        match kind {
            // SELECT … INTO creates a table: a DDL target, like CREATE TABLE AS.
            "SelectStmt" if n.get("into_clause").is_some() => {
                self.target(n.get("into_clause").and_then(|i| i.get("rel")));
            }
            // Plain statements: the generic walk checks everything in them.
            "RawStmt"
            | "SelectStmt"
            | "InsertStmt"
            | "UpdateStmt"
            | "DeleteStmt"
            | "MergeStmt"
            | "SetOperationStmt"
            | "ReturnStmt"
            | "PlAssignStmt"
            | "ExplainStmt"
            | "PrepareStmt"
            | "ExecuteStmt"
            | "DeallocateStmt"
            | "DeclareCursorStmt"
            | "FetchStmt"
            | "ClosePortalStmt"
            | "TransactionStmt"
            | "VariableShowStmt"
            | "TruncateStmt"
            | "LockStmt"
            | "VacuumStmt"
            | "ClusterStmt"
            | "ConstraintsSetStmt"
            | "CallStmt"
            | "RefreshMatViewStmt"
            | "ReplicaIdentityStmt" => {}
            // DISCARD ALL resets to the login role = the tenant (module doc).
            "DiscardStmt" => {}
            // UNLISTEN only drops the session's own LISTENs (pools such as
            // asyncpg's send `UNLISTEN *` whenever a connection is released).
            "UnlistenStmt" => {}
            // DDL whose target is a relation.
            "CreateStmt" | "IndexStmt" | "RuleStmt" => self.target(n.get("relation")),
            "AlterTableStmt" => {
                self.target(n.get("relation"));
                for cmd in n.list("cmds") {
                    if cmd.int("subtype") == AlterTableType::AtChangeOwner as i64 {
                        self.owner(cmd.get("newowner"));
                    }
                }
            }
            "CreateTableAsStmt" => self.target(n.get("into").and_then(|i| i.get("rel"))),
            "ViewStmt" => self.target(n.get("view")),
            "CreateSeqStmt" | "AlterSeqStmt" => self.target(n.get("sequence")),
            "CompositeTypeStmt" => self.target(n.get("typevar")),
            "CreatePolicyStmt" | "AlterPolicyStmt" => self.target(n.get("table")),
            "CreateTrigStmt" => {
                self.target(n.get("relation"));
                self.target(n.get("constrrel"));
                self.name_field(n, "funcname", 2, X, "function", false);
            }
            // DDL whose target is a name list.
            "CreateEnumStmt" | "CreateRangeStmt" | "AlterEnumStmt" | "AlterTypeStmt"
            | "AlterDomainStmt" => self.name_field(n, "type_name", 2, X, "type", true),
            "CreateDomainStmt" => self.name_field(n, "domainname", 2, X, "domain", true),
            "DefineStmt" => self.name_field(n, "defnames", 2, X, "object", true),
            "CreateStatsStmt" | "AlterStatsStmt" => {
                self.name_field(n, "defnames", 2, X, "statistics object", true)
            }
            "CreateConversionStmt" => {
                self.name_field(n, "conversion_name", 2, X, "conversion", true);
                self.name_field(n, "func_name", 2, X, "function", false);
            }
            "AlterCollationStmt" => self.name_field(n, "collname", 2, X, "collation", true),
            "AlterTsDictionaryStmt" => {
                self.name_field(n, "dictname", 2, X, "text search dictionary", true)
            }
            "AlterTsConfigurationStmt" => {
                self.name_field(n, "cfgname", 2, X, "text search configuration", true);
                for d in n.list("dicts") {
                    self.name_field(d, "items", 2, X, "text search dictionary", false);
                }
            }
            "AlterOperatorStmt" => {
                if let Some(o) = n.get("opername") {
                    self.name_field(o, "objname", 2, X, "operator", true);
                }
            }
            "AlterFunctionStmt" => {
                if let Some(o) = n.get("func") {
                    self.name_field(o, "objname", 2, X, "function", true);
                }
            }
            "CreateFunctionStmt" => self.create_function(n, cx),
            "DoStmt" => self.do_block(n, cx),
            "DropStmt" => {
                let t = n.int("remove_type");
                for obj in n.list("objects") {
                    self.object(t, Some(obj), Verb::Drop);
                }
            }
            "CommentStmt" => self.object(n.int("objtype"), n.get("object"), Verb::Comment),
            "RenameStmt" => {
                let t = n.int("rename_type");
                self.object(t, None, Verb::Rename);
                self.target(n.get("relation"));
                self.object(t, n.get("object"), Verb::Rename);
            }
            "AlterObjectSchemaStmt" => {
                let t = n.int("object_type");
                self.target(n.get("relation"));
                self.object(t, n.get("object"), Verb::SetSchema);
                let s = n.str("newschema");
                self.schema(
                    s,
                    rules::SCHEMA_DDL,
                    "target schema",
                    &|| s.to_owned(),
                    true,
                );
            }
            "AlterOwnerStmt" => {
                let t = n.int("object_type");
                self.target(n.get("relation"));
                self.object(t, n.get("object"), Verb::Owner);
                self.owner(n.get("newowner"));
            }
            "GrantStmt" => self.grant(n),
            "AlterDefaultPrivilegesStmt" => {
                for opt in n.list("options") {
                    match opt.str("defname") {
                        "schemas" => {
                            for s in opt
                                .get("arg")
                                .map(|a| a.list("items"))
                                .into_iter()
                                .flatten()
                            {
                                let s = s.string_node().unwrap_or("");
                                self.schema(s, rules::GRANT, "schema", &|| s.to_owned(), true);
                            }
                        }
                        "roles" => self.refuse(
                            rules::GRANT,
                            format_args!("ALTER DEFAULT PRIVILEGES FOR ROLE is not allowed"),
                        ),
                        _ => {}
                    }
                }
            }
            "CopyStmt" => {
                if n.flag("is_program") || !n.str("filename").is_empty() {
                    self.refuse(
                        rules::SERVER_FILES,
                        format_args!("COPY to or from a server file or program is not allowed"),
                    );
                }
            }
            "ReindexStmt" => {
                let kind = n.int("kind");
                if kind == ReindexObjectType::ReindexObjectSchema as i64 {
                    let s = n.str("name");
                    self.schema(s, X, "schema", &|| s.to_owned(), true);
                } else if kind == ReindexObjectType::ReindexObjectSystem as i64
                    || kind == ReindexObjectType::ReindexObjectDatabase as i64
                {
                    self.refuse(
                        rules::CLUSTER_ADMIN,
                        format_args!("REINDEX SYSTEM/DATABASE is not allowed"),
                    );
                }
            }
            "DropOwnedStmt" => {
                for r in n.list("roles") {
                    if names_other_role(r) {
                        self.refuse(
                            rules::ROLE_DDL,
                            format_args!("DROP OWNED BY another role is not allowed"),
                        );
                    }
                }
            }
            "CreateExtensionStmt" | "AlterExtensionStmt" => {
                if !self.policy.allow_create_extension {
                    let verb = if kind == "CreateExtensionStmt" {
                        "CREATE"
                    } else {
                        "ALTER"
                    };
                    self.refuse(
                        rules::EXTENSION,
                        format_args!("{verb} EXTENSION is not allowed"),
                    );
                }
                for opt in n.list("options") {
                    if opt.str("defname") == "schema" {
                        let s = opt.get("arg").and_then(|a| a.string_node()).unwrap_or("");
                        self.schema(s, rules::EXTENSION, "schema", &|| s.to_owned(), true);
                    }
                }
            }
            _ => match rules::refused_statement(kind) {
                Some((rule, label)) => {
                    self.refuse(rule, format_args!("{label} is not allowed"));
                }
                None => self.refuse(
                    rules::UNCLASSIFIED,
                    format_args!("statement type {kind} is not recognised"),
                ),
            },
        }
        !self.done()
    }

    /// A relation a DDL statement creates or changes.
    fn target(&mut self, rv: Option<N<'_>>) {
        if let Some(rv) = rv {
            let s = rv.str("schemaname");
            let rel = rv.str("relname");
            self.schema(s, X, "relation", &|| format!("{s}.{rel}"), true);
        }
    }

    /// `OWNER TO`: only to the current role (a no-op); never hand objects
    /// to another role.
    fn owner(&mut self, role: Option<N<'_>>) {
        if role.is_some_and(names_other_role) {
            self.refuse(
                rules::GRANT,
                format_args!("transferring ownership to another role is not allowed"),
            );
        }
    }

    /// Object kinds that live outside schemas; refused for every verb except
    /// COMMENT/GRANT on a schema (checked as a schema name).
    fn global_object(&self, t: O) -> Option<(&'static str, &'static str)> {
        let admin = rules::CLUSTER_ADMIN;
        Some(match t {
            O::ObjectDatabase => (rules::ROLE_DDL, "a database"),
            O::ObjectRole => (rules::ROLE_DDL, "a role"),
            O::ObjectSchema => (rules::SCHEMA_DDL, "a schema"),
            O::ObjectExtension if !self.policy.allow_create_extension => {
                (rules::EXTENSION, "an extension")
            }
            O::ObjectTablespace => (admin, "a tablespace"),
            O::ObjectLanguage => (admin, "a procedural language"),
            O::ObjectFdw => (admin, "a foreign-data wrapper"),
            O::ObjectForeignServer => (admin, "a foreign server"),
            O::ObjectUserMapping => (admin, "a user mapping"),
            O::ObjectEventTrigger => (admin, "an event trigger"),
            O::ObjectAccessMethod => (admin, "an access method"),
            O::ObjectPublication | O::ObjectPublicationNamespace | O::ObjectPublicationRel => {
                (admin, "a publication")
            }
            O::ObjectSubscription => (admin, "a subscription"),
            O::ObjectCast => (admin, "a cast"),
            O::ObjectTransform => (admin, "a transform"),
            O::ObjectParameterAcl => (admin, "a configuration parameter"),
            O::ObjectAmop | O::ObjectAmproc => (admin, "an operator family member"),
            _ => return None,
        })
    }

    /// Checks the object a DROP/COMMENT/RENAME/OWNER/SET SCHEMA/GRANT acts
    /// on. With `obj` None only the object kind is checked.
    fn object(&mut self, objtype: i64, obj: Option<N<'_>>, verb: Verb) {
        let Some(t) = object_type(objtype) else {
            self.refuse(
                rules::UNCLASSIFIED,
                format_args!("{} an unknown object type is not allowed", verb.label()),
            );
            return;
        };
        let schema_ok = t == O::ObjectSchema && matches!(verb, Verb::Comment | Verb::Grant);
        if let Some((rule, label)) = self.global_object(t)
            && !schema_ok
        {
            let rule = if verb == Verb::Grant {
                rules::GRANT
            } else {
                rule
            };
            self.refuse(
                rule,
                format_args!("{} {label} is not allowed", verb.label()),
            );
            return;
        }
        let Some(obj) = obj else { return };
        let rule = verb.rule();
        match obj.kind() {
            "RangeVar" => {
                let s = obj.str("schemaname");
                let rel = obj.str("relname");
                self.schema(s, rule, "relation", &|| format!("{s}.{rel}"), true);
            }
            "ObjectWithArgs" => {
                self.name_field(obj, "objname", 2, rule, "routine or operator", true)
            }
            "TypeName" => self.name_field(obj, "names", 2, rule, "type", true),
            "String" if t == O::ObjectSchema => {
                let s = obj.str("sval");
                self.schema(s, rule, "schema", &|| s.to_owned(), true);
            }
            "List" => {
                // COMMENT ON CONSTRAINT c ON DOMAIN s.d: List[TypeName, String].
                if let Some(first) = obj.list("items").next()
                    && first.kind() == "TypeName"
                {
                    self.name_field(first, "names", 2, rule, "domain", true);
                    return;
                }
                let parts = Parts::of(obj.list("items"));
                let pos = match t {
                    // [schema.]table.name
                    O::ObjectColumn
                    | O::ObjectTrigger
                    | O::ObjectRule
                    | O::ObjectPolicy
                    | O::ObjectTabconstraint => 3,
                    // access method, [schema.]name
                    O::ObjectOpclass | O::ObjectOpfamily if parts.len() < 3 => return,
                    _ => 2,
                };
                self.qualified(&parts, pos, rule, "object", true);
            }
            // Unqualified single names, large object OIDs: no schema named.
            _ => {}
        }
    }

    fn grant(&mut self, n: N<'_>) {
        let targtype = n.int("targtype");
        if targtype == GrantTargetType::AclTargetAllInSchema as i64 {
            for o in n.list("objects") {
                let s = o.string_node().unwrap_or("");
                self.schema(s, rules::GRANT, "schema", &|| s.to_owned(), true);
            }
        } else if targtype == GrantTargetType::AclTargetObject as i64 {
            let t = n.int("objtype");
            self.object(t, None, Verb::Grant);
            for o in n.list("objects") {
                self.object(t, Some(o), Verb::Grant);
            }
        }
    }

    fn create_function(&mut self, n: N<'_>, cx: &Cx<'_>) {
        self.name_field(n, "funcname", 2, X, "function", true);
        let mut language = None;
        let mut body = None;
        for opt in n.list("options") {
            match opt.str("defname") {
                "language" => language = opt.get("arg").and_then(|a| a.string_node()),
                "as" => body = opt.get("arg"),
                _ => {}
            }
        }
        // BEGIN ATOMIC / RETURN bodies are already parsed: the walk sees them.
        if n.get("sql_body").is_some() {
            return;
        }
        let language = language.unwrap_or("sql").to_ascii_lowercase();
        match language.as_str() {
            "sql" => {
                for item in body.map(|b| b.list("items")).into_iter().flatten() {
                    if let Some(text) = item.string_node() {
                        self.nested(text, 0);
                    }
                }
            }
            "plpgsql" => self.plpgsql(cx.stmt),
            // Untrusted: could expose any C function (superuser-only anyway).
            "c" | "internal" => self.refuse(
                rules::CLUSTER_ADMIN,
                format_args!("functions in language {language} are not allowed"),
            ),
            // Other procedural languages cannot be inspected: the backend
            // role's privileges are the guarantee there.
            _ => {}
        }
    }

    fn do_block(&mut self, n: N<'_>, cx: &Cx<'_>) {
        let language = n
            .list("args")
            .find(|a| a.str("defname") == "language")
            .and_then(|a| a.get("arg"))
            .and_then(|a| a.string_node())
            .unwrap_or("plpgsql");
        if language.eq_ignore_ascii_case("plpgsql") {
            self.plpgsql(cx.stmt);
        }
    }
}

/// A RoleSpec naming a role other than the current one (or PUBLIC).
fn names_other_role(r: N<'_>) -> bool {
    let t = r.int("roletype");
    t == RoleSpecType::RolespecCstring as i64 || t == RoleSpecType::RolespecPublic as i64
}

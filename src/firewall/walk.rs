//! The parse-tree walker: turns one SQL text into a tenant-independent
//! [`Analysis`].
//!
//! Every node of the tree is visited generically (see `tree.rs`), so
//! subqueries, CTEs, `EXPLAIN`/`PREPARE`/`DECLARE`/`COPY (query)` bodies,
//! rule actions and `BEGIN ATOMIC` bodies are reached without listing them.
//! On each node:
//! - name-carrying nodes (RangeVar, FuncCall, TypeName, ColumnRef, operator
//!   names, COLLATE, ObjectWithArgs, reg* literals, ...) record the schema
//!   they name;
//! - statements are classified in `stmt.rs`; a statement type it does not
//!   know is refused;
//! - as a backstop, a list of two or more bare identifiers (a qualified name
//!   in pg_query's shape) found where no handler expects one is refused, so
//!   a name cannot slip through a field nobody thought of.
//!
//! What is recorded is tenant-independent: "this text names schema X"
//! (kept only when X is not pg_catalog, information_schema, pg_temp or a
//! shared schema) and refusals that hold for every tenant. `Analysis::verdict`
//! then decides per tenant with a few string comparisons.

use std::sync::Arc;

use super::parse::{self, Failure};
use super::precheck;
use super::rules;
use super::tree::{Children, N};
use super::{Policy, Refusal};

/// A schema named by the text that is acceptable only if it is the
/// tenant's own.
#[derive(Debug)]
pub(crate) struct SchemaRef {
    pub schema: Box<str>,
    pub rule: &'static str,
    pub what: &'static str,
    pub object: Box<str>,
}

/// The tenant-independent result of checking one SQL text.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub refs: Box<[SchemaRef]>,
    pub fixed: Option<Arc<Refusal>>,
}

impl Analysis {
    pub(crate) fn verdict(&self, tenant_schema: &str) -> Result<(), Arc<Refusal>> {
        if let Some(r) = &self.fixed {
            return Err(r.clone());
        }
        match self.refs.iter().find(|r| &*r.schema != tenant_schema) {
            None => Ok(()),
            Some(r) => Err(Arc::new(rules::refusal(
                r.rule,
                format_args!(
                    "{} \"{}\" is outside your schema \"{tenant_schema}\"",
                    r.what, r.object
                ),
            ))),
        }
    }

    pub(crate) fn refused(rule: &'static str, what: std::fmt::Arguments<'_>) -> Analysis {
        Analysis {
            refs: Box::default(),
            fixed: Some(Arc::new(rules::refusal(rule, what))),
        }
    }
}

/// Bodies inside bodies (a SQL function whose body creates a function...)
/// are followed this deep, then refused.
const MAX_NESTING: u32 = 4;

/// Analyses one SQL text (possibly several statements).
pub(crate) fn analyze(sql: &str, policy: &Policy) -> Analysis {
    let mut w = Walker {
        policy,
        refs: Vec::new(),
        fixed: None,
        nesting: 0,
    };
    w.text(sql, 0);
    Analysis {
        refs: w.refs.into_boxed_slice(),
        fixed: w.fixed.map(Arc::new),
    }
}

/// Up to four identifier parts of a qualified name; `*` stands for A_Star.
pub(crate) struct Parts<'t> {
    v: [&'t str; 4],
    n: usize,
    /// More than four parts, or a part that is neither an identifier nor `*`.
    odd: bool,
}

impl<'t> Parts<'t> {
    pub(crate) fn of(list: Children<'t>) -> Parts<'t> {
        let mut p = Parts {
            v: [""; 4],
            n: 0,
            odd: false,
        };
        for item in list {
            let s = match item.kind() {
                "String" => item.str("sval"),
                "AStar" => "*",
                _ => {
                    p.odd = true;
                    continue;
                }
            };
            if p.n == 4 {
                p.odd = true;
            } else {
                p.v[p.n] = s;
                p.n += 1;
            }
        }
        p
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    pub(crate) fn last(&self) -> &'t str {
        if self.n == 0 { "" } else { self.v[self.n - 1] }
    }

    /// The part `k`-th from the end (1 = last).
    pub(crate) fn nth_from_end(&self, k: usize) -> Option<&'t str> {
        (k >= 1 && self.n >= k).then(|| self.v[self.n - k])
    }

    pub(crate) fn display(&self) -> String {
        self.v[..self.n].join(".")
    }
}

/// Where the current statement's text is, for PL/pgSQL compilation, and
/// its kind (`SelectStmt`, `ViewStmt`, ...).
pub(crate) struct Cx<'s> {
    pub stmt: &'s str,
    pub top: &'static str,
}

pub(crate) struct Walker<'p> {
    pub(crate) policy: &'p Policy,
    refs: Vec<SchemaRef>,
    fixed: Option<Refusal>,
    nesting: u32,
}

impl Walker<'_> {
    pub(crate) fn done(&self) -> bool {
        self.fixed.is_some()
    }

    /// Records a refusal that holds for every tenant (the first one wins).
    pub(crate) fn refuse(&mut self, rule: &'static str, what: std::fmt::Arguments<'_>) {
        if self.fixed.is_none() {
            self.fixed = Some(rules::refusal(rule, what));
        }
    }

    /// Records that the text names `schema`. `strict` marks a DDL target:
    /// shared and catalog schemas may be read and called into, but not
    /// changed, so only the tenant's own schema (or pg_temp) will do.
    pub(crate) fn schema(
        &mut self,
        schema: &str,
        rule: &'static str,
        what: &'static str,
        object: &dyn Fn() -> String,
        strict: bool,
    ) {
        if schema.is_empty() || schema == rules::OWN_TEMP_SCHEMA {
            return;
        }
        let shared = rules::ALWAYS_ALLOWED_SCHEMAS.contains(&schema)
            || self.policy.shared_schemas.iter().any(|s| s == schema);
        if shared {
            if strict {
                self.refuse(
                    rule,
                    format_args!(
                        "{what} \"{}\" is in shared schema \"{schema}\", which tenants cannot change",
                        object()
                    ),
                );
            }
            return;
        }
        if self
            .refs
            .iter()
            .any(|r| &*r.schema == schema && r.rule == rule)
        {
            return;
        }
        self.refs.push(SchemaRef {
            schema: schema.into(),
            rule,
            what,
            object: object().into(),
        });
    }

    /// Checks a qualified name whose schema is the part `pos`-th from the end.
    pub(crate) fn qualified(
        &mut self,
        parts: &Parts<'_>,
        pos: usize,
        rule: &'static str,
        what: &'static str,
        strict: bool,
    ) {
        if parts.odd {
            self.refuse(
                rules::UNCLASSIFIED,
                format_args!("{what} name \"{}\" has an unexpected form", parts.display()),
            );
            return;
        }
        if let Some(s) = parts.nth_from_end(pos) {
            self.schema(s, rule, what, &|| parts.display(), strict);
        }
    }

    /// The qualified name in list field `field` of `n`, schema `pos` from the end.
    pub(crate) fn name_field(
        &mut self,
        n: N<'_>,
        field: &str,
        pos: usize,
        rule: &'static str,
        what: &'static str,
        strict: bool,
    ) {
        let parts = Parts::of(n.list(field));
        self.qualified(&parts, pos, rule, what, strict);
    }

    /// Parses and walks a SQL text: the top level, or a function body.
    pub(crate) fn text(&mut self, sql: &str, mode: i32) {
        if self.nesting > MAX_NESTING {
            self.refuse(
                rules::UNCLASSIFIED,
                format_args!("function bodies are nested too deeply to check"),
            );
            return;
        }
        let tree = match parse::sql(sql, mode) {
            Ok(t) => t,
            Err(f) => return self.unparsed(sql, f),
        };
        let Some(root) = tree.root() else { return };
        for raw in root.list("stmts") {
            if self.done() {
                return;
            }
            let start = (raw.int("stmt_location") as usize).min(sql.len());
            let len = raw.int("stmt_len") as usize;
            let end = if len == 0 {
                sql.len()
            } else {
                (start + len).min(sql.len())
            };
            let cx = Cx {
                stmt: sql.get(start..end).unwrap_or(sql),
                top: raw.get("stmt").map_or("", |st| st.kind()),
            };
            self.node(raw, "", "", &cx);
        }
    }

    /// A body one level down (SQL function body, PL/pgSQL statement).
    pub(crate) fn nested(&mut self, sql: &str, mode: i32) {
        self.nesting += 1;
        self.text(sql, mode);
        self.nesting -= 1;
    }

    /// Text the parser rejected: forward a syntax error only when provably
    /// harmless (no qualified names, quoted identifiers, escapes or
    /// sensitive words), because the server's grammar may be older or newer
    /// than pg_query's. Anything else the server may well run (a tree too
    /// deep for pg_query's decoder is fine there): refused.
    pub(crate) fn unparsed(&mut self, sql: &str, f: Failure) {
        // A whole-text scan: the early-stopping one decides the fast path only.
        if f == Failure::Syntax
            && precheck::inert_on_parse_failure(&crate::lexical::scan(sql.as_bytes(), true))
        {
            return;
        }
        match f {
            Failure::Syntax => self.refuse(
                rules::UNPARSABLE,
                format_args!(
                    "the text does not parse with the firewall's PostgreSQL 18 grammar and names schemas, quoted identifiers or sensitive objects"
                ),
            ),
            Failure::TooDeep => self.refuse(
                rules::UNCLASSIFIED,
                format_args!("the statement is nested too deeply for the firewall to check"),
            ),
            Failure::Other => self.refuse(
                rules::UNCLASSIFIED,
                format_args!("the firewall could not analyse the statement"),
            ),
        }
    }

    /// Generic visit: check this node, then every child.
    /// `parent`/`field` say where a list sits, for the bare-name backstop.
    fn node(&mut self, n: N<'_>, parent: &'static str, field: &'static str, cx: &Cx<'_>) {
        if self.done() {
            return;
        }
        let kind = n.kind();
        if kind.is_empty() {
            if n.is_seq() {
                self.bare_names(n, parent, field);
                for c in n.children() {
                    self.node(c, parent, field, cx);
                }
            }
            return;
        }
        // A List node is pg's generic list: it belongs to its parent's field.
        if kind == "List" {
            for c in n.children() {
                self.node(c, parent, field, cx);
            }
            return;
        }
        if kind == "RangeVar"
            && n.str("relname") == "pg_settings"
            && matches!(n.str("schemaname"), "" | "pg_catalog")
        {
            self.settings_view(parent, field, cx);
        }
        // A function bound to be called later (a cast's, an operator
        // class's, a transform's); naming one to drop or grant binds nothing.
        if kind == "ObjectWithArgs"
            && matches!(
                parent,
                "CreateCastStmt" | "CreateOpClassItem" | "CreateTransformStmt"
            )
        {
            self.bound_function(Parts::of(n.list("objname")).last());
        }
        if !self.check(kind, n, cx) {
            return;
        }
        for c in n.children() {
            self.node(c, kind, c.key(), cx);
        }
    }

    /// `pg_settings` is a view whose UPDATE rule calls `set_config()`:
    /// writing it changes a setting the firewall can't name (the server's
    /// reading of SQL, search_path), and so could writing a view over it.
    /// Reading it is fine.
    fn settings_view(&mut self, parent: &str, field: &str, cx: &Cx<'_>) {
        let written = field == "relation"
            && matches!(
                parent,
                "UpdateStmt" | "InsertStmt" | "DeleteStmt" | "MergeStmt"
            );
        if written || cx.top == "ViewStmt" {
            self.refuse(
                rules::SETTINGS,
                format_args!("writing pg_settings changes settings where the firewall can't see which; use SET"),
            );
        }
    }

    /// Node-kind specific checks. Returns false when the subtree need not
    /// (or must not) be walked further.
    fn check(&mut self, kind: &'static str, n: N<'_>, cx: &Cx<'_>) -> bool {
        use rules::CROSS_SCHEMA as X;
        match kind {
            "RangeVar" => {
                let schema = n.str("schemaname");
                let rel = n.str("relname");
                if !schema.is_empty() {
                    self.schema(schema, X, "relation", &|| format!("{schema}.{rel}"), false);
                }
                if let Some((rule, why)) = rules::relation_refusal(rel) {
                    self.refuse(rule, format_args!("{rel} {why}"));
                }
            }
            "FuncCall" => self.func_call(n),
            "TypeCast" => self.type_cast(n),
            "TypeName" => {
                let pos = if n.flag("pct_type") { 3 } else { 2 };
                self.name_field(n, "names", pos, X, "type", false);
            }
            "ColumnRef" => {
                let parts = Parts::of(n.list("fields"));
                // s.t.c and db.s.t.c name a schema; t.c does not.
                if parts.len() >= 3 {
                    self.qualified(&parts, 3, X, "column reference", false);
                }
                // x.f is attribute notation for f(x).
                if parts.len() >= 2 {
                    self.refused_function_name(parts.last());
                }
            }
            "AIndirection" => {
                for i in n.list("indirection") {
                    if let Some(s) = i.string_node() {
                        self.refused_function_name(s);
                    }
                }
            }
            "AExpr" => self.name_field(n, "name", 2, X, "operator", false),
            "SubLink" => self.name_field(n, "oper_name", 2, X, "operator", false),
            "SortBy" => self.name_field(n, "use_op", 2, X, "operator", false),
            "CollateClause" => self.name_field(n, "collname", 2, X, "collation", false),
            "ObjectWithArgs" => self.name_field(n, "objname", 2, X, "function or operator", false),
            "RangeTableSample" => self.name_field(n, "method", 2, X, "tablesample method", false),
            "IndexElem" | "PartitionElem" => {
                self.name_field(n, "opclass", 2, X, "operator class", false);
                self.name_field(n, "collation", 2, X, "collation", false);
            }
            "Constraint" => {
                // EXCLUDE (col WITH op): each item is List[IndexElem, List[op name]].
                for pair in n.list("exclusions") {
                    for item in pair.list("items") {
                        if item.kind() == "List" {
                            self.name_field(item, "items", 2, X, "operator", false);
                        }
                    }
                }
            }
            "DefElem" => self.def_elem(n),
            "VariableSetStmt" => self.variable_set(n),
            k if k.ends_with("Stmt") => return self.statement(k, n, cx),
            _ => {}
        }
        !self.done()
    }

    /// Backstop: two or more bare identifiers in a list are a qualified
    /// name in pg_query's shape; refuse one found where no handler looks.
    fn bare_names(&mut self, seq: N<'_>, parent: &'static str, field: &'static str) {
        let mut count = 0;
        for c in seq.children() {
            if c.kind() != "String" {
                return;
            }
            count += 1;
        }
        if count >= 2 && !known_name_list(parent, field) {
            self.refuse(
                rules::UNCLASSIFIED,
                format_args!("the firewall does not recognise the name list in {parent}.{field}"),
            );
        }
    }
}

/// A string constant, seen through casts and argument names (`'x'`,
/// `'x'::text`, `name => 'x'`).
pub(crate) fn const_str<'t>(n: N<'t>) -> Option<&'t str> {
    match n.kind() {
        // '' is a String node without sval, which reads as "".
        "AConst" => n.get("val").and_then(|v| v.string_node()),
        "TypeCast" | "NamedArgExpr" => n.get("arg").and_then(const_str),
        _ => None,
    }
}

/// Fields that legitimately hold lists of bare identifiers: either handled
/// by a check above / in `stmt.rs`, or plain column/label lists.
fn known_name_list(parent: &str, field: &str) -> bool {
    matches!(
        (parent, field),
        // Names checked by the handlers.
        ("FuncCall", "funcname")
            | ("TypeName", "names")
            | ("ColumnRef", "fields")
            | ("AExpr", "name")
            | ("SubLink", "oper_name")
            | ("SortBy", "use_op")
            | ("CollateClause", "collname")
            | ("ObjectWithArgs", "objname")
            | ("RangeTableSample", "method")
            | ("IndexElem" | "PartitionElem", "opclass" | "collation")
            | ("Constraint", "exclusions")
            | ("DefElem", "arg")
            | ("CreateTrigStmt", "funcname")
            | ("CreateFunctionStmt", "funcname")
            | ("DefineStmt", "defnames")
            | ("DropStmt", "objects")
            | ("CommentStmt", "object")
            | ("RenameStmt", "object")
            | ("AlterObjectSchemaStmt", "object")
            | ("AlterOwnerStmt", "object")
            | ("GrantStmt", "objects")
            | ("CreateDomainStmt", "domainname")
            | ("AlterDomainStmt", "type_name")
            | ("CreateEnumStmt", "type_name")
            | ("AlterEnumStmt", "type_name")
            | ("CreateRangeStmt", "type_name")
            | ("AlterTypeStmt", "type_name")
            | ("CreateConversionStmt", "conversion_name" | "func_name")
            | ("AlterCollationStmt", "collname")
            | ("AlterTsDictionaryStmt", "dictname")
            | ("AlterTsConfigurationStmt", "cfgname" | "dicts")
            | ("CreateStatsStmt" | "AlterStatsStmt", "defnames")
            // Column names, aliases, labels and free-form strings.
            | ("Alias", "colnames")
            | ("ViewStmt", "aliases")
            | ("IntoClause", "col_names")
            | ("CopyStmt", "attlist")
            | ("Constraint", "keys" | "including" | "fk_attrs" | "pk_attrs" | "fk_del_set_cols")
            | ("CommonTableExpr", "aliascolnames")
            | ("CteSearchClause", "search_col_list")
            | ("CteCycleClause", "cycle_col_list")
            | ("JoinExpr", "using_clause")
            | ("CreateTrigStmt", "args" | "columns")
            | ("VacuumRelation", "va_cols")
            | ("AccessPriv", "cols")
            | ("CreateEnumStmt", "vals")
            | ("CreateStatsStmt", "stat_types")
            | ("AlterTsConfigurationStmt", "tokentype")
    )
}

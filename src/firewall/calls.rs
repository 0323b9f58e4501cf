//! Names hidden in function calls, casts and options: the schema of the
//! called function, refused functions (files, dynamic SQL, other tenants'
//! sessions, ...), object names passed as text (`nextval('s.q')`,
//! `'s.t'::regclass`), and qualified names inside options.
//!
//! Decision: only *constant* text arguments can be read. A computed name
//! (`nextval(x || '.q')`, a bind parameter) or an OID cannot be resolved
//! statically and is forwarded; the backend role's privileges decide.

use super::names::{self, TextName};
use super::rules::{self, FuncClass, RegKind};
use super::tree::N;
use super::walk::{Parts, Walker, const_str};

/// Options that name a function to call later (aggregates, operators,
/// types, range types).
const FUNCTION_OPTIONS: &[&str] = &[
    "sfunc",
    "msfunc",
    "minvfunc",
    "finalfunc",
    "mfinalfunc",
    "combinefunc",
    "serialfunc",
    "deserialfunc",
    "function",
    "procedure",
    "restrict",
    "join",
    "input",
    "output",
    "receive",
    "send",
    "typmod_in",
    "typmod_out",
    "analyze",
    "subscript",
    "canonical",
    "subtype_diff",
];

impl Walker<'_> {
    /// An object name written as text (`'s.t'::regclass`, `nextval('s.q')`).
    pub(crate) fn text_name(&mut self, text: &str, kind: RegKind, what: &'static str) {
        let parsed = names::object_name(text);
        let schema = match (&parsed, kind) {
            (Ok(n), RegKind::Object) => n.schema(),
            (
                Ok(TextName {
                    parts,
                    trailing_dot: false,
                }),
                RegKind::Schema,
            ) if parts.len() == 1 => Some(parts[0].as_str()),
            _ => {
                self.refuse(
                    rules::CROSS_SCHEMA,
                    format_args!(
                        "{what} given as text could not be read, so its schema cannot be checked"
                    ),
                );
                return;
            }
        };
        if let (Some(s), Ok(n)) = (schema, &parsed) {
            self.schema(s, rules::CROSS_SCHEMA, what, &|| n.display(), false);
        }
    }

    /// A function name that is refused whatever its arguments.
    pub(crate) fn refused_function_name(&mut self, name: &str) {
        if let Some(FuncClass::Refuse(rule, why)) = rules::function_class(name) {
            self.refuse(rule, format_args!("function {name}() {why}"));
        }
    }

    /// A function named to be called later (an aggregate's `SFUNC`, an
    /// operator's or a cast's `FUNCTION`): its arguments are never seen
    /// here, so a function the firewall checks by them is refused too.
    pub(crate) fn bound_function(&mut self, name: &str) {
        let (rule, why) = match rules::function_class(name) {
            None | Some(FuncClass::Lasting) => return,
            Some(FuncClass::Refuse(rule, why) | FuncClass::RefuseWithArgs(_, rule, why)) => {
                (rule, why)
            }
            Some(FuncClass::SetConfig) => (rules::SETTINGS, "changes settings"),
            Some(FuncClass::Notify) => (rules::LISTEN_NOTIFY, "signals channels"),
            Some(FuncClass::ObjectNameArgs | FuncClass::SchemaArgFromEnd(_)) => {
                (rules::CROSS_SCHEMA, "takes object names")
            }
        };
        self.refuse(
            rule,
            format_args!("function {name}() {why}: it can't be bound by name, where its arguments can't be checked"),
        );
    }

    pub(crate) fn func_call(&mut self, n: N<'_>) {
        let parts = Parts::of(n.list("funcname"));
        self.qualified(&parts, 2, rules::CROSS_SCHEMA, "function", false);
        let name = parts.last();
        let Some(class) = rules::function_class(name) else {
            return;
        };
        let nargs = n.list("args").count();
        match class {
            FuncClass::Refuse(rule, why) => {
                self.refuse(rule, format_args!("function {name}() {why}"))
            }
            FuncClass::RefuseWithArgs(k, rule, why) if k == nargs => {
                self.refuse(rule, format_args!("function {name}() {why}"))
            }
            FuncClass::RefuseWithArgs(..) | FuncClass::Lasting => {}
            FuncClass::ObjectNameArgs => {
                for a in n.list("args") {
                    if let Some(s) = const_str(a) {
                        self.text_name(s, RegKind::Object, "object name");
                    }
                }
            }
            FuncClass::SchemaArgFromEnd(k) => {
                if let Some(a) = nargs.checked_sub(k).and_then(|i| n.list("args").nth(i))
                    && let Some(s) = const_str(a)
                {
                    self.text_name(s, RegKind::Schema, "schema name");
                }
            }
            FuncClass::SetConfig => self.set_config(n),
            FuncClass::Notify => self.refuse(
                rules::LISTEN_NOTIFY,
                format_args!("pg_notify() is not supported yet"),
            ),
        }
    }

    /// `'s.t'::regclass`, `CAST('s' AS regnamespace)`, `regclass 's.t'`.
    pub(crate) fn type_cast(&mut self, n: N<'_>) {
        let Some(tn) = n.get("type_name") else { return };
        let parts = Parts::of(tn.list("names"));
        let Some(kind) = rules::reg_type(parts.last()) else {
            return;
        };
        if let Some(s) = n.get("arg").and_then(const_str) {
            let what = match kind {
                RegKind::Object => "object name",
                RegKind::Schema => "schema name",
            };
            self.text_name(s, kind, what);
        }
    }

    /// Options: a bare name list in an option is an object name
    /// (`SEQUENCE NAME s.q`, `COMMUTATOR = OPERATOR(s.+)`, `FROM s.coll`).
    pub(crate) fn def_elem(&mut self, n: N<'_>) {
        let Some(arg) = n.get("arg") else { return };
        // SFUNC = f, FUNCTION = f: a function bound by name (a TypeName's
        // schema is checked where it is walked). PostgreSQL also takes the
        // name quoted, as text that may name a schema.
        if FUNCTION_OPTIONS.contains(&n.str("defname")) {
            if arg.kind() == "TypeName" {
                self.bound_function(Parts::of(arg.list("names")).last());
            } else if let Some(text) = arg.string_node() {
                self.text_name(text, RegKind::Object, "function name");
                if let Ok(name) = names::object_name(text)
                    && let Some(last) = name.parts.last()
                {
                    self.bound_function(last);
                }
            }
            return;
        }
        if arg.kind() != "List" {
            return;
        }
        use rules::CROSS_SCHEMA as X;
        match n.str("defname") {
            // Column lists (COPY), function bodies, handled-by-statement lists.
            "force_quote" | "force_not_null" | "force_null" | "as" | "schemas" | "roles" => {}
            // OWNED BY s.t.c names a column.
            "owned_by" => self.name_field(arg, "items", 3, X, "column", false),
            _ => self.name_field(arg, "items", 2, X, "object", false),
        }
    }
}

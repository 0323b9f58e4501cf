//! Best-effort checks inside PL/pgSQL bodies (`DO` blocks, `CREATE
//! FUNCTION ... LANGUAGE plpgsql`).
//!
//! Decision: these are forwarded, not refused — migrations and ORMs use `DO`
//! blocks and trigger functions routinely. pg_query compiles the body with
//! the real PL/pgSQL parser; every embedded SQL statement and expression
//! (`PLpgSQL_expr`) is then checked like top-level SQL, and so is a dynamic
//! `EXECUTE` whose query is a single string literal; declared variable types
//! (`v s.t%ROWTYPE`) are checked as names. Dynamic SQL built at
//! run time (`EXECUTE format(...)`, `'...' || x`) cannot be seen: there,
//! the tenant's backend role and its privileges are the guarantee.

use serde_json::Value;

use super::parse;
use super::rules;
use super::walk::{Walker, const_str};

impl Walker<'_> {
    /// Compiles the PL/pgSQL in `stmt` (one CREATE FUNCTION or DO statement)
    /// and checks what it runs.
    pub(crate) fn plpgsql(&mut self, stmt: &str) {
        match parse::plpgsql(stmt) {
            Ok(v) => self.pl_value(&v, "", ""),
            // A body that does not compile does not run either; forward it
            // only if it is lexically harmless, like any unparsable text.
            Err(f) => self.unparsed(stmt, f),
        }
    }

    /// Walks pg_query's JSON: `{"PLpgSQL_stmt_x": {field: value, ...}}`.
    fn pl_value(&mut self, v: &Value, node: &str, field: &str) {
        if self.done() {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    if k == "PLpgSQL_expr" {
                        self.pl_expr(val, node, field);
                    } else if node == "PLpgSQL_type" && k == "typname" {
                        if let Some(t) = val.as_str() {
                            self.pl_type(t);
                        }
                    } else if k.starts_with("PLpgSQL_") {
                        self.pl_value(val, k, "");
                    } else {
                        self.pl_value(val, node, k);
                    }
                }
            }
            Value::Array(a) => {
                for x in a {
                    self.pl_value(x, node, field);
                }
            }
            _ => {}
        }
    }

    /// A declared variable type: `s.t%ROWTYPE`, `s.t.c%TYPE`, `s.typ`.
    /// pg_query prints the already-folded parts joined by dots without
    /// quoting, so a quoted part containing a dot cannot be told apart:
    /// every part before the object's own name is checked as a schema.
    fn pl_type(&mut self, typname: &str) {
        let lower = typname.to_ascii_lowercase();
        let (body, own) = if lower.ends_with("%rowtype") {
            (&typname[..typname.len() - "%rowtype".len()], 1)
        } else if lower.ends_with("%type") {
            (&typname[..typname.len() - "%type".len()], 2)
        } else {
            (typname, 1)
        };
        let parts: Vec<&str> = body.split('.').collect();
        if parts.len() > own {
            for q in &parts[..parts.len() - own] {
                self.schema(q, rules::CROSS_SCHEMA, "type", &|| body.to_owned(), false);
            }
        }
    }

    fn pl_expr(&mut self, e: &Value, node: &str, field: &str) {
        let Some(query) = e.get("query").and_then(Value::as_str) else {
            return;
        };
        let mode = e
            .get("parseMode")
            .and_then(Value::as_i64)
            .and_then(|m| i32::try_from(m).ok())
            .unwrap_or(0);
        self.nested(query, mode);
        let dynamic = field == "dynquery"
            || (field == "query"
                && matches!(node, "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors"));
        if dynamic && let Some(sql) = constant_text(query, mode) {
            self.nested(&sql, 0);
        }
    }
}

/// The value of an expression that is exactly one string constant, in any
/// quoting (`'...'`, `$q$...$q$`, `E'...'`, casts to text).
fn constant_text(expr: &str, mode: i32) -> Option<String> {
    let tree = parse::sql(expr, mode).ok()?;
    let root = tree.root()?;
    let mut stmts = root.list("stmts");
    let select = stmts.next()?.get("stmt")?;
    if stmts.next().is_some() || select.kind() != "SelectStmt" {
        return None;
    }
    let mut targets = select.list("target_list");
    let target = targets.next()?;
    if targets.next().is_some() {
        return None;
    }
    const_str(target.get("val")?).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::constant_text;

    #[test]
    fn only_a_single_constant_is_read() {
        let expr = 2; // RAW_PARSE_PLPGSQL_EXPR
        assert_eq!(constant_text("'a''b'", expr).as_deref(), Some("a'b"));
        assert_eq!(constant_text("$q$x$q$", expr).as_deref(), Some("x"));
        assert_eq!(constant_text("'x'::text", expr).as_deref(), Some("x"));
        assert_eq!(constant_text("'a' || 'b'", expr), None);
        assert_eq!(constant_text("format('%I', x)", expr), None);
        assert_eq!(constant_text("x", expr), None);
    }
}

//! The only door to pg_query.
//!
//! libpg_query redirects the process-wide stderr (fd 2) into a pipe around
//! every parse to capture parser notices. Two parses running at once on
//! different threads can leave fd 2 pointing at a closed pipe, so every call
//! into pg_query in this crate must hold `PARSER`. Parses take microseconds
//! and hits are served from the verdict cache, so the lock is cheap.

use std::sync::{Mutex, PoisonError};

use super::tree::Tree;

static PARSER: Mutex<()> = Mutex::new(());

/// Why a text could not be turned into a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The grammar rejected it (or the parser could not run: see `Other`).
    Syntax,
    /// The tree is nested deeper than pg_query's protobuf decoder allows.
    TooDeep,
    /// Anything else (a NUL byte, no free file descriptor for the pipe).
    Other,
}

fn classify(e: &pg_query::Error) -> Failure {
    match e {
        // libpg_query reports its own plumbing failures through the same
        // channel as syntax errors; they say nothing about the SQL.
        pg_query::Error::Parse(m) if m.starts_with("Failed to ") => Failure::Other,
        pg_query::Error::Parse(_) => Failure::Syntax,
        pg_query::Error::Decode(_) => Failure::TooDeep,
        _ => Failure::Other,
    }
}

/// Parses SQL text with the given raw parse mode (0 = statements,
/// 2 = PL/pgSQL expression, 3..5 = PL/pgSQL assignment).
pub(crate) fn sql(text: &str, mode: i32) -> Result<Tree, Failure> {
    let parsed = {
        let _g = PARSER.lock().unwrap_or_else(PoisonError::into_inner);
        pg_query::parse(text, mode)
    };
    match parsed {
        Ok(r) => Ok(Tree::build(&r.protobuf)),
        Err(e) => Err(classify(&e)),
    }
}

/// Compiles the PL/pgSQL functions and DO blocks in `text` to pg_query's
/// JSON form.
pub(crate) fn plpgsql(text: &str) -> Result<serde_json::Value, Failure> {
    let _g = PARSER.lock().unwrap_or_else(PoisonError::into_inner);
    match plpgsql_json(text) {
        // pg_query's stand-in catalog resolves schema-qualified types only in
        // pg_catalog and public. Parameter and return types do not matter to
        // what the body runs (and the walk checks their names separately),
        // so retry with those unqualified.
        Err(PlError::Parse(m)) if m.contains("LookupExplicitNamespace") => {
            let Ok(mut parsed) = pg_query::parse(text, 0) else {
                return Err(Failure::Syntax);
            };
            unqualify_signatures(&mut parsed.protobuf);
            let text = pg_query::deparse(&parsed.protobuf, Default::default())
                .map_err(|_| Failure::Other)?;
            plpgsql_json(&text).map_err(PlError::failure)
        }
        r => r.map_err(PlError::failure),
    }
}

enum PlError {
    Parse(String),
    Other,
}

impl PlError {
    fn failure(self) -> Failure {
        match self {
            PlError::Parse(m) if m.starts_with("Failed to ") => Failure::Other,
            PlError::Parse(_) => Failure::Syntax,
            PlError::Other => Failure::Other,
        }
    }
}

/// `pg_query::parse_plpgsql` without its JSON decoding: libpg_query writes
/// `{}}` for datums it cannot dump (the TG_* variables of every trigger
/// function), which is invalid JSON. We drop those elements before decoding.
fn plpgsql_json(text: &str) -> Result<serde_json::Value, PlError> {
    use std::ffi::{CStr, CString};
    let input = CString::new(text).map_err(|_| PlError::Other)?;
    // SAFETY: libpg_query's documented C API, linked into this binary by the
    // pg_query crate; the input is NUL-terminated and outlives the call, the
    // result is read before it is freed exactly once.
    let raw = unsafe {
        let result = ffi::pg_query_parse_plpgsql(input.as_ptr());
        let out = if !result.error.is_null() {
            let m = CStr::from_ptr((*result.error).message)
                .to_string_lossy()
                .into_owned();
            Err(PlError::Parse(m))
        } else if result.plpgsql_funcs.is_null() {
            Err(PlError::Other)
        } else {
            Ok(CStr::from_ptr(result.plpgsql_funcs)
                .to_string_lossy()
                .into_owned())
        };
        ffi::pg_query_free_plpgsql_parse_result(result);
        out?
    };
    serde_json::from_str(&drop_empty_datums(raw)).map_err(|_| PlError::Other)
}

/// Removes the `{}}` elements (with one adjacent comma) from datum arrays.
fn drop_empty_datums(mut s: String) -> String {
    while let Some(i) = s.find("{}}") {
        let before = s[..i].chars().next_back();
        let after = s[i + 3..].chars().next();
        let range = match (before, after) {
            (Some('[' | ','), Some(',')) => i..i + 4,
            (Some(','), Some(']')) => i - 1..i + 3,
            (Some('['), Some(']')) => i..i + 3,
            // Not a broken element (it is inside a string): leave the rest.
            _ => break,
        };
        s.replace_range(range, "");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::drop_empty_datums;

    #[test]
    fn broken_datums_are_dropped() {
        let fix = |s: &str| drop_empty_datums(s.to_owned());
        assert_eq!(
            fix(r#"{"d":[{"a":1},{}},{}},{"b":2}]}"#),
            r#"{"d":[{"a":1},{"b":2}]}"#
        );
        assert_eq!(fix(r#"{"d":[{}},{"b":2}]}"#), r#"{"d":[{"b":2}]}"#);
        assert_eq!(fix(r#"{"d":[{"a":1},{}}]}"#), r#"{"d":[{"a":1}]}"#);
        assert_eq!(fix(r#"{"d":[{}}]}"#), r#"{"d":[]}"#);
        assert_eq!(fix(r#"{"q":"x{}}y"}"#), r#"{"q":"x{}}y"}"#);
    }
}

mod ffi {
    use std::os::raw::{c_char, c_int};

    #[repr(C)]
    pub(super) struct PgQueryError {
        pub message: *mut c_char,
        pub funcname: *mut c_char,
        pub filename: *mut c_char,
        pub lineno: c_int,
        pub cursorpos: c_int,
        pub context: *mut c_char,
    }

    #[repr(C)]
    pub(super) struct PgQueryPlpgsqlParseResult {
        pub plpgsql_funcs: *mut c_char,
        pub error: *mut PgQueryError,
    }

    unsafe extern "C" {
        pub(super) fn pg_query_parse_plpgsql(input: *const c_char) -> PgQueryPlpgsqlParseResult;
        pub(super) fn pg_query_free_plpgsql_parse_result(result: PgQueryPlpgsqlParseResult);
    }
}

fn unqualify_signatures(tree: &mut pg_query::protobuf::ParseResult) {
    use pg_query::NodeEnum;
    for raw in &mut tree.stmts {
        let Some(NodeEnum::CreateFunctionStmt(f)) = raw.stmt.as_mut().and_then(|s| s.node.as_mut())
        else {
            continue;
        };
        for p in &mut f.parameters {
            if let Some(NodeEnum::FunctionParameter(p)) = &mut p.node
                && let Some(t) = &mut p.arg_type
            {
                unqualify(t);
            }
        }
        if let Some(t) = &mut f.return_type {
            unqualify(t);
        }
    }
}

/// `s.t` -> `t`; `s.t.c%TYPE` -> `t.c%TYPE`.
fn unqualify(t: &mut pg_query::protobuf::TypeName) {
    let keep = if t.pct_type { 2 } else { 1 };
    if t.names.len() > keep {
        let cut = t.names.len() - keep;
        t.names.drain(..cut);
    }
}

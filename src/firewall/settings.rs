//! Session settings: `SET`/`RESET`/`SET LOCAL` (also inside function
//! `SET` clauses and `ALTER FUNCTION ... SET`) and `set_config()`.
//!
//! - `search_path`: every entry must be the tenant's schema, pg_catalog,
//!   information_schema, pg_temp, a shared schema or `$user` (the tenant's
//!   own role name); `SET search_path = DEFAULT`/`RESET` are fine (the role
//!   default is pinned to the tenant's schema).
//! - `role` / `session_authorization`: only the resets (`RESET ROLE`,
//!   `SET ROLE NONE`, `... DEFAULT`) pass: they return to the login role,
//!   which is the tenant's own.
//! - `standard_conforming_strings` and `client_encoding` change how the
//!   server lexes SQL; the firewall parses with `on` and UTF8, so they must
//!   stay that way or the server could read a different statement than the
//!   one checked.

use pg_query::protobuf::VariableSetKind as V;

use super::names;
use super::rules;
use super::tree::N;
use super::walk::{Walker, const_str};

impl Walker<'_> {
    /// SET / RESET / SET LOCAL of the settings that matter (module doc).
    pub(crate) fn variable_set(&mut self, n: N<'_>) {
        let kind = n.int("kind");
        let value = kind == V::VarSetValue as i64;
        let name = n.str("name").to_ascii_lowercase();
        match name.as_str() {
            "search_path" if value => {
                for arg in n.list("args") {
                    match const_str(arg) {
                        // Each SET argument is one schema name, verbatim.
                        Some(s) => self.search_path_entry(s),
                        None => self.refuse(
                            rules::SEARCH_PATH,
                            format_args!("a search_path value that is not a name is not allowed"),
                        ),
                    }
                }
            }
            "role" => {
                let none = value && single_value(n).is_some_and(|v| v == "none");
                if !(kind == V::VarReset as i64 || none) {
                    self.refuse(rules::ROLE, format_args!("SET ROLE is not allowed"));
                }
            }
            "session_authorization"
                if kind != V::VarReset as i64 && kind != V::VarSetDefault as i64 =>
            {
                self.refuse(
                    rules::SESSION_AUTHORIZATION,
                    format_args!("SET SESSION AUTHORIZATION is not allowed"),
                )
            }
            "standard_conforming_strings" | "client_encoding" if value => {
                self.parser_setting(&name, single_value(n))
            }
            _ => {}
        }
    }

    fn search_path_entry(&mut self, s: &str) {
        if s != "$user" {
            self.schema(
                s,
                rules::SEARCH_PATH,
                "search_path entry",
                &|| s.to_owned(),
                false,
            );
        }
    }

    /// Settings that change how the server lexes SQL: the firewall parses
    /// with standard_conforming_strings=on and UTF8, so those must stay.
    fn parser_setting(&mut self, name: &str, value: Option<&str>) {
        let ok = match (name, value) {
            ("standard_conforming_strings", Some(v)) => {
                matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1")
            }
            ("client_encoding", Some(v)) => {
                let v: String = v
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                v == "utf8" || v == "unicode"
            }
            _ => false,
        };
        if !ok {
            self.refuse(
                rules::SETTINGS,
                format_args!("changing {name} is not allowed"),
            );
        }
    }

    /// `set_config(name, value, is_local)`.
    pub(crate) fn set_config(&mut self, n: N<'_>) {
        let mut args = n.list("args");
        let Some(name) = args.next().and_then(const_str) else {
            self.refuse(
                rules::SETTINGS,
                format_args!(
                    "set_config() with a setting name that is not a literal is not allowed"
                ),
            );
            return;
        };
        let value = args.next().and_then(const_str);
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "search_path" => match value.map(names::search_path_list) {
                Some(Ok(list)) => {
                    for s in &list {
                        self.search_path_entry(s);
                    }
                }
                _ => self.refuse(
                    rules::SEARCH_PATH,
                    format_args!("set_config('search_path', ...) with a value that is not a readable literal is not allowed"),
                ),
            },
            "role" => self.refuse(rules::ROLE, format_args!("set_config('role', ...) is not allowed")),
            "session_authorization" => self.refuse(
                rules::SESSION_AUTHORIZATION,
                format_args!("set_config('session_authorization', ...) is not allowed"),
            ),
            "standard_conforming_strings" | "client_encoding" => {
                self.parser_setting(&name, value)
            }
            _ => {}
        }
    }
}

/// A single literal SET value (`SET x = 'v'`, `SET x TO v`).
fn single_value<'t>(n: N<'t>) -> Option<&'t str> {
    let mut args = n.list("args");
    let first = args.next()?;
    if args.next().is_some() {
        return None;
    }
    if let Some(s) = const_str(first) {
        return Some(s);
    }
    // SET x = 1: an integer constant.
    let v = first.get("val")?;
    (v.kind() == "Integer").then(|| if v.int("ival") == 1 { "1" } else { "0" })
}

/// Whether the server, with setting `name` at `value`, would read
/// statement text differently from the firewall: multi-byte client
/// encodings whose second bytes can be ASCII (a quote or backslash inside
/// a character), and backslash escapes in ''. Values are compared as
/// PostgreSQL reads them: encoding names by their letters and digits only,
/// booleans by any prefix of their spellings, so
/// `standard_conforming_strings` must spell true. For startup settings
/// and for what the server reports (ParameterStatus) alike.
pub fn misread_under(name: &str, value: &str) -> bool {
    match name {
        "client_encoding" => {
            let v: String = value
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            CLIENT_ONLY_ENCODINGS.contains(&v.as_str())
        }
        "standard_conforming_strings" => !matches!(
            value.to_ascii_lowercase().as_str(),
            "on" | "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "1"
        ),
        _ => false,
    }
}

/// Every name PostgreSQL accepts (`encnames.c`, cleaned: lowercase letters
/// and digits) for SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and
/// JOHAB: the client-only encodings, the ones whose characters can hide an
/// ASCII byte. Every server encoding keeps ASCII bytes ASCII.
const CLIENT_ONLY_ENCODINGS: &[&str] = &[
    "sjis",
    "shiftjis",
    "mskanji",
    "win932",
    "windows932",
    "shiftjis2004",
    "big5",
    "win950",
    "windows950",
    "gbk",
    "win936",
    "windows936",
    "cp936",
    "uhc",
    "win949",
    "windows949",
    "gb18030",
    "johab",
];

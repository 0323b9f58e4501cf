//! The SQL that gives a server connection a client's settings.
//!
//! `SET` is a utility statement: Postgres runs it without planning, so it
//! costs about a sixth less than `SELECT set_config(…)` per new client.
//! The one place they differ is list settings whose items are identifiers
//! (`search_path`, `temp_tablespaces`, the preload lists): `SET` would
//! read a quoted string as ONE item, so those keep `set_config`, which
//! parses the value the way the config file does.

/// A client's settings (name, value), shared: sessions with the same
/// settings hold one interned copy (see `Pools::intern`), so that a
/// connection's settings are usually compared with the next client's by
/// pointer, not by every name and value, at each transaction.
pub type Settings = std::sync::Arc<[(String, String)]>;

/// Settings that `SET name TO 'a, b'` would take as a single item.
const LIST_OF_NAMES: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

/// Appends the statement that sets `name` to `value` for the session.
pub fn push_set(sql: &mut String, name: &str, value: &str) {
    if LIST_OF_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        sql.push_str("SELECT pg_catalog.set_config(");
        push_literal(sql, name);
        sql.push_str(", ");
        push_literal(sql, value);
        sql.push_str(", false);");
    } else {
        sql.push_str("SET ");
        push_name(sql, name);
        sql.push_str(" TO ");
        push_literal(sql, value);
        sql.push(';');
    }
}

/// The query that reads back a session's settings (name, value), names
/// lowercased, ordered by name (every name and operator qualified: a
/// tenant's temporary table or operator must not stand in for the
/// catalog's): what `pg_settings` lists as set in the
/// session, and the custom settings `custom` names, which it never lists
/// unless an extension defines them (see `session::custom`).
pub fn capture_sql<'a>(custom: impl Iterator<Item = &'a str>) -> String {
    let mut sql = String::from(
        "SELECT pg_catalog.lower(name), setting FROM pg_catalog.pg_settings \
         WHERE source OPERATOR(pg_catalog.=) 'session'",
    );
    let mut any = false;
    for name in custom {
        sql.push_str(if any {
            "), ("
        } else {
            " UNION SELECT c.n, v FROM (VALUES ("
        });
        push_literal(&mut sql, &name.to_lowercase());
        any = true;
    }
    if any {
        sql.push_str(
            ")) AS c(n), pg_catalog.current_setting(c.n, true) AS v WHERE v IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings s \
             WHERE pg_catalog.lower(s.name) OPERATOR(pg_catalog.=) c.n)",
        );
    }
    sql.push_str(" ORDER BY 1");
    sql
}

/// The backend session's `options`: the tenant's schema as `search_path`
/// and `standard_conforming_strings` on, given at login so that they are
/// the session's reset values. A client's `RESET ALL` or `DISCARD ALL`
/// returns to them, and a role default (`ALTER ROLE … SET`, which a role
/// may run on itself) can't replace them for the next connection.
pub fn startup_options(schema: &str) -> String {
    let mut o = String::from("-c standard_conforming_strings=on -c search_path=");
    let plain = schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        o.push_str(schema);
    } else {
        // A quoted identifier; `options` splits at whitespace unless escaped.
        o.push('"');
        for c in schema.chars() {
            match c {
                '"' => o.push_str("\"\""),
                c if c.is_ascii_whitespace() || c == '\\' => {
                    o.push('\\');
                    o.push(c);
                }
                c => o.push(c),
            }
        }
        o.push('"');
    }
    o
}

/// The query that gives a session back the client's startup settings a
/// `RESET` (or `DISCARD ALL`, `SET … TO DEFAULT`) took away, as PostgreSQL
/// keeps startup values as a session's reset values, where the proxy sets
/// them with SET. It sets only what the server no longer holds as set in
/// the session, so running it after any statement is right: after a
/// rolled-back RESET it does nothing. Custom settings (not in
/// `pg_settings`) are given back when empty. None without startup
/// settings.
pub fn restore_sql(startup: &[(String, String)]) -> Option<String> {
    if startup.is_empty() {
        return None;
    }
    let mut sql = String::from("SELECT pg_catalog.set_config(s.n, s.v, false) FROM (VALUES ");
    for (i, (name, value)) in startup.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_literal(&mut sql, name);
        sql.push_str(", ");
        push_literal(&mut sql, value);
        sql.push(')');
    }
    sql.push_str(
        ") AS s(n, v) LEFT JOIN pg_catalog.pg_settings p \
         ON pg_catalog.lower(p.name) OPERATOR(pg_catalog.=) s.n \
         WHERE CASE WHEN p.name IS NULL \
         THEN coalesce(pg_catalog.current_setting(s.n, true), '') OPERATOR(pg_catalog.=) '' \
         ELSE p.source OPERATOR(pg_catalog.<>) 'session' \
         AND (p.context OPERATOR(pg_catalog.=) 'user' \
         OR p.context OPERATOR(pg_catalog.=) 'superuser') \
         AND NOT p.name OPERATOR(pg_catalog.~~) 'transaction\\_%' END",
    );
    Some(sql)
}

/// Appends `RESET name;`.
pub fn push_reset(sql: &mut String, name: &str) {
    sql.push_str("RESET ");
    push_name(sql, name);
    sql.push(';');
}

/// A setting name as SQL: each dotted part (`myapp.tenant`) quoted, so
/// keywords and odd characters are safe; names are case-insensitive.
fn push_name(sql: &mut String, name: &str) {
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            sql.push('.');
        }
        push_quoted(sql, '"', part, false);
    }
}

/// A string literal that reads the same whatever
/// `standard_conforming_strings` is: backslashes go in an E'' literal.
fn push_literal(sql: &mut String, s: &str) {
    let escapes = s.contains('\\');
    if escapes {
        sql.push('E');
    }
    push_quoted(sql, '\'', s, escapes);
}

/// `s` between `quote`s, each `quote` inside doubled (and each backslash
/// if `backslashes`).
fn push_quoted(sql: &mut String, quote: char, s: &str, backslashes: bool) {
    debug_assert!(quote.is_ascii());
    let q = quote as u8;
    sql.reserve(s.len() + 2);
    sql.push(quote);
    // Runs between the characters to double are copied whole (once per
    // login for each setting, so not char by char). Both are ASCII: the
    // slices below end on character boundaries.
    let mut rest = s;
    while let Some(i) = rest
        .bytes()
        .position(|b| b == q || (backslashes && b == b'\\'))
    {
        sql.push_str(&rest[..=i]);
        sql.push(char::from(rest.as_bytes()[i]));
        rest = &rest[i + 1..];
    }
    sql.push_str(rest);
    sql.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_quotes_every_value() {
        assert_eq!(restore_sql(&[]), None);
        let sql = restore_sql(&[
            ("datestyle".into(), "ISO, DMY".into()),
            ("app.who".into(), r"it's a\b".into()),
        ])
        .unwrap();
        assert!(
            sql.contains(r"('datestyle', 'ISO, DMY'), ('app.who', E'it''s a\\b')"),
            "{sql}"
        );
    }

    #[test]
    fn startup_options_name_the_schema_as_postgresql_splits_them() {
        let o = |s| startup_options(s);
        assert_eq!(
            o("tenant_acme"),
            "-c standard_conforming_strings=on -c search_path=tenant_acme"
        );
        // Adopted legacy schemas may have any name.
        assert!(o("My Schema").ends_with(r#"search_path="My\ Schema""#));
        assert!(o(r#"a"b\c"#).ends_with(r#"search_path="a""b\\c""#));
        assert!(
            o("a\tb").ends_with("search_path=\"a\\\tb\""),
            "{}",
            o("a\tb")
        );
    }

    #[test]
    fn capture_reads_custom_settings_by_name() {
        let plain = "SELECT pg_catalog.lower(name), setting FROM pg_catalog.pg_settings \
                     WHERE source OPERATOR(pg_catalog.=) 'session'";
        assert_eq!(capture_sql([].into_iter()), format!("{plain} ORDER BY 1"));
        assert_eq!(
            capture_sql(["app.who", "App.O'k"].into_iter()),
            format!(
                "{plain} UNION SELECT c.n, v FROM (VALUES ('app.who'), ('app.o''k')) AS c(n), \
                 pg_catalog.current_setting(c.n, true) AS v WHERE v IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings s \
                 WHERE pg_catalog.lower(s.name) OPERATOR(pg_catalog.=) c.n) ORDER BY 1"
            )
        );
    }

    fn set(name: &str, value: &str) -> String {
        let mut s = String::new();
        push_set(&mut s, name, value);
        s
    }

    #[test]
    fn plain_settings_use_set() {
        assert_eq!(
            set("application_name", "pgbench"),
            r#"SET "application_name" TO 'pgbench';"#
        );
        assert_eq!(
            set("DateStyle", "ISO, MDY"),
            r#"SET "DateStyle" TO 'ISO, MDY';"#
        );
        assert_eq!(set("myapp.tenant", "x"), r#"SET "myapp"."tenant" TO 'x';"#);
    }

    #[test]
    fn lists_of_names_use_set_config() {
        assert_eq!(
            set("Search_Path", "a, b"),
            "SELECT pg_catalog.set_config('Search_Path', 'a, b', false);"
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(
            set("application_name", "o'k"),
            r#"SET "application_name" TO 'o''k';"#
        );
        assert_eq!(
            set("application_name", r"a\'b"),
            r#"SET "application_name" TO E'a\\''b';"#
        );
        assert_eq!(set(r#"we"ird"#, "v"), r#"SET "we""ird" TO 'v';"#);
        // Several in a row, at the ends, between multi-byte characters.
        assert_eq!(
            set("application_name", "'ü''é'"),
            r#"SET "application_name" TO '''ü''''é''';"#
        );
        assert_eq!(
            set("application_name", r"é\"),
            r#"SET "application_name" TO E'é\\';"#
        );
        let mut s = String::new();
        push_reset(&mut s, "statement_timeout");
        assert_eq!(s, r#"RESET "statement_timeout";"#);
    }
}

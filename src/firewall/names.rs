//! Object names written inside string constants (`'s.t'::regclass`,
//! `nextval('s.seq')`, `set_config('search_path', 'a, "B"', false)`).
//!
//! The parser has already folded and decoded names written as SQL
//! identifiers; names inside strings are only interpreted by the server when
//! the statement runs, so we mimic Postgres' own splitting here
//! (`SplitIdentifierString` / `stringToQualifiedNameList`): whitespace around
//! parts is ignored, `"..."` keeps case and `""` is a quote, unquoted parts
//! are lower-cased (ASCII, as for UTF8 databases) and every part is
//! truncated to 63 bytes like the server does.

/// NAMEDATALEN - 1: the longest identifier the server keeps.
const MAX_IDENT: usize = 63;

/// A name read from the start of a string constant.
#[derive(Debug, PartialEq, Eq)]
pub struct TextName {
    /// Identifier parts, in order.
    pub parts: Vec<String>,
    /// The last part was followed by a dot, so every part is a qualifier and
    /// the object's own name is not an identifier (an operator: `'s.+'`).
    pub trailing_dot: bool,
}

impl TextName {
    /// The schema part of a possibly qualified object name, if any.
    pub fn schema(&self) -> Option<&str> {
        let n = self.parts.len();
        if self.trailing_dot {
            self.parts.last().map(String::as_str)
        } else if n >= 2 {
            Some(&self.parts[n - 2])
        } else {
            None
        }
    }

    /// Dotted display form, for messages.
    pub fn display(&self) -> String {
        self.parts.join(".")
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_IDENT {
        let mut cut = MAX_IDENT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Reads one identifier at the start of `s`: (identifier, rest).
/// Err for an unterminated or empty quoted identifier.
fn ident(s: &str) -> Result<Option<(String, &str)>, ()> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if body[i + 1..].starts_with('"') {
                    out.push('"');
                    chars.next();
                } else {
                    if out.is_empty() {
                        return Err(());
                    }
                    return Ok(Some((truncate(out), &body[i + 1..])));
                }
            } else {
                out.push(c);
            }
        }
        return Err(());
    }
    let end = s.find(|c: char| !is_ident_char(c)).unwrap_or(s.len());
    if end == 0 {
        return Ok(None);
    }
    Ok(Some((truncate(s[..end].to_ascii_lowercase()), &s[end..])))
}

/// Reads a possibly qualified name from the start of `s`, ignoring what
/// follows it (`(int)` argument lists, `[]`, an operator). Err when the text
/// cannot be read the way the server would read it; callers refuse then.
pub fn object_name(s: &str) -> Result<TextName, ()> {
    let mut rest = s.trim_start();
    let mut parts = Vec::new();
    let mut trailing_dot = false;
    while let Some((part, after)) = ident(rest)? {
        parts.push(part);
        let after = after.trim_start();
        match after.strip_prefix('.') {
            Some(r) => {
                trailing_dot = true;
                rest = r.trim_start();
            }
            None => {
                trailing_dot = false;
                rest = after;
                break;
            }
        }
    }
    // A dot or quote we could not account for: the name is not what we
    // think it is, so do not pretend to know its schema.
    if !trailing_dot && (rest.contains('.') || rest.contains('"')) {
        return Err(());
    }
    if trailing_dot && rest.contains('"') {
        return Err(());
    }
    Ok(TextName {
        parts,
        trailing_dot,
    })
}

/// Splits a `search_path` value the way the server does: a comma-separated
/// list of identifiers. Err on malformed input (the server rejects it too,
/// but we refuse rather than guess).
pub fn search_path_list(s: &str) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    if rest.is_empty() {
        return Ok(out);
    }
    loop {
        let (part, after) = if rest.starts_with('"') {
            ident(rest)?.ok_or(())?
        } else {
            let end = rest
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(());
            }
            (truncate(rest[..end].to_ascii_lowercase()), &rest[end..])
        };
        out.push(part);
        let after = after.trim_start();
        match after.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None if after.is_empty() => return Ok(out),
            None => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(s: &str) -> Option<String> {
        object_name(s).unwrap().schema().map(str::to_owned)
    }

    #[test]
    fn qualified_names_in_text() {
        assert_eq!(schema("tenant_b.t"), Some("tenant_b".into()));
        assert_eq!(schema("TENANT_B.T"), Some("tenant_b".into()));
        assert_eq!(schema("\"Tenant_B\".t"), Some("Tenant_B".into()));
        assert_eq!(schema(" tenant_b . t"), Some("tenant_b".into()));
        assert_eq!(schema("db.tenant_b.t"), Some("tenant_b".into()));
        assert_eq!(schema("tenant_b.f(integer)"), Some("tenant_b".into()));
        assert_eq!(schema("tenant_b.+"), Some("tenant_b".into()));
        assert_eq!(schema("tenant_b.mytype[]"), Some("tenant_b".into()));
        assert_eq!(schema("t"), None);
        assert_eq!(schema("double precision"), None);
        assert_eq!(schema("numeric(10,2)"), None);
        assert_eq!(schema("\"a\"\"b\".t"), Some("a\"b".into()));
    }

    #[test]
    fn unreadable_names_are_errors() {
        assert!(object_name("\"unterminated.t").is_err());
        assert!(object_name("f(x.y)").is_err());
        assert!(object_name("\"\".t").is_err());
    }

    #[test]
    fn long_identifiers_are_truncated_like_the_server() {
        let long = "a".repeat(80);
        let n = object_name(&format!("{long}.t")).unwrap();
        assert_eq!(n.parts[0].len(), 63);
    }

    #[test]
    fn search_path_values() {
        assert_eq!(
            search_path_list("tenant_a, \"$user\", PUBLIC").unwrap(),
            ["tenant_a", "$user", "public"]
        );
        assert_eq!(
            search_path_list("\"Tenant_B\",x").unwrap(),
            ["Tenant_B", "x"]
        );
        assert!(search_path_list("").unwrap().is_empty());
        assert!(search_path_list("a b").is_err());
        assert!(search_path_list("a,,b").is_err());
    }
}

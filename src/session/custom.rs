//! Transaction mode: the names of custom settings (`app.user_id`) a
//! statement changes.
//!
//! Settings follow their client from one server connection to the next by
//! being read back after a statement that changes them. PostgreSQL lists
//! real settings in `pg_settings`, but not custom ones that no extension
//! defines (placeholders, what `SET app.user_id = 42` creates, the usual
//! way to hand row-level security a user): those can only be read by name.
//! So the names are taken from the statement: `SET [SESSION] name`,
//! `RESET name` and `set_config('name', …)`. A `set_config` whose name is
//! not a plain literal can't be followed; the client is pinned instead.
//!
//! Read with a small tokenizer, not pg_query: it must work in every
//! firewall mode (`off` parses nothing), and runs only for the rare texts
//! the lexical pass flags as changing settings.

use crate::lexical::is_word_byte;

/// A custom setting is changed under a name the statement computes.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// Custom (dotted) setting names `sql` may change, lowercased.
pub fn custom_names(sql: &[u8]) -> Result<Vec<String>, Unreadable> {
    let mut names = Vec::new();
    let mut tokens = Tokens { sql, pos: 0 };
    let mut at_start = true;
    while let Some(t) = tokens.next() {
        let starts = at_start;
        at_start = t == Token::Punct(b';');
        let Token::Word(w) = t else { continue };
        // A DO block runs its body now, and the body is a string this
        // reading skips: whatever it sets can't be named.
        if starts && w.eq_ignore_ascii_case(b"do") {
            return Err(Unreadable);
        }
        if starts && (w.eq_ignore_ascii_case(b"set") || w.eq_ignore_ascii_case(b"reset")) {
            let mut name = tokens.name();
            if name.as_deref() == Some("session") {
                name = tokens.name();
            }
            // SET LOCAL ends with the transaction; nothing to follow.
            if let Some(n) = name.filter(|n| n.contains('.')) {
                names.push(n);
            }
        } else if w.eq_ignore_ascii_case(b"set_config") {
            if tokens.next() != Some(Token::Punct(b'(')) {
                continue; // a column or a name, not a call
            }
            let (Some(Token::Literal(n)), Some(Token::Punct(b','))) =
                (tokens.next(), tokens.next())
            else {
                return Err(Unreadable);
            };
            // set_config(name, value, true) lasts for the transaction only.
            if n.contains('.') && !tokens.third_argument_is_true() {
                names.push(n.to_lowercase());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a [u8]),
    /// A quoted identifier's or string literal's value.
    Quoted(String),
    Literal(String),
    Punct(u8),
}

/// SQL's tokens, as far as names and literals go: comments and
/// dollar-quoted bodies (a function's, which runs later) are skipped.
struct Tokens<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let s = self.sql;
        loop {
            let b = *s.get(self.pos)?;
            let rest = &s[self.pos..];
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if rest.starts_with(b"--") {
                self.pos += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            } else if rest.starts_with(b"/*") {
                self.skip_block_comment();
            } else if b == b'$' && self.skip_dollar_quote() {
            } else {
                break;
            }
        }
        let b = s[self.pos];
        let escapes = matches!(b, b'e' | b'E') && s.get(self.pos + 1) == Some(&b'\'');
        if escapes {
            self.pos += 1;
            return Some(Token::Literal(self.quoted(b'\'', true)));
        }
        if b == b'\'' {
            return Some(Token::Literal(self.quoted(b'\'', false)));
        }
        if b == b'"' {
            return Some(Token::Quoted(self.quoted(b'"', false)));
        }
        if is_word_byte(b) || b >= 0x80 {
            let len = s[self.pos..]
                .iter()
                .position(|&c| !(is_word_byte(c) || c == b'$' || c >= 0x80))
                .unwrap_or(s.len() - self.pos);
            let w = &s[self.pos..self.pos + len];
            self.pos += len;
            return Some(Token::Word(w));
        }
        self.pos += 1;
        Some(Token::Punct(b))
    }

    /// After `set_config(name,`: skips the value (any expression) and says
    /// whether the third argument is the plain constant true.
    fn third_argument_is_true(&mut self) -> bool {
        let mut depth = 0usize;
        loop {
            match self.next() {
                None => return false,
                Some(Token::Punct(b'(')) => depth += 1,
                Some(Token::Punct(b')')) if depth == 0 => return false,
                Some(Token::Punct(b')')) => depth -= 1,
                Some(Token::Punct(b',')) if depth == 0 => break,
                Some(_) => {}
            }
        }
        let is_true = match self.next() {
            Some(Token::Word(w)) => w.eq_ignore_ascii_case(b"true"),
            Some(Token::Literal(l)) => {
                matches!(l.to_ascii_lowercase().as_str(), "true" | "t" | "on")
            }
            _ => false,
        };
        is_true && self.next() == Some(Token::Punct(b')'))
    }

    /// A setting's name: words and quoted identifiers joined by dots,
    /// lowercased (setting names are case-insensitive).
    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        loop {
            match self.next()? {
                Token::Word(w) => name.push_str(&String::from_utf8_lossy(w)),
                Token::Quoted(q) => name.push_str(&q),
                _ => return None,
            }
            let save = self.pos;
            if self.next() != Some(Token::Punct(b'.')) {
                self.pos = save;
                return Some(name.to_lowercase());
            }
            name.push('.');
        }
    }

    /// The value between `quote`s at `pos` (doubled quotes are one; with
    /// `escapes`, a backslash escapes the next byte). An unterminated one
    /// runs to the end.
    fn quoted(&mut self, quote: u8, escapes: bool) -> String {
        let s = self.sql;
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        while i < s.len() {
            let c = s[i];
            if escapes && c == b'\\' && i + 1 < s.len() {
                out.push(s[i + 1]);
                i += 2;
            } else if c == quote && s.get(i + 1) == Some(&quote) {
                out.push(quote);
                i += 2;
            } else if c == quote {
                i += 1;
                break;
            } else {
                out.push(c);
                i += 1;
            }
        }
        self.pos = i;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn skip_block_comment(&mut self) {
        let s = self.sql;
        let mut depth = 0usize;
        let mut i = self.pos;
        while i + 1 < s.len() {
            if s[i] == b'/' && s[i + 1] == b'*' {
                depth += 1;
                i += 2;
            } else if s[i] == b'*' && s[i + 1] == b'/' {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.pos = i;
                    return;
                }
            } else {
                i += 1;
            }
        }
        self.pos = s.len();
    }

    /// Skips `$tag$ … $tag$` at `pos`; false if no dollar quote starts
    /// there (a parameter, `$1`).
    fn skip_dollar_quote(&mut self) -> bool {
        let rest = &self.sql[self.pos..];
        let Some(end) = rest[1..].iter().position(|&c| c == b'$') else {
            return false;
        };
        let tag = &rest[..end + 2];
        let inner = &tag[1..tag.len() - 1];
        // A tag is an identifier: no digit first (`$1` is a parameter).
        if !inner.iter().all(|&c| is_word_byte(c)) || inner.first().is_some_and(u8::is_ascii_digit)
        {
            return false;
        }
        let body = &rest[tag.len()..];
        self.pos += tag.len()
            + body
                .windows(tag.len())
                .position(|w| w == tag)
                .map_or(body.len(), |i| i + tag.len());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        custom_names(sql.as_bytes()).expect("readable")
    }

    #[test]
    fn set_and_reset_name_their_setting() {
        assert_eq!(names("SET app.user_id = 42"), ["app.user_id"]);
        assert_eq!(names("set session App.User TO 'x'"), ["app.user"]);
        assert_eq!(names(r#"SET "My"."Setting" = 1"#), ["my.setting"]);
        assert_eq!(
            names("RESET app.user_id; SET a.b = 1"),
            ["a.b", "app.user_id"]
        );
        assert_eq!(names("/* hi */ SET -- there\n x.y = 1"), ["x.y"]);
        // Real settings are read from pg_settings; SET LOCAL ends with its
        // transaction.
        assert!(names("SET statement_timeout = 5; RESET ALL").is_empty());
        assert!(names("SET LOCAL app.user_id = 42").is_empty());
        // Only at a statement's start.
        assert!(names("UPDATE t SET app.x = 1").is_empty());
    }

    #[test]
    fn set_config_with_a_literal_name_is_followed() {
        assert_eq!(
            names("SELECT set_config('app.user_id', $1, false)"),
            ["app.user_id"]
        );
        assert_eq!(
            names(
                "select SET_CONFIG ( E'app.o\\'k' , 'v', false), set_config('statement_timeout', '1', false)"
            ),
            ["app.o'k"]
        );
        // Only for the transaction: nothing to follow.
        assert!(names("SELECT set_config('request.jwt', $1, true)").is_empty());
        assert!(names("SELECT set_config('a.b', f(g($1), 2), 'true')").is_empty());
        assert_eq!(
            names("SELECT set_config('a.b', f(g($1), 2), $2)"),
            ["a.b"],
            "is_local not known"
        );
        assert_eq!(names("SELECT set_config('a.b', 'v', true OR x)"), ["a.b"]);
        // Texts that merely mention it.
        assert!(names("SELECT 'set_config(x)' AS set_config").is_empty());
        assert!(names("CREATE FUNCTION f() RETURNS void AS $$ SELECT set_config(n, v, false) $$ LANGUAGE sql").is_empty());
        assert!(names("CREATE FUNCTION f() RETURNS void AS $body$ SELECT set_config($1, 'v', false) $body$ LANGUAGE sql").is_empty());
    }

    #[test]
    fn a_computed_name_cannot_be_followed() {
        for sql in [
            "SELECT set_config($1, $2, false)",
            "SELECT set_config('app.' || $1, 'v', false)",
            "SELECT set_config(name, 'v', false) FROM t",
            "SELECT set_config(",
            // A DO block runs a body this reading does not look into.
            "DO $$BEGIN PERFORM set_config('app.user_id', '7', false); END$$",
            "do 'BEGIN SET app.x = 1; END'",
        ] {
            assert_eq!(custom_names(sql.as_bytes()), Err(Unreadable), "{sql}");
        }
    }

    #[test]
    fn odd_input_ends_cleanly() {
        for sql in [
            "SET",
            "SET \"unterminated",
            "SET a.",
            "'",
            "E'\\",
            "$a",
            "$$",
            "/*",
            "SET a.b = $$x",
        ] {
            let _ = custom_names(sql.as_bytes());
        }
        assert_eq!(names("SET a.b = $$x"), ["a.b"]);
        // Dollar tags may hold digits after their first character.
        assert_eq!(names("SELECT $f1$ it's $f1$; SET app.x = 1"), ["app.x"]);
    }
}

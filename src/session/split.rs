//! Where the statements of a SQL text begin and end, as PostgreSQL's
//! lexer reads them: `;` outside comments, quotes and dollar quotes. Used
//! by [`super::pinning`], which errs on the side of reading too much.

use crate::lexical::is_word_byte;

/// The statements of a text, as byte ranges: those between the `;`s
/// outside comments, quotes and dollar quotes (a `;` in a comment must not
/// hide the statement after it; an unterminated quote or comment runs to
/// the end), and, where the server could read the text otherwise (a
/// string with backslashes, a dollar quote), what follows each `;` inside
/// up to the next `;` too: a statement read twice, or one that isn't, only
/// errs on the side of pinning. (Each byte is in at most two ranges: a
/// text of many `;`s costs no more per byte.)
pub(super) fn statements(sql: &str) -> Vec<(usize, usize)> {
    let b = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    let mut hidden = Vec::new(); // `;`s inside something
    while i < b.len() {
        let rest = &b[i..];
        let len = match b[i] {
            b';' => {
                out.push((start, i));
                start = i + 1;
                1
            }
            b'-' if rest.starts_with(b"--") => comment_len(rest),
            b'/' if rest.starts_with(b"/*") => rest.len() - after_comment(&sql[i..]).len(),
            b'\'' | b'"' => quoted_len(rest, b'\'' == b[i] && is_escape_prefix(&b[..i])),
            b'$' if i == 0 || !is_identifier_byte(b[i - 1]) => dollar_quoted_len(rest),
            _ => 1,
        };
        // Where the server could read it otherwise: backslashes in a
        // string, or a dollar quote (a comment, or a plain string, it reads
        // alike; pinning on every `'a; prepare b'` would cost pooling).
        let doubtful = match b[i] {
            b'\'' => memchr::memchr(b'\\', &rest[..len]).is_some(),
            b'$' => len > 1,
            _ => false,
        };
        if doubtful {
            hidden.extend(memchr::memchr_iter(b';', &rest[..len]).map(|p| i + p));
        }
        i += len;
    }
    out.push((start, b.len()));
    out.extend(hidden.into_iter().map(|p| {
        let next = memchr::memchr(b';', &b[p + 1..]).map_or(b.len(), |q| p + 1 + q);
        (p + 1, next)
    }));
    out
}

/// A `--` comment's length: to the end of its line (`\n` or `\r`).
fn comment_len(c: &[u8]) -> usize {
    c.iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .unwrap_or(c.len())
}

/// `before` ends in a lone `E` (or `e`): the quote after it starts an
/// escape string. (`name'…'` or `time'…'` start a standard one.)
fn is_escape_prefix(before: &[u8]) -> bool {
    match before {
        [.., p, e] => *e | 0x20 == b'e' && !is_identifier_byte(*p),
        [e] => *e | 0x20 == b'e',
        [] => false,
    }
}

/// A byte that continues an identifier in PostgreSQL (`$` and every byte
/// of a non-ASCII character included).
fn is_identifier_byte(c: u8) -> bool {
    is_word_byte(c) || c == b'$' || c >= 0x80
}

/// Length of the quoted text `q` starts with, its quotes included; in an
/// `E'…'` string a backslash escapes the next byte. (A doubled quote reads
/// as two quoted texts in a row: the same split.)
fn quoted_len(q: &[u8], escapes: bool) -> usize {
    let mut i = 1;
    while i < q.len() {
        match q[i] {
            b'\\' if escapes && q[0] == b'\'' => i += 2,
            c if c == q[0] => return i + 1,
            _ => i += 1,
        }
    }
    q.len()
}

/// Length of the dollar-quoted text `d` starts with (`$tag$ … $tag$`), or
/// 1 if `d` starts no dollar quote (`$1`, a lone `$`).
fn dollar_quoted_len(d: &[u8]) -> usize {
    let Some(close) = d[1..].iter().position(|&c| c == b'$') else {
        return 1;
    };
    let tag = &d[..close + 2];
    let valid = tag[1..tag.len() - 1]
        .iter()
        .all(|&c| is_word_byte(c) || c >= 0x80)
        && !tag.get(1).is_some_and(u8::is_ascii_digit);
    if !valid {
        return 1;
    }
    match d[tag.len()..].windows(tag.len()).position(|w| w == tag) {
        Some(p) => tag.len() + p + tag.len(),
        None => d.len(),
    }
}

/// What follows the block comment `s` starts with; comments nest, as in
/// PostgreSQL (`/* /* */ SET x */` is all comment).
pub(super) fn after_comment(s: &str) -> &str {
    let (mut depth, mut i) = (0usize, 0);
    let b = s.as_bytes();
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &s[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main split, as PostgreSQL's lexer splits (a lone `E` starts an
    /// escape string; `--` ends at `\r` too; `$` continues an identifier),
    /// then what follows a `;` inside a dollar quote.
    #[test]
    fn statements_split_where_postgresql_does() {
        let split = |sql: &str| -> Vec<String> {
            statements(sql)
                .iter()
                .map(|&(a, b)| sql[a..b].trim().to_owned())
                .collect()
        };
        assert_eq!(
            split("SELECT name'\\'; SET x = 1; SELECT E'\\';'"),
            // (and what follows the `;` inside the escape string: `'`)
            ["SELECT name'\\'", "SET x = 1", "SELECT E'\\';'", "'"]
        );
        assert_eq!(
            split("SELECT 1 --c\r; SET x = 1"),
            ["SELECT 1 --c", "SET x = 1"]
        );
        assert_eq!(
            split("SELECT 1 AS x$$a$; SET x = 1; SELECT 2 AS y$$a$"),
            ["SELECT 1 AS x$$a$", "SET x = 1", "SELECT 2 AS y$$a$"]
        );
        assert_eq!(
            split("SELECT $q$;$q$; /* ; */ LISTEN c"),
            ["SELECT $q$;$q$", "/* ; */ LISTEN c", "$q$"]
        );
    }
}

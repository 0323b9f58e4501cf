//! Cheap lexical checks on the raw text, before (or instead of) a parse.
//!
//! Why a text without these things cannot be refused by the walker:
//! - a qualified name needs a `.` (in an identifier chain, `OPERATOR(s.op)`
//!   or a string such as `'s.t'`) — or an escape that produces one inside a
//!   string: `E'\056'` needs `\`, `U&'!002E' UESCAPE '!'` needs `U&`;
//! - a quoted identifier (`"Tenant_B"`) needs `"`;
//! - every function, relation and type name the walker acts on is listed in
//!   `rules` and matched here as a whole word (and every `pg_` word counts),
//!   so a text mentioning none of them calls none of them;
//! - statements other than plain DML/transaction control are excluded by the
//!   first word, and a second statement by refusing any inner `;`.
//!
//! Words are split on every byte that is not `[A-Za-z0-9_]`, which cuts
//! text into at least as many words as the server's lexer would (comments
//! and strings included), so a dangerous name cannot hide inside a token.

use super::rules;
use crate::keyword::{contains, keyword_set, pack};

/// First words of statements that are plain DML, SELECT, SHOW or
/// transaction control.
const PLAIN_FIRST_WORDS: [u128; 17] = keyword_set(&[
    "abort",
    "begin",
    "commit",
    "delete",
    "end",
    "insert",
    "merge",
    "release",
    "rollback",
    "savepoint",
    "select",
    "show",
    "start",
    "table",
    "update",
    "values",
    "with",
]);

/// Every other word that can start a statement.
const OTHER_FIRST_WORDS: [u128; 36] = keyword_set(&[
    "alter",
    "analyze",
    "analyse",
    "call",
    "checkpoint",
    "close",
    "cluster",
    "comment",
    "copy",
    "create",
    "deallocate",
    "declare",
    "discard",
    "do",
    "drop",
    "execute",
    "explain",
    "fetch",
    "grant",
    "import",
    "listen",
    "load",
    "lock",
    "move",
    "notify",
    "prepare",
    "reassign",
    "refresh",
    "reindex",
    "reset",
    "revoke",
    "security",
    "set",
    "truncate",
    "unlisten",
    "vacuum",
]);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lead {
    Plain,
    Other,
    Unknown,
}

struct Scan {
    /// `.`, `"`, `\`, NUL or `U&` somewhere.
    suspicious_char: bool,
    sensitive_word: bool,
    /// Classification of each statement's first word (the text's and the
    /// one after each `;`), worst first: Other > Unknown > Plain.
    lead: Lead,
    /// Something other than whitespace or `;` after a `;`.
    second_statement: bool,
}

/// `word`: packed by [`pack`].
fn classify(word: u128) -> Lead {
    if contains(&PLAIN_FIRST_WORDS, word) {
        Lead::Plain
    } else if contains(&OTHER_FIRST_WORDS, word) {
        Lead::Other
    } else {
        Lead::Unknown
    }
}

/// Whether a word the cheap filter let through names anything sensitive.
fn is_sensitive(word: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let len = word.len().min(buf.len());
    for (d, c) in buf.iter_mut().zip(&word[..len]) {
        *d = c.to_ascii_lowercase();
    }
    // ASCII only, so always valid UTF-8.
    rules::is_sensitive_word(std::str::from_utf8(&buf[..len]).unwrap_or("pg_"))
}

fn worse(a: Lead, b: Lead) -> Lead {
    match (a, b) {
        (Lead::Other, _) | (_, Lead::Other) => Lead::Other,
        (Lead::Unknown, _) | (_, Lead::Unknown) => Lead::Unknown,
        _ => Lead::Plain,
    }
}

/// What each byte is to the scanner.
const WORD: u8 = 1;
const SUSPICIOUS: u8 = 2;
const SEMICOLON: u8 = 3;
const SPACE: u8 = 4;
const PUNCT: u8 = 5;
static CLASS: [u8; 256] = {
    let mut t = [PUNCT; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() || c == b'_' {
            WORD
        } else if matches!(c, b'.' | b'"' | b'\\' | 0) {
            SUSPICIOUS
        } else if c == b';' {
            SEMICOLON
        } else if c.is_ascii_whitespace() {
            SPACE
        } else {
            PUNCT
        };
        b += 1;
    }
    t
};

/// Scans the text once; stops early when `stop_early` and the text already
/// cannot take the fast path.
fn scan(sql: &str, stop_early: bool) -> Scan {
    let b = sql.as_bytes();
    let mut s = Scan {
        suspicious_char: false,
        sensitive_word: false,
        lead: Lead::Plain,
        second_statement: false,
    };
    let mut expect_lead = true; // next word starts a statement
    let mut after_semicolon = false;
    // Whether the fast path is already lost (checked only where it can be).
    let lost = |s: &Scan| s.suspicious_char || s.sensitive_word || s.lead != Lead::Plain;
    let mut i = 0;
    while i < b.len() {
        match CLASS[b[i] as usize] {
            WORD => {
                let start = i;
                i += b[i..]
                    .iter()
                    .position(|&c| CLASS[c as usize] != WORD)
                    .unwrap_or(b.len() - i);
                // U&'...' / U&"...": unicode escapes can produce any character.
                if b.get(i) == Some(&b'&') && b[i - 1].eq_ignore_ascii_case(&b'u') {
                    s.suspicious_char = true;
                }
                let word = &b[start..i];
                let lead = expect_lead.then(|| classify(pack(word)));
                if let Some(lead) = lead {
                    s.lead = worse(s.lead, lead);
                    expect_lead = false;
                }
                // No plain first word (SELECT, UPDATE, …) names anything.
                if lead != Some(Lead::Plain) && rules::may_be_sensitive(word) && is_sensitive(word)
                {
                    s.sensitive_word = true;
                }
                s.second_statement |= after_semicolon;
                if stop_early && lost(&s) {
                    return s;
                }
            }
            SUSPICIOUS => {
                s.suspicious_char = true;
                if stop_early {
                    return s;
                }
                i += 1;
            }
            SEMICOLON => {
                expect_lead = true;
                after_semicolon = true;
                i += 1;
            }
            SPACE => i += 1,
            _ => {
                // Punctuation before any word: `(SELECT`, `/* */`, `--`.
                if expect_lead {
                    s.lead = worse(s.lead, Lead::Unknown);
                    expect_lead = false;
                    if stop_early {
                        return s;
                    }
                }
                s.second_statement |= after_semicolon;
                i += 1;
            }
        }
    }
    s
}

/// True when the text is plain DML with no qualified or quoted names, no
/// escapes and no sensitive words: the walker could not refuse it, so the
/// parse can be skipped.
pub(crate) fn trivially_safe(sql: &str) -> bool {
    let s = scan(sql, true);
    !s.suspicious_char && !s.sensitive_word && s.lead == Lead::Plain && !s.second_statement
}

/// For text that does not parse: true when forwarding it cannot reach
/// another schema even if the server's grammar accepts it (it may be an
/// older or newer PostgreSQL than pg_query's). Typos in plain statements
/// stay forwarded so the client sees the server's own syntax error.
pub(crate) fn inert_on_parse_failure(sql: &str) -> bool {
    let s = scan(sql, false);
    !s.suspicious_char && !s.sensitive_word && s.lead != Lead::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_accepts_plain_oltp() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
            "BEGIN",
            "commit;",
            "  select 1 ;  ",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert!(trivially_safe(sql), "{sql}");
        }
    }

    #[test]
    fn fast_path_rejects_anything_interesting() {
        for sql in [
            "SELECT * FROM tenant_b.t",
            "SELECT * FROM \"Tenant_B\"",
            "SELECT E'\\056'",
            "SELECT U&'!002E' UESCAPE '!'",
            "SELECT u&'x'",
            "SELECT pg_read_file('x')",
            "SELECT * FROM PG_STAT_ACTIVITY",
            "SELECT DBLINK_EXEC('x')",
            "SELECT 'tenant_b'::regnamespace",
            "SELECT to_regnamespace('tenant_b')",
            "SELECT set_config('search_path','tenant_b',false)",
            "SELECT 1; SET search_path = tenant_b",
            "SET search_path = tenant_b",
            "LISTEN x",
            "(SELECT 1)",
            "/* c */ SELECT 1",
            "SELECT 1.5",
            "SELECT ts_stat('x')",
        ] {
            assert!(!trivially_safe(sql), "{sql}");
        }
    }

    #[test]
    fn unparsable_text() {
        // Typos stay forwarded: the client sees the server's error.
        assert!(inert_on_parse_failure("SELEC 1"));
        assert!(inert_on_parse_failure("SELECT FROM WHERE"));
        // Anything that could name a schema or is not plain DML is not.
        assert!(!inert_on_parse_failure("SELEC * FROM tenant_b.t"));
        assert!(!inert_on_parse_failure("SET ROLE system_user"));
        assert!(!inert_on_parse_failure("SELECT 1; GRANT x"));
        assert!(!inert_on_parse_failure("SELEC pg_sleep(1)"));
    }
}

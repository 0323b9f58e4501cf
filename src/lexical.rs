//! One pass over a SQL text's words, for the two checks that run on every
//! statement: the firewall's fast path (`firewall::precheck`) and the
//! session-effect check of transaction pooling (`session::pinning`). Each
//! decides nearly every statement from these facts alone; the rest get a
//! full reading. One pass serves both, since walking the bytes is most of
//! what either costs.
//!
//! Words are split on every byte that is not `[A-Za-z0-9_]`, which cuts
//! text into at least as many words as the server's lexer would (comments
//! and strings included), so a name cannot hide inside a token. Keywords
//! match in any case.

use crate::firewall::rules;
use crate::keyword::{contains, keyword, keyword_set, pack};

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

/// First words of statements that can have an effect beyond the
/// transaction (see `session::pinning`).
pub(crate) const EFFECT_WORDS: [u128; 11] = keyword_set(&[
    "do",
    "explain",
    "set",
    "listen",
    "prepare",
    "load",
    "declare",
    "create",
    "discard",
    "deallocate",
    "reset",
]);
const SELECT: u128 = keyword("select");
const WITH: u128 = keyword("with");
const SET_CONFIG: u128 = keyword("set_config");
const SETSEED: u128 = keyword("setseed");
const PG_SETTINGS: u128 = keyword("pg_settings");
const INTO: u128 = keyword("into");

/// What kind of statement a first word starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Lead {
    /// Plain DML, SELECT, SHOW or transaction control.
    #[default]
    Plain,
    /// Any other statement.
    Other,
    /// Not a statement's first word (or not a word: `(SELECT`, `/* */`).
    Unknown,
}

/// What one pass over a text found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lexed {
    /// `.`, `"`, `\`, NUL or `U&` somewhere.
    pub suspicious_char: bool,
    /// A byte outside ASCII somewhere (complete when the firewall's fast
    /// path holds: reading may stop early otherwise).
    pub non_ascii: bool,
    /// A word the firewall's rules name (every `pg_` word, the functions
    /// and reg types in `firewall::rules`), first words of plain
    /// statements excepted.
    pub sensitive_word: bool,
    /// Classification of each statement's first word (the text's and the
    /// one after each `;`), worst first: Other > Unknown > Plain.
    pub lead: Lead,
    /// Something other than whitespace or `;` after a `;`.
    pub second_statement: bool,
    /// A statement starts with one of [`EFFECT_WORDS`].
    pub effect_word: bool,
    /// A statement starts with something other than a letter (a comment,
    /// a parenthesis): only a full reading knows its first word.
    pub odd_start: bool,
    /// `pg_advisory_lock…` or `pg_try_advisory_lock…` (session-level locks).
    pub advisory_lock: bool,
    /// `set_config`, or `pg_settings` (whose UPDATE rule calls it).
    pub set_config: bool,
    /// `setseed` (the server's random() sequence, which outlives the
    /// session: `DISCARD ALL` doesn't reset it).
    pub setseed: bool,
    /// `into` in a statement that starts with SELECT or WITH (which may
    /// then create a temporary table).
    pub into: bool,
    /// `U&'…'` or `U&"…"`: a name spelled in escapes (say, an advisory
    /// lock function's) that no word check reads.
    pub unicode_escape: bool,
}

impl Lexed {
    /// True when the text is plain DML with no qualified or quoted names,
    /// no escapes, no sensitive words and one statement: the firewall's
    /// walker could not refuse it, so the parse can be skipped (why that
    /// is sound: `firewall::precheck`).
    pub fn firewall_fast_path(&self) -> bool {
        !self.suspicious_char
            && !self.sensitive_word
            && self.lead == Lead::Plain
            && !self.second_statement
    }

    /// Whether a statement may act beyond its transaction (then only a
    /// full reading tells; see `session::pinning`).
    pub fn may_have_session_effect(&self) -> bool {
        self.effect_word
            || self.odd_start
            || self.advisory_lock
            || self.set_config
            || self.setseed
            || self.into
            || self.unicode_escape
    }
}

/// `word`: packed by [`pack`].
fn classify(word: u128) -> Lead {
    // SELECT first: most statements are.
    if word == SELECT || contains(&PLAIN_FIRST_WORDS, word) {
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

/// A byte of a word: the words this pass reads are maximal runs of these.
#[inline]
pub fn is_word_byte(c: u8) -> bool {
    CLASS[c as usize] == WORD
}

/// Reads the text once. `session_facts`: also look for what the
/// session-effect check needs (transaction mode), and read the whole
/// text. Without them, those fields stay false and reading stops as soon
/// as the text cannot take the firewall's fast path (a 2 KB query with a
/// qualified name near its start costs a few bytes, not the whole text):
/// then only [`Lexed::firewall_fast_path`]'s answer is complete.
pub fn scan(b: &[u8], session_facts: bool) -> Lexed {
    if session_facts {
        read::<true>(b)
    } else {
        read::<false>(b)
    }
}

fn read<const SESSION_FACTS: bool>(b: &[u8]) -> Lexed {
    let mut s = Lexed::default();
    let mut expect_lead = true; // next word starts a statement
    let mut after_semicolon = false;
    let mut selects = false; // this statement starts with SELECT or WITH
    let mut i = 0;
    // Words and spaces are nearly every byte: they come first, and a word
    // that is not a statement's first costs one table test of its first
    // three bytes. Every flag is set where it can change, and only there is
    // the early stop checked.
    while i < b.len() {
        let class = CLASS[b[i] as usize];
        if class == WORD {
            let start = i;
            i += 1;
            while i < b.len() && CLASS[b[i] as usize] == WORD {
                i += 1;
            }
            let word = &b[start..i];
            if expect_lead {
                expect_lead = false;
                // Whatever came between a `;` and this word set it already.
                s.second_statement |= after_semicolon;
                let k = pack(word);
                let lead = classify(k);
                s.lead = worse(s.lead, lead);
                if SESSION_FACTS {
                    s.effect_word |= contains(&EFFECT_WORDS, k);
                    s.odd_start |= !word[0].is_ascii_alphabetic();
                    selects = k == SELECT || k == WITH;
                }
                // No plain first word (SELECT, UPDATE, …) names anything.
                if lead != Lead::Plain && rules::may_be_sensitive(word) && is_sensitive(word) {
                    s.sensitive_word = true;
                }
                if !SESSION_FACTS && !s.firewall_fast_path() {
                    return s;
                }
                continue;
            }
            if rules::may_be_sensitive(word) && is_sensitive(word) {
                s.sensitive_word = true;
                if !SESSION_FACTS {
                    return s;
                }
            }
            if SESSION_FACTS {
                // Length first: most words fail on it.
                match (word[0] | 0x20, word.len()) {
                    (b'p', 11) => s.set_config |= pack(word) == PG_SETTINGS,
                    (b'p', 16..) => {
                        s.advisory_lock |= starts_ci(word, b"pg_advisory_lock")
                            || starts_ci(word, b"pg_try_advisory_lock")
                    }
                    (b's', 10) => s.set_config |= pack(word) == SET_CONFIG,
                    (b's', 7) => s.setseed |= pack(word) == SETSEED,
                    (b'i', 4) => s.into |= selects && pack(word) == INTO,
                    _ => {}
                }
            }
            continue;
        }
        if class == SPACE {
            i += 1;
            continue;
        }
        if class == SEMICOLON {
            expect_lead = true;
            after_semicolon = true;
            selects = false;
            i += 1;
            continue;
        }
        // Punctuation, suspicious and non-ASCII bytes.
        s.odd_start |= SESSION_FACTS && expect_lead;
        s.non_ascii |= !b[i].is_ascii();
        // U&'...' / U&"...": unicode escapes can produce any character.
        if class == SUSPICIOUS {
            s.suspicious_char = true;
        } else if b[i] == b'&' && i > 0 && b[i - 1] | 0x20 == b'u' {
            s.suspicious_char = true;
            s.unicode_escape |= SESSION_FACTS && matches!(b.get(i + 1), Some(b'\'' | b'"'));
        } else if expect_lead {
            // Punctuation before any word: `(SELECT`, `/* */`, `--`.
            s.lead = worse(s.lead, Lead::Unknown);
            expect_lead = false;
        }
        s.second_statement |= after_semicolon;
        i += 1;
        if !SESSION_FACTS && !s.firewall_fast_path() {
            return s;
        }
    }
    s
}

fn starts_ci(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(sql: &[u8]) -> Lexed {
        scan(sql, true)
    }

    #[test]
    fn one_pass_gathers_both_checks_facts() {
        let l = scan_all(b"SELECT 1; SET search_path = x");
        assert!(l.second_statement && l.effect_word && !l.odd_start);
        assert_eq!(l.lead, Lead::Other);
        assert!(!l.suspicious_char && !l.sensitive_word);

        let l = scan_all(b"(SELECT pg_advisory_lock(1))");
        assert!(l.odd_start && l.advisory_lock && l.sensitive_word);
        assert_eq!(l.lead, Lead::Unknown);

        let l = scan_all(b"select x INTO temp t from \"T\"");
        assert!(l.into && l.suspicious_char && !l.effect_word);
        assert_eq!(l.lead, Lead::Plain);

        // INTO counts only in a statement that starts with SELECT or WITH.
        assert!(!scan_all(b"INSERT INTO t VALUES (1)").into);
        assert!(!scan_all(b"select 1; insert into t values (1)").into);
        // Words end at every byte outside [A-Za-z0-9_].
        assert!(scan_all(b"SELECT \xc3\xa9pg_read_file('x')").sensitive_word);
        assert!(scan_all(b"SELECT '\xff'").non_ascii && !scan_all(b"SELECT 'x'").non_ascii);
        assert!(scan_all(b"SELECT menu&1").suspicious_char);
        assert!(!scan_all(b"SELECT menu&1").unicode_escape);
        let l = scan_all(b"SELECT U&\"pg\\005Fadvisory\\005Flock\"(1)");
        assert!(l.unicode_escape && l.may_have_session_effect());
        assert!(scan_all(b"SELECT 1 $$SET_CONFIG$$").set_config);
        assert!(scan_all(b"UPDATE PG_SETTINGS SET setting = 'x'").set_config);
        let l = scan_all(b"SELECT SetSeed(0.5)");
        assert!(l.setseed && l.may_have_session_effect() && !l.firewall_fast_path());
        assert!(!scan(b"SELECT setseed(0.5)", false).firewall_fast_path());
        assert_eq!(scan_all(b""), Lexed::default());
        // Without the session facts: the same fast-path verdict, reached
        // without reading past the first fact that rules it out.
        for sql in [
            &b"SELECT 1; SET x = 1"[..],
            b"(SELECT pg_sleep(1))",
            b"select \"T\".x",
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
        ] {
            let (all, fast) = (scan_all(sql), scan(sql, false));
            assert_eq!(all.firewall_fast_path(), fast.firewall_fast_path());
            assert!(!fast.may_have_session_effect());
        }
        let fast = scan(b"SELECT s.x FROM t; SELECT pg_sleep(1)", false);
        assert!(fast.suspicious_char && !fast.second_statement && !fast.sensitive_word);
    }
}

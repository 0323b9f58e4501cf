//! Named prepared statements in transaction mode.
//!
//! A client's statement "s1" may have to run on any server connection.
//! The proxy names it on the server after its text and parameter types
//! (`pgt_<hash>`), so clients that prepare the same query share one
//! server-side statement, and prepares it on demand wherever it is missing.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use lru::LruCache;

use super::pinning::Effect;

/// A client's named statement.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Its name on every server connection.
    pub server_name: Arc<str>,
    /// A complete Parse frame under `server_name`, to send where it's missing.
    pub parse: Bytes,
    /// What running it does to the session, noted at every Bind: only
    /// the Parse is read, and a statement may run many times after.
    pub effect: Effect,
    /// When the client's Parse made it, in the session's count (see
    /// `Upstream::keep_statement`).
    pub kept: u64,
    /// Its Parse was answered by the proxy alone (a bare prepare, see
    /// `Upstream::prepare_locally`) and no server has read it since: where
    /// PostgreSQL would have rejected it, the client has no such statement
    /// (see `Upstream::surely_has`).
    pub unproven: bool,
}

impl Statement {
    /// From the body of a client's Parse (name, query, parameter types).
    pub fn from_parse_body(body_after_name: &[u8]) -> Statement {
        // Fixed keys: the same text gets the same name on every connection
        // and every proxy replica.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(body_after_name);
        let server_name: Arc<str> = format!("pgt_{hash:016x}").into();
        let mut frame = BytesMut::with_capacity(body_after_name.len() + server_name.len() + 6);
        frame.put_u8(b'P');
        frame.put_i32((4 + server_name.len() + 1 + body_after_name.len()) as i32);
        frame.put_slice(server_name.as_bytes());
        frame.put_u8(0);
        frame.put_slice(body_after_name);
        Statement {
            server_name,
            parse: frame.freeze(),
            effect: Effect::default(),
            kept: 0,
            unproven: false,
        }
    }

    /// The Parse body after the statement name: what identifies the statement.
    pub fn body(&self) -> &[u8] {
        &self.parse[5 + self.server_name.len() + 1..]
    }
}

/// The client's statements by the names it gave them.
pub type ClientStatements = HashMap<String, Statement>;

/// The texts a connection's statement cache keeps, as a session's named
/// statements may hold (the texts stay alive with the cache).
const MAX_CACHED_BYTES: usize = 64 << 20;

/// Statements prepared on one server connection, least recently used first
/// out. The value is the statement's identifying body, compared on every
/// hit so that a hash collision can never run the wrong query, and the
/// number of its Parse while the server has yet to answer it (0 after).
pub struct StatementCache {
    /// Grows as statements come (a large capacity costs a connection
    /// nothing until used); `capacity` bounds it.
    lru: LruCache<Arc<str>, (Bytes, u64)>,
    /// Parses sent, counted: a statement parsed again before the answer
    /// to its first Parse is decided by the last one only.
    parses: u64,
    capacity: usize,
    /// The size of the texts in `lru`, at most [`MAX_CACHED_BYTES`] but
    /// for the newest: the cache outlives the sessions that filled it.
    bytes: usize,
    /// Statements the cache forgot may still be on the server: a
    /// DISCARD/DEALLOCATE that may have failed, or a Close the server
    /// skipped after an error. Each is then closed before it is prepared.
    unsure: bool,
    /// Transaction mode: the session whose Parse made the connection's
    /// unnamed statement (0: none). Another client's Bind of it would run
    /// that client's statement.
    pub unnamed_owner: u64,
}

impl Drop for StatementCache {
    fn drop(&mut self) {
        let n = self.lru.len();
        if n > 0 {
            metrics::gauge!("pgtenant_prepared_statements").decrement(n as f64);
        }
    }
}

pub enum Lookup {
    Present,
    /// Sent, its ParseComplete yet to come: the server may still fail it.
    Pending,
    Missing,
    /// Same name, different statement (a hash collision): close it first.
    Collision,
}

impl StatementCache {
    pub fn new(capacity: usize) -> StatementCache {
        StatementCache {
            lru: LruCache::unbounded(),
            capacity: capacity.max(1),
            bytes: 0,
            parses: 0,
            unsure: false,
            unnamed_owner: 0,
        }
    }

    pub fn lookup(&mut self, st: &Statement) -> Lookup {
        match self.lru.get(&st.server_name) {
            Some((body, 0)) if body[..] == *st.body() => Lookup::Present,
            Some((body, _)) if body[..] == *st.body() => Lookup::Pending,
            Some(_) => Lookup::Collision,
            None => Lookup::Missing,
        }
    }

    /// Records a statement as sent to be prepared; returns the number of
    /// that Parse, for [`Self::answered`]. Then [`Self::evict`] says which
    /// to close.
    pub fn insert(&mut self, st: &Statement) -> u64 {
        let before = self.lru.len();
        let body = st.parse.slice(5 + st.server_name.len() + 1..);
        self.bytes += body.len();
        self.parses += 1;
        if let Some((_, (old, _))) = self.lru.push(st.server_name.clone(), (body, self.parses)) {
            self.bytes -= old.len();
        }
        self.counted(before);
        self.parses
    }

    /// The server answered Parse number `sent` of `name`: prepared (`ok`),
    /// or failed or skipped. Unless another Parse of it was sent since:
    /// that one's answer decides.
    pub fn answered(&mut self, name: &str, sent: u64, ok: bool) {
        match self.lru.peek_mut(name) {
            Some((_, pending)) if *pending == sent && ok => *pending = 0,
            Some((_, pending)) if *pending == sent => self.forget(name),
            _ => {}
        }
    }

    /// The least recently used statement, taken out, while the cache holds
    /// more than its capacity or [`MAX_CACHED_BYTES`] (never the newest).
    pub fn evict(&mut self) -> Option<Arc<str>> {
        if self.lru.len() <= 1
            || (self.lru.len() <= self.capacity && self.bytes <= MAX_CACHED_BYTES)
        {
            return None;
        }
        let before = self.lru.len();
        let (name, (body, _)) = self.lru.pop_lru()?;
        self.bytes -= body.len();
        self.counted(before);
        Some(name)
    }

    pub fn forget(&mut self, name: &str) {
        let before = self.lru.len();
        if let Some((body, _)) = self.lru.pop(name) {
            self.bytes -= body.len();
        }
        self.counted(before);
    }

    /// After a DISCARD ALL that succeeded the server has none.
    pub fn clear(&mut self) {
        let before = self.lru.len();
        self.lru.clear();
        self.bytes = 0;
        self.unsure = false;
        self.counted(before);
    }

    /// A statement that drops them (DISCARD ALL, DEALLOCATE) was sent: the
    /// server has none, unless it failed.
    pub fn dropped_maybe(&mut self) {
        let before = self.lru.len();
        self.lru.clear();
        self.bytes = 0;
        self.unsure = true;
        self.counted(before);
    }

    /// `pgtenant_prepared_statements` counts the statements of every
    /// connection: each cache adds what it gained and takes off what it
    /// lost (all of it when its connection closes).
    fn counted(&self, before: usize) {
        let after = self.lru.len();
        if after != before {
            metrics::gauge!("pgtenant_prepared_statements").increment(after as f64 - before as f64);
        }
    }

    /// A Close of an evicted statement was skipped (an error before it).
    pub fn close_skipped(&mut self) {
        self.unsure = true;
    }

    pub fn unsure(&self) -> bool {
        self.unsure
    }

    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }
}

/// The statement a Query of `DEALLOCATE [PREPARE] name` deallocates, as
/// PostgreSQL reads its name (unquoted: lowercased); None for any other
/// text, `DEALLOCATE ALL` included. (Transaction mode answers it for the
/// client's own statements, which the server knows by other names.)
pub fn deallocated_name(sql: &[u8]) -> Option<String> {
    // Every Query comes here: most are ruled out by their first word.
    let start = sql.iter().position(|b| !b.is_ascii_whitespace())?;
    if !sql[start..].get(..10)?.eq_ignore_ascii_case(b"deallocate") {
        return None;
    }
    let sql = std::str::from_utf8(&sql[start..]).ok()?.trim_end();
    let sql = sql.strip_suffix(';').unwrap_or(sql).trim_end();
    let rest = strip_word(sql, "deallocate")?;
    let rest = strip_word(rest, "prepare").unwrap_or(rest);
    if let Some(quoted) = rest.strip_prefix('"') {
        let inner = quoted.strip_suffix('"')?;
        // Inner quotes come doubled; a lone one ends the name early.
        if inner.replace("\"\"", "").contains('"') || inner.is_empty() {
            return None;
        }
        return Some(inner.replace("\"\"", "\""));
    }
    let plain = rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    (plain && !rest.eq_ignore_ascii_case("all")).then(|| rest.to_ascii_lowercase())
}

/// `s` without its leading `word` (any case) and the whitespace after it.
fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(|c: char| c.is_ascii_whitespace()))
        .then(|| rest.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocate_names_are_read_as_postgresql_reads_them() {
        for (sql, name) in [
            ("DEALLOCATE _pg3_7", Some("_pg3_7")),
            ("  deallocate PREPARE S_12 ; ", Some("s_12")),
            ("deallocate \"stmtcache_Ab\"", Some("stmtcache_Ab")),
            ("DEALLOCATE \"a\"\"b\"", Some("a\"b")),
            ("DEALLOCATE ALL", None),
            ("DEALLOCATE PREPARE all", None),
            ("DEALLOCATE a, b", None),
            ("DEALLOCATE \"a\"b\"", None),
            ("DEALLOCATE", None),
            ("DEALLOCATEx", None),
            ("SELECT 1", None),
        ] {
            assert_eq!(deallocated_name(sql.as_bytes()).as_deref(), name, "{sql}");
        }
    }

    #[test]
    fn same_text_same_name_and_cache_evicts_lru() {
        let a = Statement::from_parse_body(b"SELECT 1\0\0\0");
        let a2 = Statement::from_parse_body(b"SELECT 1\0\0\0");
        let b = Statement::from_parse_body(b"SELECT 2\0\0\0");
        assert_eq!(a.server_name, a2.server_name);
        assert_ne!(a.server_name, b.server_name);
        assert_eq!(a.body(), b"SELECT 1\0\0\0");
        let mut c = StatementCache::new(1);
        assert!(matches!(c.lookup(&a), Lookup::Missing));
        c.insert(&a);
        assert_eq!(c.evict(), None);
        assert!(matches!(c.lookup(&a2), Lookup::Pending));
        c.answered(&a.server_name, 1, true);
        assert!(matches!(c.lookup(&a2), Lookup::Present));
        c.insert(&b);
        assert_eq!(c.evict().as_deref(), Some(&*a.server_name));
        assert_eq!(c.evict(), None);
        assert!(matches!(c.lookup(&a), Lookup::Missing));
    }

    /// A statement parsed again before the first Parse is answered (the
    /// proxy closes it in between): the last Parse's answer decides.
    #[test]
    fn only_the_last_parse_of_a_statement_decides() {
        let a = Statement::from_parse_body(b"SELECT 1\0\0\0");
        let mut c = StatementCache::new(8);
        let (first, second) = (c.insert(&a), c.insert(&a));
        c.answered(&a.server_name, first, false);
        assert!(matches!(c.lookup(&a), Lookup::Pending));
        c.answered(&a.server_name, second, true);
        assert!(matches!(c.lookup(&a), Lookup::Present));
        let (third, fourth) = (c.insert(&a), c.insert(&a));
        c.answered(&a.server_name, third, true);
        assert!(matches!(c.lookup(&a), Lookup::Pending));
        c.answered(&a.server_name, fourth, false);
        assert!(matches!(c.lookup(&a), Lookup::Missing));
    }

    /// The cache outlives the sessions that fill it: its texts are bounded
    /// in bytes too, the newest always kept.
    #[test]
    fn the_cache_keeps_at_most_its_bytes_of_text() {
        let text = |i: u8| {
            let mut body = vec![i; 20 << 20];
            body.extend_from_slice(b"\0\0\0");
            Statement::from_parse_body(&body)
        };
        let mut c = StatementCache::new(100);
        for i in 1..=3 {
            c.insert(&text(i));
            assert_eq!(c.evict(), None, "{i} × 20 MiB");
        }
        c.insert(&text(4));
        assert_eq!(c.evict().as_deref(), Some(&*text(1).server_name));
        assert_eq!(c.evict(), None);
        assert_eq!((c.len(), c.bytes), (3, 3 * ((20 << 20) + 3)));
        c.forget(&text(2).server_name);
        assert_eq!(c.bytes, 2 * ((20 << 20) + 3));
        let huge = Statement::from_parse_body(&[b'x'; 70 << 20]);
        c.insert(&huge);
        assert!(c.evict().is_some() && c.evict().is_some());
        assert_eq!(c.evict(), None, "the newest stays, however large");
        c.clear();
        assert_eq!(c.bytes, 0);
    }
}

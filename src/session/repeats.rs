//! Texts a session sent before, so that their repeats pass without being
//! read again.
//!
//! A verdict depends only on the text and the session's fixed policy, and
//! clients repeat themselves: drivers send the same unnamed Parse for every
//! execution, and an application's simple queries differ from one run to
//! the next only in their numbers (`… WHERE aid = 4711`). A few texts of
//! each kind are remembered, only once cleared and only without session
//! effects:
//! - Parse texts, matched exactly;
//! - Query texts that the firewall's lexical fast path cleared, matched up
//!   to the numbers that stand alone as words, signs included.
//!
//! Why the second is sound: a number that stands alone (a maximal run of
//! digits between bytes that are not `[A-Za-z0-9_]`) is a whole word to
//! [`crate::lexical`], and a word of digits is never a keyword, a sensitive
//! name or a statement's plain first word; a `-` is punctuation, which
//! counts only where a statement starts, and there a word of digits counts
//! the same. So two such texts get the same [`crate::lexical::Lexed`]
//! facts, from which the fast path and the session-effect check decide.
//!
//! A remembered text's verdict never changes within the session, so texts
//! are only ever replaced to make room, oldest first.
//!
//! A lookup first tries the text that came after the last match the time
//! before: applications run the same few statements in the same order (a
//! transaction's, or one statement in a loop), so a lookup usually costs
//! one comparison instead of up to [`TEXTS`].

use crate::lexical::is_word_byte;

/// Texts remembered per kind and session (a transaction of a few
/// statements fits), and their length at most: short OLTP statements are
/// what repeats, and every session holds what it remembers.
const TEXTS: usize = 8;
const MAX_PARSE: usize = 1024;
const MAX_QUERY: usize = 512;

#[derive(Default)]
pub struct Repeats {
    parses: Texts,
    queries: Texts,
}

impl Repeats {
    /// `rest` (of a Parse message) starts with a remembered text and the
    /// NUL that ends it.
    pub fn parse_seen(&mut self, rest: &[u8]) -> bool {
        self.parses
            .find(|p| rest.get(p.len()) == Some(&0) && rest.starts_with(p))
    }

    /// Remembers a cleared Parse text without session effects.
    pub fn parse_cleared(&mut self, sql: &[u8]) {
        if sql.len() <= MAX_PARSE {
            self.parses.insert(sql);
        }
    }

    /// `sql` is a remembered Query text but for its numbers. (A NUL in
    /// `sql` matches nothing: no remembered text holds one.)
    pub fn query_seen(&mut self, sql: &[u8]) -> bool {
        self.queries.find(|q| same_but_numbers(q, sql))
    }

    /// Remembers a Query text the lexical fast path cleared, with no
    /// session effect.
    pub fn query_cleared(&mut self, sql: &[u8]) {
        if sql.len() <= MAX_QUERY {
            self.queries.insert(sql);
        }
    }
}

/// Up to [`TEXTS`] texts.
#[derive(Default)]
struct Texts {
    texts: Vec<Vec<u8>>,
    /// The slot the next text replaces once all are taken.
    next: usize,
    /// The slot the last lookup matched.
    last: usize,
    /// For each slot, the slot that matched right after it last time.
    after: [u8; TEXTS],
}

impl Texts {
    /// Some remembered text `same` accepts: the predicted one first.
    fn find(&mut self, same: impl Fn(&[u8]) -> bool) -> bool {
        let n = self.texts.len();
        let guess = usize::from(self.after[self.last]);
        let found = if guess < n && same(&self.texts[guess]) {
            Some(guess)
        } else {
            (0..n).find(|&i| i != guess && same(&self.texts[i]))
        };
        let Some(i) = found else { return false };
        self.after[self.last] = i as u8;
        self.last = i;
        true
    }

    fn insert(&mut self, sql: &[u8]) {
        // Lookups rely on it (see `parse_seen`, `query_seen`).
        debug_assert!(!sql.contains(&0), "a text ends at its NUL");
        if sql.is_empty() {
            return;
        }
        if self.texts.len() < TEXTS {
            self.texts.push(sql.to_vec());
            return;
        }
        let slot = &mut self.texts[self.next];
        slot.clear();
        slot.extend_from_slice(sql);
        self.next = (self.next + 1) % TEXTS;
    }
}

/// `a` and `b` are the same text but for the numbers that stand alone as
/// words, each with or without a `-` right before it. Equal stretches are
/// skipped eight bytes at a time; only where they differ is a number
/// looked for.
pub fn same_but_numbers(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        let n = common_prefix(a, b);
        if n == a.len() && n == b.len() {
            return true;
        }
        // They differ at `n`: that must be inside a number in both, which
        // starts where the digits before `n` (equal in both) start, or at
        // the `-` before them.
        let mut start = n;
        while start > 0 && a[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if start > 0 && a[start - 1] == b'-' {
            start -= 1;
        }
        match (number_at(a, start), number_at(b, start)) {
            (Some(ea), Some(eb)) => (a, b) = (&a[ea..], &b[eb..]),
            _ => return false,
        }
    }
}

/// Where the number that stands alone at `s[at..]` ends: `-`, then digits
/// with no word byte right before them (a `-` is none) or after them.
/// (Plain index loops: ~10 % cheaper in callgrind than the iterator
/// adapters they replaced, and this runs for every number of every
/// repeated simple query.)
#[inline]
fn number_at(s: &[u8], at: usize) -> Option<usize> {
    let signed = s.get(at) == Some(&b'-');
    let first = at + usize::from(signed);
    let mut end = first;
    while end < s.len() && s[end].is_ascii_digit() {
        end += 1;
    }
    let alone_before = signed || at == 0 || !is_word_byte(s[at - 1]);
    let alone_after = end == s.len() || !is_word_byte(s[end]);
    (end > first && alone_before && alone_after).then_some(end)
}

/// How many bytes `a` and `b` start with in common.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= len {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < len && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexical::scan;

    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|c| c.is_ascii_digit()).count()
    }

    /// The definition: equal once every number that stands alone (a
    /// maximal run of digits with no word byte on either side, and the `-`
    /// right before it if there is one) is one token, read from left to right.
    fn reference(a: &[u8], b: &[u8]) -> bool {
        // A number becomes None: no byte of a text can stand for it.
        fn normalize(s: &[u8]) -> Vec<Option<u8>> {
            let mut out = Vec::new();
            let mut i = 0;
            while i < s.len() {
                let signed = s[i] == b'-';
                let first = i + usize::from(signed);
                let end = first + digits(&s[first..]);
                let alone = end > first
                    && (signed || i == 0 || !is_word_byte(s[i - 1]))
                    && s.get(end).is_none_or(|&c| !is_word_byte(c));
                if alone {
                    out.push(None);
                    i = end;
                } else {
                    // A run that does not stand alone is copied whole.
                    let stop = end.max(i + 1);
                    out.extend(s[i..stop].iter().copied().map(Some));
                    i = stop;
                }
            }
            out
        }
        normalize(a) == normalize(b)
    }

    #[test]
    fn numbers_that_stand_alone_may_differ_nothing_else() {
        let same = |a: &str, b: &str| {
            let got = same_but_numbers(a.as_bytes(), b.as_bytes());
            assert_eq!(got, reference(a.as_bytes(), b.as_bytes()), "{a:?} / {b:?}");
            got
        };
        assert!(same(
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12;"
        ));
        assert!(same(
            "UPDATE t SET x = x + -5 WHERE id IN (1,2)",
            "UPDATE t SET x = x + -50 WHERE id IN (31,2)"
        ));
        assert!(same("1", "22") && same("SELECT $1", "SELECT $2") && same("", ""));
        // Signs come and go with the numbers (pgbench's deltas).
        assert!(same(
            "SET x = x + -5 WHERE id = 1",
            "SET x = x + 4 WHERE id = 1"
        ));
        assert!(same("-1", "1") && same("x-1", "x-2") && !same("a-1", "a1"));
        assert!(!same("SELECT --1", "SELECT -1"));
        // Digits inside words are names.
        assert!(!same("SELECT * FROM t1", "SELECT * FROM t2"));
        assert!(!same("SELECT x_1 FROM t", "SELECT x_2 FROM t"));
        assert!(!same("SELECT 1e5", "SELECT 2e5"));
        assert!(!same("SELECT 1 FROM t", "SELECT 1 FROM u"));
        assert!(!same("SELECT 1", "SELECT 1 "));
        assert!(!same("SELECT 1", "SELECT x"));
        assert!(!same("SELECT 1.5", "SELECT 1x5"));
    }

    #[test]
    fn texts_alike_but_for_numbers_have_the_same_lexical_facts() {
        // Pseudo-random texts over every byte class, and the same texts
        // with each standalone number replaced (fixed seed: failures
        // reproduce).
        let alphabet = b"selctfromwhp_gadvisory   0123456789 \t\n;.\"\\&()$'=,+-\x00\xc3\xa9";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut differing = 0;
        for _ in 0..20_000 {
            let len = (rand() % 60) as usize;
            let a: Vec<u8> = (0..len)
                .map(|_| alphabet[(rand() % alphabet.len() as u64) as usize])
                .collect();
            // Each digit becomes another, or a run grows by one digit.
            let mut b = Vec::new();
            for (k, &c) in a.iter().enumerate() {
                // A sign appears or goes before a number.
                if c.is_ascii_digit() && a[..k].last().is_none_or(|d| !d.is_ascii_digit()) {
                    match (b.last() == Some(&b'-'), rand() % 3) {
                        (true, 0) => {
                            b.pop();
                        }
                        (false, 0) => b.push(b'-'),
                        _ => {}
                    }
                }
                if c.is_ascii_digit() {
                    b.push(b'0' + (rand() % 10) as u8);
                    if rand() % 4 == 0 && a.get(k + 1).is_none_or(|d| !d.is_ascii_digit()) {
                        b.push(b'7');
                    }
                } else {
                    b.push(c);
                }
            }
            // …and with one byte replaced by any other.
            if !a.is_empty() {
                let mut c = a.clone();
                let k = (rand() % a.len() as u64) as usize;
                c[k] = alphabet[(rand() % alphabet.len() as u64) as usize];
                let same = same_but_numbers(&a, &c);
                assert_eq!(same, reference(&a, &c), "{a:?} / {c:?}");
                if same {
                    assert_eq!(scan(&a, true), scan(&c, true), "{a:?} / {c:?}");
                }
            }
            let same = same_but_numbers(&a, &b);
            assert_eq!(same, reference(&a, &b), "{a:?} / {b:?}");
            if same {
                differing += usize::from(a != b);
                assert_eq!(scan(&a, true), scan(&b, true), "{a:?} / {b:?}");
                let (fa, fb) = (scan(&a, false), scan(&b, false));
                assert_eq!(fa.firewall_fast_path(), fb.firewall_fast_path());
            }
        }
        assert!(differing > 1_000, "only {differing} differing pairs");
    }

    #[test]
    fn a_few_texts_of_each_kind_are_kept() {
        let mut r = Repeats::default();
        assert!(!r.parse_seen(b""));
        r.parse_cleared(b"SELECT $1");
        r.parse_cleared(b"UPDATE t SET x = $1");
        // A Parse's text is followed by its NUL and the parameter types.
        assert!(r.parse_seen(b"SELECT $1\0\0\0") && r.parse_seen(b"UPDATE t SET x = $1\0"));
        assert!(!r.parse_seen(b"SELECT $2\0") && !r.query_seen(b"SELECT $1"));
        // The same start with more text before the NUL, or no NUL: another text.
        assert!(!r.parse_seen(b"SELECT $1; DROP TABLE t\0") && !r.parse_seen(b"SELECT $1"));
        for n in 0..=TEXTS {
            r.query_cleared(format!("SELECT {n} FROM t{n}").as_bytes());
        }
        assert!(r.query_seen(b"SELECT 99 FROM t8"));
        // A Query body with a NUL inside (malformed) is no repeat.
        assert!(!r.query_seen(b"SELECT 99 FROM t8\0DROP TABLE t8"));
        assert!(!r.query_seen(b"SELECT 99\0FROM t8"));
        // The oldest went to make room.
        assert!(!r.query_seen(b"SELECT 0 FROM t0"));
        assert!(r.query_seen(b"SELECT 1 FROM t1"));
        r.query_cleared(&[b'x'; MAX_QUERY + 1]);
        assert!(!r.query_seen(&[b'x'; MAX_QUERY + 1]));
    }

    #[test]
    fn lookups_follow_the_order_statements_come_in() {
        let mut t = Texts::default();
        for sql in ["BEGIN", "UPDATE a", "SELECT b", "END"] {
            t.insert(sql.as_bytes());
        }
        let tried = |t: &mut Texts, sql: &str| {
            let seen = std::cell::RefCell::new(Vec::new());
            let found = t.find(|q| {
                seen.borrow_mut()
                    .push(String::from_utf8(q.to_vec()).unwrap());
                q == sql.as_bytes()
            });
            (found, seen.into_inner())
        };
        // The first round learns the order…
        for sql in ["BEGIN", "UPDATE a", "SELECT b", "END"] {
            assert!(tried(&mut t, sql).0);
        }
        // …then each lookup is one comparison.
        for sql in ["BEGIN", "UPDATE a", "SELECT b", "END", "BEGIN"] {
            assert_eq!(tried(&mut t, sql), (true, vec![sql.to_string()]));
        }
        // So is a statement run in a loop, from its second run on.
        assert_eq!(tried(&mut t, "BEGIN").1.len(), 2);
        assert_eq!(tried(&mut t, "BEGIN").1, ["BEGIN"]);
        // Not there: every text once.
        assert_eq!(tried(&mut t, "VACUUM").1.len(), 4);
    }
}

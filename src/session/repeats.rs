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
    parses: Texts<Box<[u8]>>,
    queries: Texts<Template>,
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
        debug_assert!(!sql.contains(&0), "a text ends at its NUL");
        if sql.len() <= MAX_PARSE && !sql.is_empty() {
            self.parses.insert(sql.into());
        }
    }

    /// `sql` is a remembered Query text but for its numbers. (A NUL in
    /// `sql` matches nothing: no remembered text holds one.)
    pub fn query_seen(&mut self, sql: &[u8]) -> bool {
        self.queries.find(|q| q.matches(sql))
    }

    /// Remembers a Query text the lexical fast path cleared, with no
    /// session effect.
    pub fn query_cleared(&mut self, sql: &[u8]) {
        debug_assert!(!sql.contains(&0), "a text ends at its NUL");
        if sql.len() <= MAX_QUERY && !sql.is_empty() {
            self.queries.insert(Template::new(sql));
        }
    }
}

/// Up to [`TEXTS`] texts.
struct Texts<T> {
    texts: Vec<T>,
    /// The slot the next text replaces once all are taken.
    next: usize,
    /// The slot the last lookup matched.
    last: usize,
    /// For each slot, the slot that matched right after it last time.
    after: [u8; TEXTS],
}

impl<T> Default for Texts<T> {
    fn default() -> Self {
        Texts {
            texts: Vec::new(),
            next: 0,
            last: 0,
            after: [0; TEXTS],
        }
    }
}

impl<T> Texts<T> {
    /// Some remembered text `same` accepts: the predicted one first.
    fn find(&mut self, same: impl Fn(&T) -> bool) -> bool {
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

    /// A text is remembered once, when first seen: replacing a slot's
    /// allocation is no cost worth avoiding.
    fn insert(&mut self, text: T) {
        if self.texts.len() < TEXTS {
            self.texts.push(text);
            return;
        }
        self.texts[self.next] = text;
        self.next = (self.next + 1) % TEXTS;
    }
}

/// A remembered Query text with its standalone numbers located once, so
/// that a lookup compares the text between them and reads only the new
/// text's numbers (half the work of comparing two texts afresh, which
/// TPC-B's seven statements of two to four numbers each pay every time).
struct Template {
    text: Box<[u8]>,
    /// `text[start..end]` of each number that stands alone, `-` included.
    numbers: Box<[(u16, u16)]>,
}

impl Template {
    fn new(sql: &[u8]) -> Template {
        debug_assert!(sql.len() <= usize::from(u16::MAX));
        let mut numbers = Vec::new();
        let mut i = 0;
        while i < sql.len() {
            let c = sql[i];
            if c != b'-' && !c.is_ascii_digit() {
                i += 1;
                continue;
            }
            if let Some(end) = number_at(sql, i) {
                numbers.push((i as u16, end as u16));
                i = end;
                continue;
            }
            // Not alone: its digits are part of a word (`t1`, `1e5`), and
            // none of them starts a number.
            let mut end = i + usize::from(c == b'-');
            while end < sql.len() && sql[end].is_ascii_digit() {
                end += 1;
            }
            i = end.max(i + 1);
        }
        Template {
            text: sql.into(),
            numbers: numbers.into(),
        }
    }

    /// `b` is this text but for the numbers that stand alone as words,
    /// each with or without a `-` right before it.
    #[inline]
    fn matches(&self, b: &[u8]) -> bool {
        let a = &self.text[..];
        let (mut ia, mut ib) = (0, 0);
        for &(start, end) in &self.numbers[..] {
            let lit = &a[ia..usize::from(start)];
            if !starts_with(&b[ib..], lit) {
                return false;
            }
            ib += lit.len();
            // A `-` that ends the text before a signed number would be the
            // sign of an unsigned one in `b`: another reading of the text.
            if lit.last() == Some(&b'-') && b.get(ib) != Some(&b'-') {
                return false;
            }
            match number_at(b, ib) {
                Some(e) => ib = e,
                None => return false,
            }
            ia = usize::from(end);
        }
        b.len() - ib == a.len() - ia && starts_with(&b[ib..], &a[ia..])
    }
}

/// `a` and `b` are the same text but for the numbers that stand alone as
/// words (what a remembered Query text matches).
#[cfg(test)]
pub fn same_but_numbers(a: &[u8], b: &[u8]) -> bool {
    Template::new(a).matches(b)
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

/// `s` starts with `prefix`. Inline, in word-sized loads, the last one
/// overlapping the one before instead of a byte loop: the texts between
/// numbers are short, and a call to `memcmp` or a byte-by-byte tail costs
/// as much as the whole comparison.
#[inline]
fn starts_with(s: &[u8], prefix: &[u8]) -> bool {
    let n = prefix.len();
    if s.len() < n {
        return false;
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => s[0] == prefix[0] && s[n / 2] == prefix[n / 2] && s[n - 1] == prefix[n - 1],
        4..=7 => half(s, 0) == half(prefix, 0) && half(s, n - 4) == half(prefix, n - 4),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if word(s, i) != word(prefix, i) {
                    return false;
                }
                i += 8;
            }
            word(s, n - 8) == word(prefix, n - 8)
        }
    }
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
        // A `-` before a signed number is text, not the sign of another.
        assert!(same("x--5", "x--7") && !same("x--5", "x-7") && !same("x-7", "x--5"));
        assert!(same("5-3", "7-9") && !same("5-3", "5 3") && !same("5-3", "53"));
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
    fn prefixes_compare_at_every_length_and_position() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=text.len() {
            let prefix = &text[..n];
            assert!(starts_with(&text, prefix) && starts_with(prefix, prefix));
            assert!(
                n == 0 || !starts_with(&text[..n - 1], prefix),
                "shorter, {n}"
            );
            for k in 0..n {
                let mut other = text.clone();
                other[k] ^= 0x20;
                assert!(!starts_with(&other, prefix), "byte {k} of {n}");
            }
        }
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
        let mut t = Texts::<Box<[u8]>>::default();
        for sql in ["BEGIN", "UPDATE a", "SELECT b", "END"] {
            t.insert(sql.as_bytes().into());
        }
        let tried = |t: &mut Texts<Box<[u8]>>, sql: &str| {
            let seen = std::cell::RefCell::new(Vec::new());
            let found = t.find(|q| {
                seen.borrow_mut()
                    .push(String::from_utf8(q.to_vec()).unwrap());
                &q[..] == sql.as_bytes()
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

//! Case-insensitive keyword tests on raw SQL words, for the lexical checks
//! that run on every statement (firewall pre-check, session effects).
//!
//! A word of up to 16 bytes is packed into a `u128` with ASCII case folded,
//! so a keyword test is one integer comparison and a keyword list is a
//! binary search over integers, with no lower-cased copy of the word.

/// `word` packed with each byte's 0x20 bit set, or 0 when it is empty or
/// longer than 16 bytes (0 is no keyword). Setting 0x20 lower-cases ASCII
/// letters and maps no other byte of a word (letters, digits, `_`, `$`,
/// non-ASCII) onto a letter or a digit (`_` becomes DEL), so a word equals
/// a keyword's packing exactly when it is that keyword in any case.
#[inline]
pub fn pack(word: &[u8]) -> u128 {
    if word.is_empty() || word.len() > 16 {
        return 0;
    }
    let mut bytes = [0u8; 16];
    bytes[..word.len()].copy_from_slice(word);
    u128::from_le_bytes(bytes) | fold_mask(word.len())
}

/// 0x20 in each of the first `len` bytes.
#[inline]
const fn fold_mask(len: usize) -> u128 {
    let all = u128::from_le_bytes([0x20; 16]);
    if len >= 16 {
        all
    } else {
        all & ((1u128 << (len * 8)) - 1)
    }
}

/// A lower-case keyword (letters, digits, `_`; at most 16 bytes), packed
/// at compile time.
pub const fn keyword(k: &str) -> u128 {
    let b = k.as_bytes();
    assert!(
        !b.is_empty() && b.len() <= 16,
        "keywords have 1 to 16 bytes"
    );
    let mut v = 0u128;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        assert!(
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_',
            "keywords are lower-case words"
        );
        v |= ((b[i] | 0x20) as u128) << (i * 8);
        i += 1;
    }
    v
}

/// A keyword list, packed and sorted at compile time for [`contains`].
pub const fn keyword_set<const N: usize>(words: &[&str; N]) -> [u128; N] {
    let mut set = [0u128; N];
    let mut i = 0;
    while i < N {
        set[i] = keyword(words[i]);
        // Insertion sort: the lists are short.
        let mut j = i;
        while j > 0 && set[j - 1] > set[j] {
            let t = set[j - 1];
            set[j - 1] = set[j];
            set[j] = t;
            j -= 1;
        }
        i += 1;
    }
    set
}

/// Whether `packed` (from [`pack`]) is in `set` (from [`keyword_set`]).
#[inline]
pub fn contains(set: &[u128], packed: u128) -> bool {
    packed != 0 && set.binary_search(&packed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_in_any_case_and_nothing_else() {
        assert_eq!(pack(b"SELECT"), keyword("select"));
        assert_eq!(pack(b"sElEcT"), keyword("select"));
        assert_ne!(pack(b"selects"), keyword("select"));
        assert_ne!(pack(b"selec"), keyword("select"));
        assert_eq!(pack(b"set_config"), keyword("set_config"));
        assert_eq!(pack(b"SET_CONFIG"), keyword("set_config"));
        // Word bytes that are not letters never fold onto letters.
        assert_ne!(pack(b"s$t"), keyword("sdt"));
        assert_eq!(pack(b"SE_T"), keyword("se_t"));
        assert_ne!(pack(b"SE1T"), keyword("se_t"));
        assert_ne!(pack(b"s\xc5t"), keyword("set"));
        assert_eq!(pack(b""), 0);
        assert_eq!(pack(&[b'a'; 17]), 0);
        assert_eq!(pack(&[b'A'; 16]), keyword("aaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn sets_are_sorted_and_searchable() {
        const SET: [u128; 4] = keyword_set(&["with", "begin", "select", "deallocate"]);
        assert!(SET.windows(2).all(|w| w[0] < w[1]));
        for w in ["WITH", "Begin", "select", "DEALLOCATE"] {
            assert!(contains(&SET, pack(w.as_bytes())), "{w}");
        }
        for w in ["", "withx", "beg", "insert"] {
            assert!(!contains(&SET, pack(w.as_bytes())), "{w}");
        }
    }
}

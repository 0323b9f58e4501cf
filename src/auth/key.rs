//! API keys: `pgt_` + 43 base62 characters (256 bits of randomness).
//! Only SHA-256 of the whole key is ever stored or compared.

use sha2::{Digest, Sha256};

pub const PREFIX: &str = "pgt_";
const BODY_LEN: usize = 43;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a key: what the registry stores (hex) and the cache keys on.
pub type KeyHash = [u8; 32];

pub fn generate() -> String {
    let mut key = String::with_capacity(PREFIX.len() + BODY_LEN);
    key.push_str(PREFIX);
    for _ in 0..BODY_LEN {
        key.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    key
}

/// Cheap shape check so that garbage never costs a registry round trip.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .is_some_and(|b| b.len() == BODY_LEN && b.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// Whether a key (of the right shape) appears anywhere in `text`: in a
/// setting's value, it would be passed on to the server.
pub fn appears_in(text: &str) -> bool {
    prefixes(text).any(|i| {
        let body = &text.as_bytes()[i + PREFIX.len()..];
        body.len() >= BODY_LEN && body[..BODY_LEN].iter().all(u8::is_ascii_alphanumeric)
    })
}

/// Where [`PREFIX`] starts in `text`. Every login's settings are searched
/// so; a search by its first byte costs less than `str::contains`, which
/// first builds a searcher for the whole pattern.
pub fn prefixes(text: &str) -> impl Iterator<Item = usize> + '_ {
    let t = text.as_bytes();
    memchr::memchr_iter(PREFIX.as_bytes()[0], t)
        .filter(move |&i| t[i..].starts_with(PREFIX.as_bytes()))
}

pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hash_hex(key: &str) -> String {
    hex::encode(hash(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_wherever_it_is_pasted() {
        let key = generate();
        assert!(appears_in(&key));
        assert!(appears_in(&format!("ppgt_pp {key}x")));
        assert!(!appears_in(&key[..key.len() - 1]));
        assert!(!appears_in("pgt_ pgt pg"));
        assert_eq!(prefixes("pgt_ppgt_pgt").collect::<Vec<_>>(), [0, 5]);
        assert_eq!(prefixes("épgt_").collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        assert_eq!(hash_hex(&a).len(), 64);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for k in [
            "",
            "pgt_",
            "abc",
            "pgt_short",
            &format!("pgt_{}", "!".repeat(43)),
        ] {
            assert!(!is_well_formed(k), "{k}");
        }
    }
}

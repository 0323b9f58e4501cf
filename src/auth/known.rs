//! Keys that logged in since the proxy started, by hash: they skip the
//! failed-login throttle (and are still looked up), so that a source's
//! failures (a stale key retried in a loop, anyone behind the same NAT or
//! load balancer) never lock out its valid keys. The key cache can't
//! serve for this: its entries live `registry.cache_ttl_ms` (a second by
//! default) and a resync empties it.
//!
//! Nobody can name a hash here without the key, so this gives a guesser
//! nothing. A hash goes when its lookup fails (a revoked or expired key:
//! throttled again from then on). Memory is bounded: past
//! [`MAX_KNOWN`] the set starts over, and keys become known again at
//! their next login.

use std::collections::HashSet;
use std::sync::Mutex;

use super::key::KeyHash;

pub const MAX_KNOWN: usize = 100_000;

#[derive(Default)]
pub struct KnownKeys {
    hashes: Mutex<HashSet<KeyHash>>,
}

impl KnownKeys {
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.hashes.lock().expect("poisoned").contains(hash)
    }

    pub fn add(&self, hash: KeyHash) {
        let mut hashes = self.hashes.lock().expect("poisoned");
        if hashes.len() >= MAX_KNOWN && !hashes.contains(&hash) {
            hashes.clear();
        }
        hashes.insert(hash);
    }

    pub fn remove(&self, hash: &KeyHash) {
        self.hashes.lock().expect("poisoned").remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_bounded_and_forgotten_on_failure() {
        let known = KnownKeys::default();
        let hash = |n: u32| {
            let mut h: KeyHash = [0; 32];
            h[..4].copy_from_slice(&n.to_le_bytes());
            h
        };
        for n in 0..MAX_KNOWN as u32 {
            known.add(hash(n));
        }
        known.add(hash(0)); // already there: nothing forgotten
        assert!(known.contains(&hash(1)));
        known.add(hash(u32::MAX));
        assert!(!known.contains(&hash(1)) && known.contains(&hash(u32::MAX)));
        known.remove(&hash(u32::MAX));
        assert!(!known.contains(&hash(u32::MAX)));
    }
}

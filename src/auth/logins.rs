//! Connections still logging in, counted per source address and capped
//! (`auth.max_logins_per_source`).
//!
//! A client slot is taken at accept, and a connection may keep it through
//! its whole login (up to `login_timeout_ms`) without ever proving
//! anything. Without a cap, one address opening connections that never
//! finish their login could hold every slot, the overflow ones for
//! cancels and the admin console included, and lock out every tenant.
//! Sources are grouped as the failed-login throttle groups them (an IPv6
//! address by its /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::throttle::source;

#[derive(Default)]
pub struct Logins {
    by_source: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place among its source's logins, given back on drop.
pub struct LoginPlace<'a> {
    /// None: uncounted (no cap configured).
    held: Option<(&'a Logins, IpAddr)>,
}

impl Logins {
    /// A place for a login from `ip`, or None if `cap` logins from its
    /// source are under way (`cap` 0: no limit).
    pub fn start(&self, ip: IpAddr, cap: u32) -> Option<LoginPlace<'_>> {
        if cap == 0 {
            return Some(LoginPlace { held: None });
        }
        let source = source(ip);
        let mut map = self.by_source.lock().expect("poisoned");
        let n = map.entry(source).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(LoginPlace {
            held: Some((self, source)),
        })
    }

    #[cfg(test)]
    fn under_way(&self, ip: IpAddr) -> u32 {
        let map = self.by_source.lock().expect("poisoned");
        map.get(&source(ip)).copied().unwrap_or(0)
    }
}

impl Drop for LoginPlace<'_> {
    fn drop(&mut self) {
        let Some((logins, source)) = self.held.take() else {
            return;
        };
        let mut map = logins.by_source.lock().expect("poisoned");
        if let Some(n) = map.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_cap_and_the_others_are_unaffected() {
        let logins = Logins::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = logins.start(a, 2).unwrap();
        let _second = logins.start(a_mapped, 2).unwrap();
        assert!(logins.start(a, 2).is_none(), "the cap counts both forms");
        let _other = logins.start(b, 2).expect("another source has its own");
        drop(first);
        assert!(
            logins.start(a, 2).is_some(),
            "a finished login frees its place"
        );
        assert_eq!(logins.under_way(a), 1);
    }

    #[test]
    fn an_ipv6_network_shares_one_count_and_zero_means_no_cap() {
        let logins = Logins::default();
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _p = logins.start(x, 1).unwrap();
        assert!(logins.start(y, 1).is_none(), "same /64");
        let unlimited: Vec<_> = (0..1000).map(|_| logins.start(x, 0).unwrap()).collect();
        assert_eq!(unlimited.len(), 1000);
        assert_eq!(logins.under_way(x), 1, "uncapped places are not counted");
    }
}

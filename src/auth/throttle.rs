//! Failed-login throttling per source: a token bucket of
//! `auth.failed_login_burst` tokens refilled at `auth.failed_login_rate_per_sec`.
//! Each failed login (a wrong key) costs a token; a source with an empty
//! bucket gets the same 28P01 as a wrong key, after `auth.throttle_delay_ms`,
//! without its key being looked up — so guessing is slow and costs the
//! registry nothing. Successful logins cost no token.
//!
//! The token is taken *before* the lookup and given back if the key turns
//! out valid: otherwise a hundred concurrent guesses would all pass a
//! check that only a recorded failure closes. So that a client pool
//! opening many valid connections at once is not mistaken for a guesser,
//! an attempt that finds the tokens all reserved by lookups in flight
//! waits for them to settle instead of being refused: valid logins beyond
//! the burst are delayed by a lookup at most, never refused.
//!
//! IPv6 sources are bucketed by /64, which one host usually has whole.
//! Memory is bounded: at most [`MAX_SOURCES`] buckets; when full, buckets
//! that refilled are dropped, and if none did, new sources share one
//! overflow bucket (a flood from many addresses is still throttled).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::AuthConfig;
use crate::context::Context;
use crate::error::ClientError;

pub const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Tokens reserved by lookups in flight.
    inflight: u32,
    at: Instant,
}

impl Bucket {
    /// Tokens now, refilled since the last look.
    fn refill(&mut self, now: Instant, p: &Params) {
        let earned = now.duration_since(self.at).as_secs_f64() * p.rate;
        self.tokens = (self.tokens + earned).min(p.burst);
        self.at = now;
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    burst: f64,
    rate: f64,
}

impl From<&AuthConfig> for Params {
    fn from(c: &AuthConfig) -> Self {
        Params {
            burst: f64::from(c.failed_login_burst),
            rate: c.failed_login_rate_per_sec,
        }
    }
}

/// What a source may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A token is reserved, in the bucket at `Place`: look the key up,
    /// then [`Throttle::settle`] there.
    Go(Place),
    /// Every token is reserved by lookups in flight: wait for one to settle.
    Wait,
    /// No token: refuse without a lookup.
    Refuse,
}

/// Where an admitted attempt took its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Its source's bucket (kept by sweeps while a lookup is in flight).
    Source,
    /// The bucket shared by sources beyond the map's capacity.
    Overflow,
}

struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
    swept: Option<Instant>,
}

pub struct Throttle {
    inner: Mutex<Buckets>,
    cap: usize,
    /// Signalled whenever a lookup settles, for attempts that `Wait`.
    settled: Notify,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::with_capacity(MAX_SOURCES)
    }
}

/// The bucket key: the address, or an IPv6 address's /64.
pub(super) fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl Throttle {
    pub fn with_capacity(cap: usize) -> Throttle {
        Throttle {
            inner: Mutex::new(Buckets {
                map: HashMap::new(),
                overflow: None,
                swept: None,
            }),
            cap,
            settled: Notify::new(),
        }
    }

    /// Reserves a token for an attempt from `ip`, if there is one.
    pub fn admit(&self, ip: IpAddr, cfg: &AuthConfig) -> Admission {
        self.with_bucket(ip, Params::from(cfg), |b, _, place| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                b.inflight += 1;
                Admission::Go(place)
            } else if b.inflight > 0 {
                Admission::Wait
            } else {
                Admission::Refuse
            }
        })
    }

    /// Ends an admitted attempt, in the bucket it was admitted from (not
    /// looked up afresh: a sweep meanwhile may have made room in the map
    /// for a source that took the overflow's token): a failed guess keeps
    /// its token, anything else gives it back.
    pub fn settle(&self, ip: IpAddr, cfg: &AuthConfig, failed: bool, place: Place) {
        let p = Params::from(cfg);
        {
            let mut guard = self.inner.lock().expect("poisoned");
            let b = &mut *guard;
            let bucket = match place {
                Place::Source => b.map.get_mut(&source(ip)),
                Place::Overflow => b.overflow.as_mut(),
            };
            if let Some(b) = bucket {
                b.refill(Instant::now(), &p);
                b.inflight = b.inflight.saturating_sub(1);
                if !failed {
                    b.tokens = (b.tokens + 1.0).min(p.burst);
                }
            }
        }
        self.settled.notify_waiters();
    }

    fn with_bucket<R>(
        &self,
        ip: IpAddr,
        p: Params,
        f: impl FnOnce(&mut Bucket, &Params, Place) -> R,
    ) -> R {
        let now = Instant::now();
        let key = source(ip);
        let mut guard = self.inner.lock().expect("poisoned");
        let b = &mut *guard;
        // The common case, a source seen before: one lookup.
        if let Some(bucket) = b.map.get_mut(&key) {
            bucket.refill(now, &p);
            return f(bucket, &p, Place::Source);
        }
        if b.map.len() >= self.cap {
            // Sweep at most once a second: a sweep walks the whole map.
            if b.swept
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                b.swept = Some(now);
                b.map.retain(|_, bucket| {
                    bucket.refill(now, &p);
                    bucket.tokens < p.burst || bucket.inflight > 0
                });
            }
        }
        let full = Bucket {
            tokens: p.burst,
            inflight: 0,
            at: now,
        };
        let (bucket, place) = if b.map.len() < self.cap {
            (b.map.entry(key).or_insert(full), Place::Source)
        } else {
            (b.overflow.get_or_insert(full), Place::Overflow)
        };
        bucket.refill(now, &p);
        f(bucket, &p, place)
    }

    /// Sources tracked now (tests, metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("poisoned").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An admitted attempt. Settled as a failed guess by [`Ticket::settle`]
/// with `true`; dropped unsettled (a timeout, a hang-up), its token is
/// given back.
pub struct Ticket<'a> {
    throttle: &'a Throttle,
    ip: IpAddr,
    cfg: AuthConfig,
    place: Place,
    settled: bool,
}

impl Ticket<'_> {
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.throttle.settle(self.ip, &self.cfg, failed, self.place);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(self.ip, &self.cfg, false, self.place);
        }
    }
}

/// Before a key is looked up: reserves the source's token, waiting for
/// lookups in flight if they hold them all; with none left, waits
/// `auth.throttle_delay_ms` and fails as a wrong key would.
pub async fn gate<'a>(ctx: &'a Context, peer: SocketAddr) -> Result<Ticket<'a>, ClientError> {
    let throttle = &ctx.throttle;
    let settled = throttle.settled.notified();
    tokio::pin!(settled);
    let mut registered = false;
    loop {
        let cfg = ctx.cfg().auth.clone();
        match throttle.admit(peer.ip(), &cfg) {
            Admission::Go(place) => {
                return Ok(Ticket {
                    throttle,
                    ip: peer.ip(),
                    cfg,
                    place,
                    settled: false,
                });
            }
            // Registered, then looked at again: a settle in between is not
            // missed. A source that need not wait never registers.
            Admission::Wait if !registered => {
                settled.as_mut().enable();
                registered = true;
            }
            Admission::Wait => {
                settled.as_mut().await;
                settled.set(throttle.settled.notified());
                registered = false;
            }
            Admission::Refuse => {
                metrics::counter!("pgtenant_logins_throttled_total").increment(1);
                ctx.timers
                    .sleep(Duration::from_millis(cfg.throttle_delay_ms))
                    .await;
                return Err(ClientError::InvalidKey);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(burst: u32, rate: f64) -> AuthConfig {
        AuthConfig {
            failed_login_burst: burst,
            failed_login_rate_per_sec: rate,
            ..AuthConfig::default()
        }
    }

    fn fail(t: &Throttle, ip: IpAddr, c: &AuthConfig) -> Admission {
        let a = t.admit(ip, c);
        if let Admission::Go(place) = a {
            t.settle(ip, c, true, place);
        }
        a
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let slow = cfg(3, 0.001);
        for _ in 0..3 {
            assert_eq!(fail(&t, ip, &slow), Admission::Go(Place::Source));
        }
        assert_eq!(t.admit(ip, &slow), Admission::Refuse, "burst spent");
        assert_eq!(
            fail(&t, other, &slow),
            Admission::Go(Place::Source),
            "other sources are not affected"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            t.admit(ip, &cfg(3, 1000.0)),
            Admission::Go(Place::Source),
            "refilled at 1000/s"
        );
    }

    #[test]
    fn valid_logins_cost_nothing_and_concurrent_ones_wait_instead_of_failing() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slow = cfg(2, 0.001);
        for _ in 0..10 {
            assert_eq!(t.admit(ip, &slow), Admission::Go(Place::Source));
            t.settle(ip, &slow, false, Place::Source);
        }
        // Two lookups in flight hold both tokens: a third waits…
        assert_eq!(t.admit(ip, &slow), Admission::Go(Place::Source));
        assert_eq!(t.admit(ip, &slow), Admission::Go(Place::Source));
        assert_eq!(t.admit(ip, &slow), Admission::Wait);
        // …and goes once one of them turns out valid.
        t.settle(ip, &slow, false, Place::Source);
        assert_eq!(t.admit(ip, &slow), Admission::Go(Place::Source));
        // Failed guesses keep their tokens: refused once nothing is in flight.
        t.settle(ip, &slow, true, Place::Source);
        assert_eq!(t.admit(ip, &slow), Admission::Wait);
        t.settle(ip, &slow, true, Place::Source);
        assert_eq!(t.admit(ip, &slow), Admission::Refuse);
    }

    #[test]
    fn ipv6_sources_are_bucketed_by_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(source(a), source(b));
        assert_ne!(source(a), source(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn memory_is_bounded_and_overflow_is_still_throttled() {
        let slow = cfg(2, 0.001);
        let t = Throttle::with_capacity(4);
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 1, i]);
            fail(&t, ip, &slow);
            fail(&t, ip, &slow);
        }
        assert_eq!(t.len(), 4);
        // Sources 4..9 shared the overflow bucket, which is empty now.
        assert_eq!(
            t.admit(IpAddr::from([10, 0, 2, 1]), &slow),
            Admission::Refuse
        );
        assert_eq!(
            t.admit(IpAddr::from([10, 0, 1, 0]), &slow),
            Admission::Refuse
        );
    }

    #[test]
    fn an_attempt_settles_where_it_took_its_token() {
        let c = cfg(5, 0.001);
        let t = Throttle::with_capacity(1);
        let (a, b) = (IpAddr::from([10, 0, 3, 1]), IpAddr::from([10, 0, 3, 2]));
        assert_eq!(t.admit(a, &c), Admission::Go(Place::Source));
        assert_eq!(t.admit(b, &c), Admission::Go(Place::Overflow));
        t.settle(a, &c, false, Place::Source);
        // A sweep while b's lookup runs makes room for b in the map: its
        // settle must still reach the overflow bucket.
        t.inner.lock().unwrap().swept = None;
        t.settle(b, &c, false, Place::Overflow);
        let buckets = t.inner.lock().unwrap();
        let overflow = buckets.overflow.as_ref().unwrap();
        assert_eq!(overflow.inflight, 0);
        assert_eq!(overflow.tokens.round(), 5.0);
    }
}

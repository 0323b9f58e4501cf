//! The sessions that are running now, so that the registry watcher, the
//! admin console and shutdown can find and end them.

// Keys the proxy numbers itself: foldhash (randomly seeded) costs a
// fraction of SipHash at every login and goodbye.
use foldhash::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::task::AtomicWaker;
use uuid::Uuid;

use crate::registry::Tenant;

/// How a session is to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    /// At once, even mid-transaction (the transaction is rolled back).
    Now,
    /// As soon as the client is idle outside a transaction.
    WhenIdle,
}

/// Shared between a session and whoever may end it. Only the session's own
/// task ever waits on it, which one `AtomicWaker` serves; the relay polls
/// it only after that waker fired (see [`super::wakes`]).
#[derive(Default)]
pub struct KillSwitch {
    /// One order of each kind: "now" given after "when idle" (shutdown
    /// after its timeout, a key revoked during the drain) must still end
    /// a session that stays in its transaction.
    when_idle: OnceLock<String>,
    now: OnceLock<String>,
    waker: AtomicWaker,
}

impl KillSwitch {
    /// Asks the session to end; the first order of each kind wins. `issued`
    /// counts orders for every relay: bumped after the order is set and
    /// before the wake-up, so a relay that sees it changed finds the order.
    fn kill(&self, mode: KillMode, reason: &str, issued: &AtomicU64) {
        let slot = match mode {
            KillMode::Now => &self.now,
            KillMode::WhenIdle => &self.when_idle,
        };
        if slot.set(reason.to_owned()).is_ok() {
            issued.fetch_add(1, Ordering::Release);
            self.waker.wake();
        }
    }

    /// Resolves once an order was given.
    pub fn killed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_order(cx, None))
    }

    /// The strongest order given: "now" over "when idle".
    pub fn order(&self) -> Option<(KillMode, &str)> {
        if let Some(reason) = self.now.get() {
            return Some((KillMode::Now, reason));
        }
        self.when_idle
            .get()
            .map(|r| (KillMode::WhenIdle, r.as_str()))
    }

    /// Why the session is to end (empty before any order).
    pub fn reason(&self) -> String {
        self.order().map_or_else(String::new, |(_, r)| r.to_owned())
    }

    /// An order stronger than `seen` (any, if None) was given.
    pub fn ordered_beyond(&self, seen: Option<KillMode>) -> bool {
        match seen {
            None => self.now.get().is_some() || self.when_idle.get().is_some(),
            Some(KillMode::WhenIdle) => self.now.get().is_some(),
            Some(KillMode::Now) => false,
        }
    }

    /// Ready once an order stronger than `seen` was given; else `cx`'s
    /// waker is woken by the next order.
    pub fn poll_order(&self, cx: &mut Context<'_>, seen: Option<KillMode>) -> Poll<()> {
        if !self.ordered_beyond(seen) {
            self.waker.register(cx.waker());
            // An order given between the check and the registration woke nobody.
            if !self.ordered_beyond(seen) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

/// What the rest of the proxy may know about a running session.
#[derive(Clone)]
pub struct SessionInfo {
    pub tenant: Arc<Tenant>,
    pub key_id: Uuid,
    pub user: String,
    pub peer: SocketAddr,
    pub started: Instant,
    pub kill: Arc<KillSwitch>,
}

#[derive(Default)]
pub struct LiveSessions {
    next: AtomicU64,
    map: Mutex<HashMap<u64, SessionInfo>>,
    /// Kill orders given so far, to all sessions. A relay polls its own
    /// switch only once this has changed: one line every session reads
    /// and that stays cached, instead of each session's switch, cold by
    /// its next wake-up under many sessions.
    issued: AtomicU64,
}

/// Removes the session from the live set when dropped.
pub struct Registration<'a> {
    live: &'a LiveSessions,
    id: u64,
}

impl Registration<'_> {
    /// The session's number, unique for the life of the process (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.live.map.lock().expect("poisoned").remove(&self.id);
    }
}

impl LiveSessions {
    pub fn register(&self, info: SessionInfo) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().expect("poisoned").insert(id, info);
        Registration { live: self, id }
    }

    /// Ends every session `which` selects; returns how many.
    pub fn kill_where(
        &self,
        which: impl Fn(&SessionInfo) -> bool,
        mode: KillMode,
        reason: &str,
    ) -> usize {
        let map = self.map.lock().expect("poisoned");
        let mut n = 0;
        for s in map.values().filter(|s| which(s)) {
            s.kill.kill(mode, reason, &self.issued);
            n += 1;
        }
        n
    }

    /// Kill orders given so far, to any session.
    #[inline]
    pub fn kills_issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    /// A snapshot, for the admin console and metrics.
    pub fn snapshot(&self) -> Vec<SessionInfo> {
        self.map
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_kill_now_after_a_kill_when_idle_still_counts() {
        let (k, issued) = (KillSwitch::default(), AtomicU64::new(0));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(k.poll_order(&mut cx, None).is_pending());
        k.kill(KillMode::WhenIdle, "draining", &issued);
        assert_eq!(k.order(), Some((KillMode::WhenIdle, "draining")));
        assert!(k.poll_order(&mut cx, None).is_ready());
        assert!(k.poll_order(&mut cx, Some(KillMode::WhenIdle)).is_pending());
        k.kill(KillMode::WhenIdle, "again", &issued);
        assert_eq!(
            issued.load(Ordering::Relaxed),
            1,
            "the first of a kind wins"
        );
        k.kill(KillMode::Now, "timed out", &issued);
        assert_eq!(k.order(), Some((KillMode::Now, "timed out")));
        assert!(k.poll_order(&mut cx, Some(KillMode::WhenIdle)).is_ready());
        assert!(k.poll_order(&mut cx, Some(KillMode::Now)).is_pending());
        assert_eq!(issued.load(Ordering::Relaxed), 2);
    }
}

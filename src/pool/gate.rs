//! What the admin console needs from a pool besides its connections: a
//! PAUSE gate that new checkouts wait at, and the clients waiting now
//! (how many, and since when) for `SHOW POOLS` and the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Paused {
    all: bool,
    tenants: BTreeSet<String>,
}

impl Paused {
    fn holds(&self, tenant: &str) -> bool {
        self.all || self.tenants.contains(tenant)
    }
}

/// `PAUSE [tenant]` / `RESUME [tenant]`. Checkouts wait here with no
/// deadline, as PgBouncer's clients do during PAUSE: `query_wait_timeout`
/// counts from RESUME on.
/// The flag answers the common question (is anything paused?) on every
/// checkout without a lock.
pub struct PauseGate(watch::Sender<Paused>, AtomicBool);

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate(
            watch::Sender::new(Paused::default()),
            AtomicBool::new(false),
        )
    }
}

impl PauseGate {
    /// Is `tenant` (or everyone) paused right now?
    pub fn holds(&self, tenant: &str) -> bool {
        self.1.load(Ordering::Acquire) && self.0.borrow().holds(tenant)
    }

    /// Returns at once unless `tenant` (or everyone) is paused.
    pub async fn wait(&self, tenant: &str) {
        if !self.0.borrow().holds(tenant) {
            return;
        }
        let mut rx = self.0.subscribe();
        // The sender lives as long as the pools; an error can't happen.
        let _ = rx.wait_for(|p| !p.holds(tenant)).await;
    }

    /// Pauses one tenant, or everyone.
    pub fn pause(&self, tenant: Option<&str>) {
        self.0.send_modify(|p| {
            match tenant {
                None => p.all = true,
                Some(t) => {
                    p.tenants.insert(t.to_owned());
                }
            }
            self.1.store(true, Ordering::Release);
        });
    }

    /// Lifts one tenant's PAUSE (a global one still holds), or every PAUSE.
    pub fn resume(&self, tenant: Option<&str>) {
        self.0.send_modify(|p| {
            match tenant {
                None => *p = Paused::default(),
                Some(t) => {
                    p.tenants.remove(t);
                }
            }
            self.1
                .store(p.all || !p.tenants.is_empty(), Ordering::Release);
        });
    }

    pub fn is_paused(&self, tenant: &str) -> bool {
        self.0.borrow().holds(tenant)
    }
}

/// Checkouts in progress, oldest first.
#[derive(Default)]
pub struct Waiters(Mutex<(u64, BTreeMap<u64, Instant>)>);

/// One checkout in progress; leaves the list when dropped, however the
/// checkout ends.
pub struct Waiting(Arc<Waiters>, u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.0.lock().expect("poisoned").1.remove(&self.1);
    }
}

impl Waiters {
    pub fn enter(self: &Arc<Self>) -> Waiting {
        let mut w = self.0.lock().expect("poisoned");
        let id = w.0;
        w.0 += 1;
        w.1.insert(id, Instant::now());
        Waiting(self.clone(), id)
    }

    /// How many wait now, and the longest wait.
    pub fn now(&self) -> (usize, Duration) {
        let w = self.0.lock().expect("poisoned");
        let longest = w.1.values().next().map(Instant::elapsed);
        (w.1.len(), longest.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paused_tenants_wait_until_resumed() {
        let gate = Arc::new(PauseGate::default());
        gate.wait("a").await; // not paused: immediate
        gate.pause(Some("a"));
        assert!(gate.is_paused("a") && !gate.is_paused("b"));
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.wait("a").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        gate.pause(None);
        gate.resume(Some("a"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the global pause still holds");
        gate.resume(None);
        waiter.await.unwrap();
    }

    #[test]
    fn waiters_report_the_oldest() {
        let w = Arc::new(Waiters::default());
        let a = w.enter();
        std::thread::sleep(Duration::from_millis(5));
        let b = w.enter();
        assert_eq!(w.now().0, 2);
        assert!(w.now().1 >= Duration::from_millis(5));
        drop(a);
        assert!(w.now().1 < Duration::from_millis(5), "b is the oldest now");
        drop(b);
        assert_eq!(w.now(), (0, Duration::ZERO));
    }
}

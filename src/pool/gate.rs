//! What the admin console needs from a pool besides its connections: a
//! PAUSE gate that new checkouts wait at, and the clients waiting now
//! (how many, and since when) for `SHOW POOLS` and the metrics.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
        if !self.holds(tenant) {
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

/// Checkouts in progress, oldest first. Under a full pool in transaction
/// mode every transaction passes through here, so it is a queue, not an
/// ordered map: ids only grow, the queue stays sorted by id, a checkout
/// that ends is found by binary search and blanked, and blanks leave from
/// the front (checkouts mostly end in the order they began).
#[derive(Default)]
pub struct Waiters(Mutex<Queue>);

#[derive(Default)]
struct Queue {
    next_id: u64,
    /// (id, since); `None` once that checkout has ended.
    entries: VecDeque<(u64, Option<Instant>)>,
    live: usize,
}

/// One checkout in progress; leaves the list when dropped, however the
/// checkout ends.
pub struct Waiting(Arc<Waiters>, u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut q = self.0.0.lock();
        if let Ok(i) = q.entries.binary_search_by_key(&self.1, |e| e.0) {
            q.entries[i].1 = None;
            q.live -= 1;
        }
        while q.entries.front().is_some_and(|e| e.1.is_none()) {
            q.entries.pop_front();
        }
        // Blanks behind a long wait at the front (a PAUSE) stay bounded.
        if q.entries.len() > 2 * q.live + 64 {
            q.entries.retain(|e| e.1.is_some());
        }
    }
}

impl Waiters {
    pub fn enter(self: &Arc<Self>) -> Waiting {
        let mut q = self.0.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.entries.push_back((id, Some(Instant::now())));
        q.live += 1;
        Waiting(self.clone(), id)
    }

    /// How many wait now, and the longest wait.
    pub fn now(&self) -> (usize, Duration) {
        let q = self.0.lock();
        // The front is live: blanks never stay there.
        let longest = q.entries.front().and_then(|e| e.1).map(|t| t.elapsed());
        (q.live, longest.unwrap_or_default())
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

    #[test]
    fn waiters_leaving_out_of_order_are_forgotten() {
        let w = Arc::new(Waiters::default());
        let first = w.enter();
        let mut rest: Vec<_> = (0..500).map(|_| w.enter()).collect();
        // Every other one leaves, out of order, behind a first that stays.
        let mut i = 0;
        rest.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        assert_eq!(w.now().0, 251);
        // A long churn behind the first: without compaction every one of
        // these would stay as a blank.
        for _ in 0..1000 {
            drop(w.enter());
        }
        assert_eq!(w.now().0, 251);
        assert!(
            w.0.lock().entries.len() <= 2 * 251 + 64,
            "blanks stay bounded"
        );
        drop(first);
        assert_eq!(
            w.0.lock().entries.front().map(|e| e.1.is_some()),
            Some(true)
        );
        rest.clear();
        assert_eq!(w.now(), (0, Duration::ZERO));
        assert!(w.0.lock().entries.is_empty());
    }
}

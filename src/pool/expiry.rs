//! `query_wait_timeout` for clients queued for a slot, with one timer for
//! all of them.
//!
//! A timer per wait cost a registration and a removal in the timers' map
//! (~800 instructions) at every transaction once a pool is full, for a
//! deadline that is almost never reached. Waiters are queued with their
//! deadlines instead, and one task, [`super::Pools::expire_waits`], sleeps
//! until the earliest of them, ends the waits that are due and sleeps
//! again. It sets its timer for a deadline that the waiter has often left
//! by then (served), so it wakes about once per timeout, not per wait.
//!
//! A waiter tells the task only when it queues with a deadline earlier
//! than the one the task sleeps until (no task timer, or the timeout was
//! shortened by a reload): an atomic load and a compare per wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

/// What the waits' task sleeps until, shared with the queues.
pub struct Expiry {
    base: Instant,
    /// The deadline the task's timer is set for, in ns since `base`;
    /// `u64::MAX` while it has none or is looking through the queues.
    target: AtomicU64,
    wake: Notify,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            base: Instant::now(),
            target: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
        }
    }
}

impl Expiry {
    fn ns(&self, at: Instant) -> u64 {
        // Saturating: a deadline before `base` counts as due.
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// A wait ending at `deadline` was queued (after the queue's lock was
    /// released): wakes the task if it would sleep past it.
    #[inline]
    pub fn queued(&self, deadline: Instant) {
        // SeqCst pairs with `scanning`: either the task's look at the queue
        // sees this waiter, or this load sees the task looking and wakes it.
        if self.ns(deadline) < self.target.load(Ordering::SeqCst) {
            // A stored permit if the task is not waiting yet: it then looks
            // again at once.
            self.wake.notify_one();
        }
    }

    /// The task is about to look through the queues: waiters queued from
    /// now on wake it (they may come after it looked at their queue).
    pub fn scanning(&self) {
        self.target.store(u64::MAX, Ordering::SeqCst);
    }

    /// The task will sleep until `next` (None: until woken).
    pub fn sleeping_until(&self, next: Option<Instant>) {
        let ns = next.map_or(u64::MAX, |at| self.ns(at));
        self.target.store(ns, Ordering::SeqCst);
    }

    /// Until a waiter with an earlier deadline is queued.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn only_an_earlier_deadline_wakes_the_task() {
        let e = Expiry::default();
        let now = Instant::now();
        e.sleeping_until(Some(now + Duration::from_secs(5)));
        e.queued(now + Duration::from_secs(6));
        let woken = tokio::time::timeout(Duration::from_millis(20), e.woken()).await;
        assert!(woken.is_err(), "a later deadline leaves the task asleep");
        e.queued(now + Duration::from_secs(1));
        let woken = tokio::time::timeout(Duration::from_secs(5), e.woken()).await;
        assert!(woken.is_ok(), "an earlier one wakes it");
    }

    #[tokio::test]
    async fn a_waiter_queued_while_the_task_looks_wakes_it_after() {
        let e = Expiry::default();
        e.sleeping_until(Some(Instant::now() + Duration::from_secs(5)));
        e.scanning();
        // Queued behind the task's look, with a deadline past the old target.
        e.queued(Instant::now() + Duration::from_secs(60));
        e.sleeping_until(None);
        let woken = tokio::time::timeout(Duration::from_secs(5), e.woken()).await;
        assert!(
            woken.is_ok(),
            "the permit left by the waiter wakes the task"
        );
    }
}

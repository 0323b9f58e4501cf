//! "A connection went idle somewhere": what clients waiting for the global
//! budget wait on, to close another tenant's idle connection.
//!
//! Every return signals it (each transaction, in transaction mode), and
//! tokio's `Notify::notify_waiters` locks its waiter list and bumps a
//! counter even when nobody waits: with `worker_threads` > 1, a cache line
//! shared by all tenants that every core writes per transaction. Waiters
//! are counted instead, and a return with none costs one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

#[derive(Default)]
pub struct Returned {
    notify: Notify,
    waiting: AtomicUsize,
}

impl Returned {
    /// After a connection was put on an idle list.
    ///
    /// Why a waiter is never missed: a waiter counts itself before it looks
    /// at the idle lists (under their locks). If this load sees no waiter,
    /// the count came later than the load in the single order of SeqCst
    /// operations, so the waiter's look comes after the push that preceded
    /// the load, and finds the connection.
    pub fn signal(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Counts the caller as waiting while the guard lives: take it before
    /// looking at the idle lists, then wait on [`Counted::notified`].
    pub fn count_waiter(&self) -> Counted<'_> {
        self.waiting.fetch_add(1, SeqCst);
        Counted { returned: self }
    }
}

pub struct Counted<'a> {
    returned: &'a Returned,
}

impl<'a> Counted<'a> {
    pub fn notified(&self) -> Notified<'a> {
        self.returned.notify.notified()
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.returned.waiting.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_counted_waiter_is_woken_and_an_uncounted_return_costs_nothing() {
        let r = Arc::new(Returned::default());
        r.signal(); // nobody waits: no effect, no panic
        assert_eq!(r.waiting.load(SeqCst), 0);
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move {
                let counted = r.count_waiter();
                let notified = counted.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                notified.await;
            })
        };
        while r.waiting.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        r.signal();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(r.waiting.load(SeqCst), 0, "the guard uncounts");
    }
}

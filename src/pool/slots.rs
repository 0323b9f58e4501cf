//! One tenant's checkout slots: how many connections its clients may hold
//! at once (`pool_size`), its idle connections, and the clients waiting
//! for a slot, all under one lock.
//!
//! In transaction mode a client takes a slot and an idle connection at
//! every transaction and gives both back at its end. With a semaphore
//! beside the idle list that was two synchronisations each way, and
//! tokio's semaphore locks its waiter list on every release even when
//! nobody waits (~140 instructions per transaction). Here a checkout and a
//! return are one uncontended lock each.
//!
//! Waiters are served first come, first served: while anyone waits, a free
//! slot goes to the oldest waiter (handed over, never put up for grabs),
//! and a new client queues behind them. A waiter queues with its deadline,
//! which [`super::expiry`] enforces: no timer per wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

// parking_lot's lock: no poison checks at each lock and unlock, which a
// transaction-mode transaction does a few times (with the cancel key's and
// the buffer list's: −3 % instructions per `-S` transaction in callgrind).
use parking_lot::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::ServerConn;
use super::clock::Stamp;
use super::expiry::Expiry;
use super::returned::Returned;

const MIN_SWEEP: usize = 64;

pub struct Slots {
    state: Mutex<State>,
    /// The tenant is inactive or gone: connections close as they come
    /// back (see [`Slots::close`]).
    closing: AtomicBool,
    /// Shared by all tenants: signalled whenever a connection goes idle.
    returned: Arc<Returned>,
    /// Shared by all tenants: told of waiters' deadlines.
    expiry: Arc<Expiry>,
}

/// A client queued for a slot.
struct Waiter {
    deadline: Instant,
    /// Dropped unsent at the deadline: the wait ends with [`Expired`].
    tx: oneshot::Sender<Permit>,
}

impl Waiter {
    /// It gave up (its future was dropped).
    fn left(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A wait for a slot reached its deadline.
#[derive(Debug)]
pub struct Expired;

struct State {
    size: usize,
    /// Slots held, including those handed to a waiter not yet awake. Above
    /// `size` after a shrink, until enough come back.
    out: usize,
    /// Boxed: a connection changes hands on every transaction in
    /// transaction mode, and a pointer moves cheaper than the struct.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Oldest first.
    waiting: VecDeque<Waiter>,
    /// Queue length at which senders of waiters that gave up are swept out
    /// (behind a live waiter they would otherwise stay until they reach the
    /// front): doubles with the live ones, so a sweep is amortised O(1).
    sweep_at: usize,
}

impl State {
    /// A slot is free for a newcomer: room, and nobody queued before it.
    #[inline]
    fn free_for_newcomer(&mut self) -> bool {
        // A waiter that gave up leaves its sender behind; drop those first
        // so that they don't hold newcomers back.
        while self.waiting.front().is_some_and(Waiter::left) {
            self.waiting.pop_front();
        }
        self.out < self.size && self.waiting.is_empty()
    }

    /// The oldest waiter still waiting, if a slot is free for it.
    fn next_waiter(&mut self) -> Option<oneshot::Sender<Permit>> {
        while self.out < self.size {
            let w = self.waiting.pop_front()?;
            if !w.left() {
                self.out += 1;
                return Some(w.tx);
            }
        }
        None
    }
}

/// The right to hold one connection of the pool. Dropping it frees the
/// slot (for the oldest waiter, if any).
pub struct Permit(Option<Arc<Slots>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(slots) = self.0.take() {
            slots.release(None);
        }
    }
}

impl Permit {
    /// Frees the slot and puts `conn` on the idle list, in one lock.
    pub fn give_back(mut self, conn: Box<ServerConn>) {
        if let Some(slots) = self.0.take() {
            slots.release(Some(conn));
        }
    }
}

impl Slots {
    pub fn new(size: usize, returned: Arc<Returned>, expiry: Arc<Expiry>) -> Arc<Slots> {
        Arc::new(Slots {
            state: Mutex::new(State {
                size,
                out: 0,
                idle: Vec::new(),
                waiting: VecDeque::new(),
                sweep_at: MIN_SWEEP,
            }),
            returned,
            expiry,
            closing: AtomicBool::new(false),
        })
    }

    /// Closes the idle connections and those that come back from now on,
    /// until [`Slots::reopen`].
    pub fn close(&self) {
        // Set before the lock that takes the idle list: a release that
        // comes after finds it set under the same lock.
        self.closing.store(true, Ordering::Relaxed);
        let idle = std::mem::take(&mut self.lock().idle);
        drop(idle); // closed with the lock released
    }

    pub fn reopen(&self) {
        if self.closing() {
            self.closing.store(false, Ordering::Relaxed);
        }
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// A slot if one is free now, with the newest idle connection that
    /// `usable` accepts (those it refuses are closed).
    pub fn try_take(
        self: &Arc<Self>,
        usable: impl FnMut(&ServerConn, Stamp) -> bool,
    ) -> Option<(Permit, Option<Box<ServerConn>>)> {
        let now = Stamp::now();
        let mut st = self.lock();
        let permit = self.claim(&mut st)?;
        let conn = pop_usable(&mut st.idle, now, usable);
        Some((permit, conn))
    }

    /// A slot if one is free now, without a connection.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.claim(&mut self.lock())
    }

    /// Takes a slot for a newcomer, if one is free for it. (The permit must
    /// not be dropped while `st` is held: its drop takes the lock.)
    fn claim(self: &Arc<Self>, st: &mut State) -> Option<Permit> {
        if !st.free_for_newcomer() {
            return None;
        }
        st.out += 1;
        Some(Permit(Some(self.clone())))
    }

    /// Waits for a slot, in arrival order, until `deadline` (enforced by
    /// [`Self::expire`]).
    pub async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Permit, Expired> {
        let rx = {
            let mut st = self.lock();
            if let Some(p) = self.claim(&mut st) {
                return Ok(p);
            }
            if st.waiting.len() >= st.sweep_at {
                st.waiting.retain(|w| !w.left());
                st.sweep_at = MIN_SWEEP.max(2 * st.waiting.len());
            }
            let (tx, rx) = oneshot::channel();
            st.waiting.push_back(Waiter { deadline, tx });
            rx
        };
        self.expiry.queued(deadline);
        // If this future is dropped after a slot was handed over, the
        // channel drops the permit, which frees the slot again. The sender
        // is dropped unsent only by `expire`.
        rx.await.map_err(|_| Expired)
    }

    /// Ends the waits due at `now` (and forgets those that gave up);
    /// returns the earliest deadline still waiting.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut st = self.lock();
        // Deadlines mostly grow along the queue, but a reload that
        // shortens the timeout breaks that: look at every waiter (this
        // runs about once per timeout).
        st.waiting.retain(|w| w.deadline > now && !w.left());
        st.waiting.iter().map(|w| w.deadline).min()
    }

    /// The newest idle connection `usable` accepts, for a client that holds
    /// a slot already.
    pub fn take_idle(
        &self,
        usable: impl FnMut(&ServerConn, Stamp) -> bool,
    ) -> Option<Box<ServerConn>> {
        let now = Stamp::now();
        pop_usable(&mut self.lock().idle, now, usable)
    }

    /// Puts a connection on the idle list without a slot changing hands
    /// (a warm-up connection), if the tenant has room for it: clients may
    /// have taken every slot and opened their own meanwhile. (A slot
    /// handed to a waiter not yet awake may count twice here: then a
    /// warm-up is dropped, no connection in use.)
    pub fn put_idle(&self, mut conn: Box<ServerConn>) {
        conn.idle_since = Stamp::now();
        {
            let mut st = self.lock();
            if self.closing() || st.out + st.idle.len() >= st.size {
                return; // closed as it drops, the lock released first
            }
            st.idle.push(conn);
        }
        self.returned.signal();
    }

    /// Frees a slot, with its connection if it goes back idle.
    fn release(self: &Arc<Self>, conn: Option<Box<ServerConn>>) {
        let returned = conn.is_some();
        let mut conn = conn.map(|mut c| {
            c.idle_since = Stamp::now();
            c
        });
        let mut closing = None;
        loop {
            let next = {
                let mut st = self.lock();
                if let Some(c) = conn.take() {
                    // Past `pool_size` idle ones (a reload shrank it):
                    // closed, so that the tenant holds no more than that
                    // for long. (Not `out + idle`: a slot handed to a
                    // waiter not yet awake is counted in `out` and its
                    // connection is idle; counted twice, the next return
                    // would close a connection for a waiter to replace.)
                    if self.closing() || st.idle.len() >= st.size {
                        closing = Some(c);
                    } else {
                        st.idle.push(c);
                    }
                }
                st.out -= 1;
                st.next_waiter()
            };
            let Some(w) = next else { break };
            match w.send(Permit(Some(self.clone()))) {
                Ok(()) => break,
                // It gave up in the meantime: the slot is still out in its
                // name; free it again (for the next waiter).
                Err(mut p) => p.0 = None,
            }
        }
        // Its budget is free before anyone is told to look.
        drop(closing);
        if returned {
            self.returned.signal();
        }
    }

    /// Grows at once (waiters first) or shrinks: idle connections past the
    /// new size close now (the oldest), busy ones as they come back.
    pub fn resize(self: &Arc<Self>, size: usize) {
        let (handed, excess): (Vec<_>, Vec<_>) = {
            let mut st = self.lock();
            st.size = size;
            let idle = st.idle.len();
            let keep = size.saturating_sub(st.out).min(idle);
            let excess = st.idle.drain(..idle - keep).collect();
            (std::iter::from_fn(|| st.next_waiter()).collect(), excess)
        };
        drop(excess); // closed with the lock released
        for w in handed {
            // A waiter that gave up drops the permit: its slot is freed.
            let _ = w.send(Permit(Some(self.clone())));
        }
    }

    pub fn size(&self) -> usize {
        self.lock().size
    }

    /// Connections held by clients (or being opened for one) and idle ones.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.out, st.idle.len())
    }

    /// The idle list, for the reaper, eviction and the admin console.
    #[allow(clippy::vec_box)]
    pub fn with_idle<R>(&self, f: impl FnOnce(&mut Vec<Box<ServerConn>>) -> R) -> R {
        f(&mut self.lock().idle)
    }
}

#[allow(clippy::vec_box)]
#[inline]
fn pop_usable(
    idle: &mut Vec<Box<ServerConn>>,
    now: Stamp,
    mut usable: impl FnMut(&ServerConn, Stamp) -> bool,
) -> Option<Box<ServerConn>> {
    // Refused ones are dropped here: their sockets close and their budget
    // is freed.
    while let Some(conn) = idle.pop() {
        if usable(&conn, now) {
            return Some(conn);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slots(n: usize) -> Arc<Slots> {
        Slots::new(n, Arc::default(), Arc::default())
    }

    /// Far enough that no test reaches it.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Lets spawned tasks run until `cond` holds.
    async fn until(mut cond: impl FnMut() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }

    /// A pool of one slot, held, and a task queued for it.
    async fn one_held_one_queued() -> (Arc<Slots>, Permit, tokio::task::JoinHandle<Permit>) {
        let s = slots(1);
        let (held, _) = s.try_take(never).unwrap();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.acquire(later()).await.unwrap() });
        until(|| !s.lock().waiting.is_empty()).await;
        (s, held, waiter)
    }

    fn never(_: &ServerConn, _: Stamp) -> bool {
        unreachable!("no idle connection in these tests")
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let s = slots(1);
        let (held, _) = s.try_take(never).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (s2, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = s2.acquire(later()).await.unwrap();
                order.lock().push(i);
                tokio::task::yield_now().await;
                drop(p);
            }));
            // Each queues before the next is spawned.
            until(|| s.lock().waiting.len() > i).await;
        }
        assert!(s.try_take(never).is_none(), "a newcomer queues behind them");
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
        assert_eq!(s.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_the_slot() {
        let s = slots(1);
        let (held, _) = s.try_take(never).unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(10), s.acquire(later())).await;
        assert!(gave_up.is_err());
        // A second waiter, then the slot comes back: it goes past the
        // abandoned one to the live one.
        let s2 = s.clone();
        let live = tokio::spawn(async move { s2.acquire(later()).await.unwrap() });
        // (It drops the abandoned sender on its way into the queue.)
        until(|| s.lock().waiting.back().is_some_and(|w| !w.left())).await;
        drop(held);
        let p = live.await.unwrap();
        assert_eq!(s.counts(), (1, 0));
        drop(p);
        assert_eq!(s.counts(), (0, 0));
        assert!(s.try_take(never).is_some());
    }

    #[tokio::test]
    async fn waiters_that_gave_up_behind_a_live_one_are_swept() {
        let (s, held, live) = one_held_one_queued().await;
        for _ in 0..1000 {
            let gave_up = tokio::time::timeout(Duration::ZERO, s.acquire(later())).await;
            assert!(gave_up.is_err());
        }
        assert!(s.lock().waiting.len() <= MIN_SWEEP + 1);
        drop(held);
        drop(live.await.unwrap());
        assert_eq!(s.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_wait_past_its_deadline_ends_and_the_next_waiter_keeps_its_place() {
        let s = slots(1);
        let (held, _) = s.try_take(never).unwrap();
        let now = Instant::now();
        let (soon, late) = (now + Duration::from_millis(5), later());
        let (s1, s2) = (s.clone(), s.clone());
        let first = tokio::spawn(async move { s1.acquire(soon).await });
        until(|| s.lock().waiting.len() == 1).await;
        let second = tokio::spawn(async move { s2.acquire(late).await });
        until(|| s.lock().waiting.len() == 2).await;
        assert_eq!(s.expire(now), Some(soon), "nothing due yet");
        assert_eq!(s.expire(soon), Some(late));
        assert!(first.await.unwrap().is_err(), "the first wait expired");
        drop(held);
        let p = second.await.unwrap().expect("the slot went to the second");
        assert_eq!(s.counts(), (1, 0));
        drop(p);
        assert_eq!(s.expire(late), None, "nobody waits");
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_left_comes_back() {
        let (s, held, waiter) = one_held_one_queued().await;
        // Handed over, but the waiter is aborted before it wakes.
        drop(held);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(s.counts(), (0, 0), "the permit died in the channel");
        assert!(s.try_take(never).is_some());
    }

    #[tokio::test]
    async fn resizing_hands_new_slots_to_waiters_and_shrinks_lazily() {
        let (s, a, waiter) = one_held_one_queued().await;
        s.resize(2);
        let b = waiter.await.unwrap();
        assert_eq!(s.counts().0, 2);
        s.resize(1);
        drop(a);
        assert!(s.try_take(never).is_none(), "1 out, size 1");
        drop(b);
        assert!(s.try_take(never).is_some());
        assert_eq!(s.size(), 1);
    }
}

//! Which of the relay's waits can make progress.
//!
//! The relay task waits on a client socket, a server socket and its kill
//! switch at once, all with the task's own waker. Polling a read that has
//! nothing costs a lock in tokio (the waker is stored again) and finds
//! nothing, so a wait that returned Pending is *armed*: its waker is
//! registered, and it is polled again only once it shows that it fired
//! (tokio has seen its socket readable, the switch holds an order). A
//! wake-up from the server then costs no poll of the client's read nor of
//! the kill switch, the way an event loop on epoll only touches the sockets
//! that reported. (Arming relies on the task's waker staying the same
//! from poll to poll, which holds for a spawned tokio task: the relay runs
//! in its client's.)
//!
//! The previous design gave each wait a waker of its own that recorded
//! which one fired; looking at what tokio already knows instead saves that
//! waker's reference counting and a second waker registration per wake-up
//! (−3 to −4 % instructions per transaction in callgrind).

use super::live::KillMode;

/// One of the waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Server = 0,
    Client = 1,
    Kill = 2,
}

const SIDES: usize = 3;

#[derive(Default)]
pub struct Waits {
    armed: [bool; SIDES],
    /// The count of kill orders (to any session) when the kill switch was
    /// last looked at.
    kills_seen: u64,
    /// The strongest order this session's relay has taken from its kill
    /// switch: only a stronger one wakes it (kept here, not passed along
    /// with the switch: the relay's wait is built at every turn of its
    /// loop, and a wider one costs instructions each time).
    pub kill_seen: Option<KillMode>,
    /// Runs while the client leaves its transaction idle, if
    /// `pool.idle_transaction_timeout_ms` is set (polled at every turn
    /// then: the client is idle).
    pub idle_in_transaction: Option<crate::timer::Sleep>,
}

impl Waits {
    /// Whether `side` is worth a poll: it is not armed, or `fired` says
    /// that what it waits for happened. `fired` must be true whenever the
    /// wait's registered waker has been woken since it returned Pending
    /// (see [`Waits::polled`] for a Pending that registered none).
    #[inline]
    pub fn worth_polling(&self, side: Side, fired: impl FnOnce() -> bool) -> bool {
        !self.armed[side as usize] || fired()
    }

    /// [`Waits::worth_polling`] for the kill switch, which is looked at
    /// only once `issued`, the count of kill orders to any session, has
    /// changed since it was last: orders set the switch before they count
    /// and wake after.
    /// `ordered` gets the order already taken (see [`Waits::kill_seen`]).
    #[inline]
    pub fn kill_worth_polling(
        &mut self,
        issued: u64,
        ordered: impl FnOnce(Option<KillMode>) -> bool,
    ) -> bool {
        if !self.armed[Side::Kill as usize] {
            return true;
        }
        if issued == self.kills_seen {
            return false;
        }
        self.kills_seen = issued;
        ordered(self.kill_seen)
    }

    /// Records the outcome of polling `side`: Pending arms it, unless it
    /// was tokio refusing for want of the task's cooperative budget. That
    /// Pending registered no waker with the socket (tokio only re-schedules
    /// the task), so the next poll must look again. A Pending that did
    /// register had a unit of budget, and gave it back.
    #[inline]
    pub fn polled<T>(&mut self, side: Side, r: std::task::Poll<T>) -> std::task::Poll<T> {
        self.armed[side as usize] = r.is_pending() && tokio::task::coop::has_budget_remaining();
        r
    }

    /// `side`'s socket was replaced or waited on elsewhere: its waker may
    /// not be registered any more.
    pub fn disarm(&mut self, side: Side) {
        self.armed[side as usize] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    #[test]
    fn an_armed_wait_is_polled_again_only_once_it_fired() {
        let mut waits = Waits::default();
        assert!(waits.worth_polling(Side::Server, || false), "new: polled");
        assert!(waits.polled(Side::Server, Poll::<()>::Pending).is_pending());
        assert!(!waits.worth_polling(Side::Server, || false), "armed");
        assert!(waits.worth_polling(Side::Server, || true), "fired");
        // The client's wait is its own.
        assert!(waits.worth_polling(Side::Client, || false));
        // Ready leaves a wait unarmed: the next poll registers the waker.
        assert!(waits.polled(Side::Server, Poll::Ready(())).is_ready());
        assert!(waits.worth_polling(Side::Server, || false));
        assert!(waits.polled(Side::Kill, Poll::<()>::Pending).is_pending());
        waits.disarm(Side::Kill);
        assert!(waits.worth_polling(Side::Kill, || false));
    }

    #[test]
    fn an_armed_kill_switch_is_looked_at_only_once_orders_were_given() {
        let mut waits = Waits::default();
        assert!(waits.kill_worth_polling(0, |_| false), "new: polled");
        assert!(waits.polled(Side::Kill, Poll::<()>::Pending).is_pending());
        let looked = std::cell::Cell::new(0);
        let ordered = |yes| {
            looked.set(looked.get() + 1);
            yes
        };
        assert!(!waits.kill_worth_polling(0, |_| ordered(true)));
        assert_eq!(looked.get(), 0, "no order given: the switch is not read");
        // Another session's order: read once, and not again.
        assert!(!waits.kill_worth_polling(1, |_| ordered(false)));
        assert!(!waits.kill_worth_polling(1, |_| ordered(false)));
        assert_eq!(looked.get(), 1);
        // This session's.
        assert!(waits.kill_worth_polling(2, |_| ordered(true)));
    }
}

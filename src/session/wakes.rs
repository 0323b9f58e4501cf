//! Which of the relay's waits can make progress.
//!
//! The relay task waits on a client socket, a server socket and its kill
//! switch at once. Polling a read that has nothing costs a lock in tokio
//! (the waker is stored again) and finds nothing, so each wait gets its own
//! waker: after it returns Pending it is *armed*, and it is polled again
//! only once its waker fired. A wake-up from the server then costs no poll
//! of the client's read nor of the kill switch, the way an event loop on
//! epoll only touches the sockets that reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// One of the waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Server = 0,
    Client = 1,
    Kill = 2,
}

const SIDES: usize = 3;

/// What the waits' wakers share: which fired, and the task to wake.
#[derive(Default)]
pub struct Task {
    woken: AtomicU8,
    waker: AtomicWaker,
}

impl Task {
    /// Once per poll of the relay's task, before the relay runs.
    pub fn register(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
    }
}

/// The waker one wait registers with its socket or switch.
struct WaitWaker {
    task: Arc<Task>,
    bit: u8,
}

impl Wake for WaitWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.task.woken.fetch_or(self.bit, Ordering::AcqRel);
        self.task.waker.wake();
    }
}

pub struct Waits {
    task: Arc<Task>,
    wakers: [Waker; SIDES],
    armed: [bool; SIDES],
}

impl Waits {
    pub fn new(task: &Arc<Task>) -> Waits {
        let waker = |side: Side| {
            Waker::from(Arc::new(WaitWaker {
                task: task.clone(),
                bit: 1 << side as u8,
            }))
        };
        Waits {
            task: task.clone(),
            wakers: [waker(Side::Server), waker(Side::Client), waker(Side::Kill)],
            armed: [false; SIDES],
        }
    }

    /// Polls `side`'s read with its own waker, unless it is armed and its
    /// waker has not fired since (then it is Pending without a poll).
    pub fn poll<T>(
        &mut self,
        side: Side,
        read: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let woken = self.task.woken.load(Ordering::Acquire);
        if woken != 0 {
            // Taken once for all: a wake after this swap sets it again.
            let woken = self.task.woken.swap(0, Ordering::AcqRel);
            for (i, armed) in self.armed.iter_mut().enumerate() {
                *armed &= woken & (1 << i) == 0;
            }
        }
        let i = side as usize;
        if self.armed[i] {
            return Poll::Pending;
        }
        let r = read(&mut Context::from_waker(&self.wakers[i]));
        self.armed[i] = r.is_pending();
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
    use std::sync::atomic::AtomicUsize;

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_armed_read_is_polled_again_only_after_its_waker_fired() {
        let counter = Arc::new(CountWakes(AtomicUsize::new(0)));
        let task_waker = Waker::from(counter.clone());
        let task = Arc::new(Task::default());
        task.register(&Context::from_waker(&task_waker));
        let mut waits = Waits::new(&task);
        let stored = std::cell::RefCell::new(None);
        let polls = std::cell::Cell::new(0);
        let pending = |cx: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            *stored.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };
        assert!(waits.poll(Side::Server, pending).is_pending());
        assert!(waits.poll(Side::Server, pending).is_pending());
        assert_eq!(polls.get(), 1, "armed: not polled again");
        // The client's read is its own.
        assert!(waits.poll(Side::Client, pending).is_pending());
        assert_eq!(polls.get(), 2);
        // The client's socket fires: the task wakes, the server stays armed.
        stored.take().unwrap().wake();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert!(waits.poll(Side::Server, |_| Poll::Ready(())).is_pending());
        assert!(waits.poll(Side::Client, |_| Poll::Ready(())).is_ready());
        // Ready leaves a read unarmed; disarm does so explicitly.
        assert!(waits.poll(Side::Client, |_| Poll::Ready(())).is_ready());
        waits.disarm(Side::Server);
        assert!(waits.poll(Side::Server, |_| Poll::Ready(())).is_ready());
    }
}

//! Timers on one `timerfd`, in place of tokio's time driver.
//!
//! tokio's time driver looks at its timer wheel every time the runtime
//! parks, whether a timer is due or not: two clock reads, two locks and
//! walks of the wheel, ~570 instructions per wake-up in callgrind, and a
//! proxy wakes up about once per statement relayed (7 times per TPC-B
//! transaction at 16 clients). The proxy's timers are few and rarely due:
//! login and connect deadlines, housekeeping ticks, the one timer of all
//! waits for a pool slot (`pool::expiry`). Here they
//! sit in an ordered map and a single `timerfd`, armed for the earliest
//! deadline, is one more file descriptor in the runtime's epoll set: a
//! wake-up costs nothing until a timer is due. `serve` builds its runtime
//! without a time driver, so every timer of the proxy goes through
//! [`Timers`].
//!
//! A timer registers only when first polled and still not due: a timeout
//! around a future that completes at once touches nothing but the clock.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How late a tick of an [`Interval`] may be and keep its schedule.
const LATE: Duration = Duration::from_millis(5);

/// A handle on the proxy's timers; clones share them.
#[derive(Clone)]
pub struct Timers(Arc<Shared>);

struct Shared {
    fd: OwnedFd,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Waiting timers by deadline; the id tells equal deadlines apart.
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// What the timerfd is armed for. It may be earlier than the first
    /// waiting deadline (that timer was dropped): it then fires for nothing
    /// and is armed again, which is cheaper than re-arming at every drop.
    armed: Option<Instant>,
}

/// A timeout ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

impl Timers {
    pub fn new() -> io::Result<Timers> {
        // SAFETY: plain syscall; the descriptor is owned right below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Timers(Arc::new(Shared {
            // SAFETY: a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            state: Mutex::default(),
        })))
    }

    pub fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(Instant::now() + d)
    }

    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            timers: self.clone(),
            deadline,
            id: None,
        }
    }

    /// `f`'s output, or [`Elapsed`] if it is not done within `d`.
    pub fn timeout<F: Future>(&self, d: Duration, f: F) -> Timeout<F> {
        self.timeout_at(Instant::now() + d, f)
    }

    pub fn timeout_at<F: Future>(&self, deadline: Instant, f: F) -> Timeout<F> {
        Timeout {
            fut: f,
            sleep: self.sleep_until(deadline),
        }
    }

    /// Ticks now, then every `period`; a tick more than [`LATE`] late
    /// delays the next ones (housekeeping wants spacing, not catching up).
    pub fn interval(&self, period: Duration) -> Interval {
        self.interval_at(Instant::now(), period)
    }

    pub fn interval_at(&self, first: Instant, period: Duration) -> Interval {
        assert!(!period.is_zero(), "an interval needs a period");
        Interval {
            timers: self.clone(),
            next: first,
            period,
            sleep: None,
        }
    }

    /// Registers the timerfd with the current runtime and returns the task
    /// that fires timers as they come due, to spawn once: it runs as long
    /// as the runtime does. Registered here, not in the task, so that a
    /// failure stops the start instead of every timeout.
    pub fn driver(&self) -> io::Result<impl Future<Output = ()> + Send + 'static> {
        // SAFETY: `Registered` holds the `Timers` that own the descriptor,
        // so it stays open and the same until the AsyncFd has deregistered
        // it (AsyncFd drops its inner value after deregistering).
        let fd = unsafe {
            AsyncFd::register_with_interest(Registered(self.clone()), Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(async move {
            loop {
                let Ok(mut ready) = fd.readable().await else {
                    return; // the runtime is shutting down
                };
                let timers = &fd.get_ref().0;
                let mut expirations = [0u8; 8];
                // SAFETY: reads 8 bytes into a buffer of 8. EAGAIN (a
                // spurious readiness) is harmless: due timers are found by
                // the clock.
                unsafe { libc::read(timers.0.fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                ready.clear_ready();
                timers.fire_due();
            }
        })
    }

    fn fire_due(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut state = self.lock();
            while let Some(entry) = state.waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = state.waiting.first_key_value().map(|(&(at, _), _)| at);
            state.armed = next.filter(|&at| self.arm(at));
        }
        // Outside the lock: on a multi-thread runtime a wake may unpark a
        // worker that polls a timer at once.
        due.into_iter().for_each(Waker::wake);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the critical sections can panic halfway through.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms the timerfd for `at`; false if the kernel refused (then
    /// nothing counts as armed, and the next timer registered tries again).
    fn arm(&self, at: Instant) -> bool {
        // Relative: timerfd and Instant share CLOCK_MONOTONIC, and zero
        // would disarm.
        let left = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid descriptor and itimerspec; the old value is not wanted.
        let rc =
            unsafe { libc::timerfd_settime(self.0.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            tracing::error!(error = %e, "cannot arm the timers' timerfd");
        }
        rc == 0
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// The timerfd as the runtime's reactor sees it, with its owner.
struct Registered(Timers);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0.0.fd.as_raw_fd()
    }
}

/// Completes at its deadline.
pub struct Sleep {
    timers: Timers,
    deadline: Instant,
    /// Set while registered.
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.unregister();
            return Poll::Ready(());
        }
        let mut state = this.timers.lock();
        match this.id {
            Some(id) => match state.waiting.get_mut(&(this.deadline, id)) {
                Some(w) => w.clone_from(cx.waker()),
                None => {
                    // Fired: the driver took it out.
                    this.id = None;
                    return Poll::Ready(());
                }
            },
            None => {
                let id = state.next_id;
                state.next_id += 1;
                state
                    .waiting
                    .insert((this.deadline, id), cx.waker().clone());
                this.id = Some(id);
                if state.armed.is_none_or(|at| this.deadline < at) && this.timers.arm(this.deadline)
                {
                    state.armed = Some(this.deadline);
                }
            }
        }
        Poll::Pending
    }
}

impl Sleep {
    fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            self.timers.lock().waiting.remove(&(self.deadline, id));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

pin_project_lite::pin_project! {
    /// See [`Timers::timeout`]. A struct, not an `async fn`: the future it
    /// wraps (a whole login) is stored once, where an `async fn` would keep
    /// its argument and the pinned copy, and a session's task is as large
    /// as its largest state (3.8 KiB more per idle client, measured).
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The future first, as tokio's: one that is done at once never
        // registers its timer.
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

/// Ticks at a steady period; see [`Timers::interval`].
pub struct Interval {
    timers: Timers,
    next: Instant,
    period: Duration,
    /// Kept across calls: a `tick` dropped in a `select!` loses nothing.
    sleep: Option<Sleep>,
}

impl Interval {
    pub async fn tick(&mut self) -> Instant {
        let sleep = self
            .sleep
            .get_or_insert_with(|| self.timers.sleep_until(self.next));
        sleep.await;
        self.sleep = None;
        let ticked = self.next;
        let now = Instant::now();
        self.next = if now > ticked + LATE {
            now + self.period
        } else {
            ticked + self.period
        };
        ticked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> Timers {
        let t = Timers::new().unwrap();
        tokio::spawn(t.driver().unwrap());
        t
    }

    #[tokio::test]
    async fn a_sleep_ends_at_its_deadline_not_before() {
        let t = timers();
        let start = Instant::now();
        t.sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(t.waiting(), 0, "a fired timer is gone");
    }

    #[tokio::test]
    async fn an_earlier_timer_registered_later_still_fires_first() {
        let t = timers();
        let late = t.sleep(Duration::from_secs(60));
        let mut late = std::pin::pin!(late);
        // Registered and armed for a minute from now.
        assert!(futures_util::poll!(late.as_mut()).is_pending());
        let start = Instant::now();
        t.sleep(Duration::from_millis(20)).await;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "re-armed for the earlier one"
        );
        assert_eq!(t.waiting(), 1, "the late one still waits");
    }

    #[tokio::test]
    async fn a_timeout_reports_the_future_or_the_deadline() {
        let t = timers();
        assert_eq!(t.timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
        assert_eq!(t.waiting(), 0, "a future done at once registers nothing");
        let never = std::future::pending::<()>();
        assert_eq!(
            t.timeout(Duration::from_millis(20), never).await,
            Err(Elapsed)
        );
        // Done before its deadline: the timer leaves with the timeout.
        let soon = t.sleep(Duration::from_millis(10));
        assert_eq!(t.timeout(Duration::from_secs(60), soon).await, Ok(()));
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn a_timeout_stores_its_future_once() {
        // A session's task is as large as its largest state; a login
        // wrapped twice over would cost every idle client its size again.
        let t = Timers::new().unwrap();
        let big = async {
            let buf = [0u8; 4096];
            std::future::ready(()).await;
            buf.len()
        };
        let wrapped = t.timeout(Duration::from_secs(1), big);
        let overhead = std::mem::size_of_val(&wrapped) - 4096;
        assert!(overhead < 128, "a timeout adds {overhead} bytes");
    }

    #[tokio::test]
    async fn a_dropped_timer_leaves_and_the_next_still_fires() {
        let t = timers();
        {
            let s = t.sleep(Duration::from_millis(10));
            let mut s = std::pin::pin!(s);
            assert!(futures_util::poll!(s.as_mut()).is_pending());
            assert_eq!(t.waiting(), 1);
        }
        assert_eq!(t.waiting(), 0);
        // The timerfd, still armed for the dropped one, fires for nothing
        // and is armed again for this one.
        let start = Instant::now();
        t.sleep(Duration::from_millis(40)).await;
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn an_interval_ticks_at_once_then_spaced_and_survives_a_dropped_tick() {
        let t = timers();
        let mut every = t.interval(Duration::from_millis(20));
        let start = Instant::now();
        every.tick().await;
        assert!(
            start.elapsed() < Duration::from_millis(20),
            "first tick at once"
        );
        // A tick dropped halfway (a select! taking another branch) keeps its
        // registered timer: the next tick waits on it, not on a new one.
        assert!(futures_util::poll!(std::pin::pin!(every.tick())).is_pending());
        assert_eq!(t.waiting(), 1);
        every.tick().await;
        every.tick().await;
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}

//! Timestamps for the pool, from the kernel's coarse monotonic clock.
//!
//! In transaction mode every checkout and return reads the clock (is this
//! idle connection fresh, past its idle timeout, past its lifetime?). Those
//! limits count in milliseconds to minutes, so a clock that advances once
//! per kernel tick (1–10 ms) is precise enough, and reading it is a load from
//! the vDSO page: no TSC read and no scaling (6 ns against 24 for
//! `CLOCK_MONOTONIC` on the benchmark machine, a million calls each).

use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;

/// A moment, in milliseconds of the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    pub fn now() -> Stamp {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec to write to; the clock id is a
        // constant this platform defines. libc (not a raw vDSO call) so
        // that valgrind, which hides the vDSO, still works.
        let rc = unsafe { libc::clock_gettime(CLOCK, &mut t) };
        debug_assert_eq!(rc, 0, "clock_gettime of a monotonic clock cannot fail");
        Stamp(t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000)
    }

    /// Milliseconds from `earlier` to this moment (0 if it is later).
    pub fn ms_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn elapsed(self) -> Duration {
        Duration::from_millis(Stamp::now().ms_since(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_the_precise_clock() {
        // The stamp is taken between two readings of the precise clock and
        // read back between two more: being descheduled anywhere widens
        // the bounds instead of failing the test.
        let outer = std::time::Instant::now();
        let stamp = Stamp::now();
        let inner = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let least = inner.elapsed();
        let coarse = stamp.elapsed();
        let most = outer.elapsed();
        // Each coarse reading lags by less than a kernel tick (10 ms at
        // HZ=100) and loses under a millisecond to truncation.
        let tick = Duration::from_millis(12);
        assert!(coarse + tick >= least, "{coarse:?} vs at least {least:?}");
        assert!(coarse <= most + tick, "{coarse:?} vs at most {most:?}");
        // Later stamps never count backwards.
        assert_eq!(stamp.ms_since(Stamp::now()), 0);
    }
}

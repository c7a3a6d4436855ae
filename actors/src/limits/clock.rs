//! [`Clock`]: where a limit reads the time, and [`SystemClock`], the
//! machine's, read once a decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a limit reads the time: monotonic for the buckets, the wall clock
/// for windows (every instance cuts the same windows from it).
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since some fixed origin.
    fn monotonic(&self) -> Duration;
    /// Time since the Unix epoch.
    fn unix(&self) -> Duration;
    /// Both, as a decision reads them: `(monotonic, unix)`.
    fn now(&self) -> (Duration, Duration) {
        (self.monotonic(), self.unix())
    }
    /// Called every sharing round: a clock that derives one reading from
    /// the other realigns them here.
    fn resync(&self) {}
}

/// The machine's clocks. A decision reads the monotonic clock only, and
/// takes the wall clock as that plus the offset between the two the last
/// sharing round measured ([`Clock::resync`], every `limits.share_every`):
/// one clock read a decision instead of two, and windows cut from a wall
/// clock at most one period behind a step of the real one.
pub struct SystemClock {
    base: Instant,
    /// Nanoseconds from the Unix epoch to `base`, as last measured.
    epoch_to_base: AtomicU64,
}

impl Default for SystemClock {
    fn default() -> Self {
        let clock = Self {
            base: Instant::now(),
            epoch_to_base: AtomicU64::new(0),
        };
        clock.resync();
        clock
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.base.elapsed()
    }

    fn unix(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn now(&self) -> (Duration, Duration) {
        let monotonic = self.monotonic();
        let offset = Duration::from_nanos(self.epoch_to_base.load(Ordering::Relaxed));
        (monotonic, monotonic + offset)
    }

    fn resync(&self) {
        let monotonic = self.monotonic();
        let offset = self.unix().saturating_sub(monotonic).as_nanos();
        let offset = u64::try_from(offset).unwrap_or(u64::MAX);
        self.epoch_to_base.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_wall_clock_from_the_monotonic_one() {
        let clock = SystemClock::default();
        let before = clock.unix();
        let (monotonic, unix) = clock.now();
        let after = clock.unix();
        assert!(
            before <= unix + Duration::from_millis(1) && unix <= after + Duration::from_millis(1)
        );
        assert!(monotonic <= clock.monotonic());
        // A wall clock read wrong until the next round is realigned by it.
        clock.epoch_to_base.store(0, Ordering::Relaxed);
        assert!(clock.now().1 < Duration::from_secs(86_400));
        clock.resync();
        assert!(clock.now().1 + Duration::from_millis(1) >= after);
    }
}

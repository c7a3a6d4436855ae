//! [`Gcra`]: the generic cell rate algorithm (a token bucket kept as one
//! timestamp), the in-process half of a per-address limit.
//!
//! `share` requests per `window`, at most `share` at once: a full bucket
//! holds `share` requests and refills one every `window / share`. The state
//! is the *theoretical arrival time* (TAT): when the bucket would be full
//! again. Pure arithmetic on a monotonic time the caller passes, so tests
//! run it on a made-up clock.
//!
//! Written here rather than taken from `governor`: the quota of an address
//! changes with the fleet's size (its share is recomputed on every
//! decision), and its state lives in one entry with the fleet's counts.

use std::time::Duration;

/// One address's bucket. `Default`: full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gcra {
    /// When the bucket is full again (monotonic; zero: full at any time).
    tat: Duration,
}

impl Gcra {
    /// Take one request at `now` from a bucket of `share` per `window`:
    /// `Err(wait)` (nothing taken) when it holds none, `wait` being the time
    /// until it holds one.
    pub fn take(&mut self, now: Duration, share: u64, window: Duration) -> Result<(), Duration> {
        let share = share.max(1);
        let interval = window / u32::try_from(share).unwrap_or(u32::MAX);
        // The bucket may run ahead of `now` by the whole burst less one cell.
        let tolerance = window.saturating_sub(interval);
        let tat = self.tat.max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        self.tat = tat + interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// How many of `n` requests at `now` the bucket lets through.
    fn taken(bucket: &mut Gcra, now: Duration, share: u64, n: u64) -> u64 {
        (0..n)
            .filter(|_| bucket.take(now, share, MINUTE).is_ok())
            .count() as u64
    }

    #[test]
    fn a_full_bucket_lets_its_share_through_at_once_then_refuses() {
        let mut bucket = Gcra::default();
        assert_eq!(taken(&mut bucket, ms(1_000_000), 3, 3), 3);
        // Empty: the next one in window / share = 20 s.
        assert_eq!(bucket.take(ms(1_000_000), 3, MINUTE), Err(ms(20_000)));
        assert_eq!(bucket.take(ms(1_005_000), 3, MINUTE), Err(ms(15_000)));
    }

    #[test]
    fn the_bucket_refills_one_request_per_interval() {
        let mut bucket = Gcra::default();
        assert_eq!(taken(&mut bucket, ms(0), 3, 3), 3);
        assert_eq!(taken(&mut bucket, ms(20_000), 3, 5), 1);
        assert_eq!(taken(&mut bucket, ms(39_999), 3, 5), 0);
        assert_eq!(taken(&mut bucket, ms(40_000), 3, 5), 1);
        // A whole window idle: full again, never fuller.
        assert_eq!(taken(&mut bucket, ms(1_000_000), 3, 5), 3);
    }

    #[test]
    fn a_steady_client_gets_the_rate_and_no_more() {
        // One request a second against 60 a minute: every one.
        let mut bucket = Gcra::default();
        let steady = (0..600).filter(|s| bucket.take(ms(s * 1000), 60, MINUTE).is_ok());
        assert_eq!(steady.count(), 600);
        // Ten a second for a minute: the burst of 60, then one a second.
        let mut bucket = Gcra::default();
        let fast = (0..600).filter(|i| bucket.take(ms(i * 100), 60, MINUTE).is_ok());
        assert_eq!(fast.count(), 60 + 59);
    }

    #[test]
    fn a_smaller_share_counts_what_was_spent_as_time() {
        // 50 of 300 a minute spend 10 s of the bucket; the fleet then grows
        // to three instances (100 a minute): 50 s of it are left, 83 requests.
        let mut bucket = Gcra::default();
        assert_eq!(taken(&mut bucket, ms(0), 300, 50), 50);
        assert_eq!(taken(&mut bucket, ms(0), 100, 100), 83);
        assert_eq!(bucket.take(ms(0), 100, MINUTE), Err(ms(400)));
    }
}

//! [`Clock`]: the queue's "now".
//!
//! Every time the queue decides by — when a job is due (`runAt`), a lease
//! and its expiry, a retry's backoff, a hold, a unique key's staleness, a
//! periodic job's slots, a candidate's rank — is read from the [`Clock`]
//! its [`crate::queue::store::JobStore`] was built with. In production that
//! is the system clock; a test builds the queue with a [`Clock::manual`]
//! and moves it with [`Clock::advance`], so that "the backoff has passed"
//! or "the job is due" takes no waiting at all (see
//! [`crate::queue::worker`] for running the jobs it made due).
//!
//! Timers are not the clock's business: the poller's tick, lease renewals
//! and handler timeouts run on tokio's time, and durations measured for
//! metrics on [`std::time::Instant`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mongodb::bson::DateTime;

/// The queue's source of "now". Cheap to clone; clones of a manual clock
/// share its time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    System,
    /// Milliseconds since the Unix epoch, moved only by `advance`.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that stands still at `start` until [`advance`](Self::advance)d.
    pub fn manual(start: SystemTime) -> Self {
        let millis = DateTime::from_system_time(start).timestamp_millis();
        Self(Source::Manual(Arc::new(AtomicI64::new(millis))))
    }

    /// A manual clock starting at the system clock's now (so that what
    /// other code stamps with the wall clock is not in its future).
    pub fn manual_from_now() -> Self {
        Self::manual(SystemTime::now())
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }

    /// Now, as stored.
    pub fn now(&self) -> DateTime {
        match &self.0 {
            Source::System => DateTime::now(),
            Source::Manual(millis) => DateTime::from_millis(millis.load(Ordering::SeqCst)),
        }
    }

    /// Now, as a [`SystemTime`].
    pub fn system_time(&self) -> SystemTime {
        self.now().to_system_time()
    }

    /// Now, as a chrono time (the schedules' slots).
    pub fn utc(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now().timestamp_millis()).unwrap_or_default()
    }

    /// `duration` from now.
    pub fn after(&self, duration: Duration) -> DateTime {
        DateTime::from_millis(
            self.now()
                .timestamp_millis()
                .saturating_add(millis(duration)),
        )
    }

    /// `duration` ago.
    pub fn before(&self, duration: Duration) -> DateTime {
        DateTime::from_millis(
            self.now()
                .timestamp_millis()
                .saturating_sub(millis(duration)),
        )
    }

    /// Move a manual clock `by` forward. The system clock moves by itself:
    /// advancing it is a mistake in the caller, and panics.
    pub fn advance(&self, by: Duration) {
        match &self.0 {
            Source::Manual(now) => {
                now.fetch_add(millis(by), Ordering::SeqCst);
            }
            Source::System => panic!("the system clock cannot be advanced"),
        }
    }
}

/// `duration` in whole milliseconds, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn a_manual_clock_stands_still_until_advanced() {
        let clock = Clock::manual(start());
        let at = clock.now();
        assert_eq!(at, DateTime::from_system_time(start()));
        assert_eq!(clock.now(), at);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(
            clock.now().timestamp_millis(),
            at.timestamp_millis() + 1_500
        );
    }

    #[test]
    fn clones_of_a_manual_clock_share_its_time() {
        let clock = Clock::manual(start());
        let other = clock.clone();
        other.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), other.now());
        assert_eq!(clock.system_time(), start() + Duration::from_secs(90));
    }

    #[test]
    fn after_and_before_are_relative_to_the_clock() {
        let clock = Clock::manual(start());
        let now = clock.now().timestamp_millis();
        assert_eq!(
            clock.after(Duration::from_secs(2)).timestamp_millis(),
            now + 2_000
        );
        assert_eq!(
            clock.before(Duration::from_secs(2)).timestamp_millis(),
            now - 2_000
        );
        assert_eq!(clock.utc().timestamp_millis(), now);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let clock = Clock::system();
        assert!(!clock.is_manual());
        let wall = DateTime::now().timestamp_millis();
        assert!((clock.now().timestamp_millis() - wall).abs() < 5_000);
    }

    #[test]
    #[should_panic(expected = "cannot be advanced")]
    fn advancing_the_system_clock_is_refused() {
        Clock::system().advance(Duration::from_secs(1));
    }
}

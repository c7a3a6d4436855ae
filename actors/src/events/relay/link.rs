//! [`Link`]: what both relay tasks share (the stream, this instance, the
//! figures), and the [`Backoff`] between attempts to reach Redis.

use std::sync::Arc;
use std::time::Duration;

use crate::events::config::EventsConfig;
use crate::store::{RedisStore, StoreError};

use super::status::RelayStatus;

/// The fleet's stream of events, under the service's key prefix. `{fleet}`
/// is a hash tag: on a Redis Cluster every fleet key lives in one slot.
pub const STREAM: &str = "{fleet}:events";

/// The first wait after a failure; doubled up to `events.relay_retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Why one round trip of the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("an event could not be encoded")]
    Encode(#[from] serde_json::Error),
}

/// What the relay's tasks share.
#[derive(Clone)]
pub struct Link {
    pub redis: RedisStore,
    /// The stream's key (prefix included).
    pub key: String,
    /// This instance's id.
    pub instance: Arc<str>,
    pub config: EventsConfig,
    pub status: RelayStatus,
}

impl Link {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.config.relay_retry_max)
    }
}

/// Waits between attempts: 100 ms, doubling, at most `max`.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: FIRST_RETRY.min(max),
            max,
        }
    }

    /// The wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// An attempt worked: start from the first wait again.
    pub fn reset(&mut self) {
        self.next = FIRST_RETRY.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_start_over_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| backoff.wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.wait(), Duration::from_millis(100));
        let mut short = Backoff::new(Duration::from_millis(30));
        assert_eq!(short.wait(), Duration::from_millis(30), "never above max");
    }
}

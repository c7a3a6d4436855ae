//! `[events]` in the configuration: the relay that carries events between
//! the instances of a fleet (see [`crate::events::relay`]).

use std::time::Duration;

use crate::validate::{ConfigErrors, Validate};
use serde::Deserialize;

/// `[events]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    /// Entries the fleet's stream keeps, approximately (`XADD … MAXLEN ~`):
    /// how far back a relay that lost touch for a moment can catch up.
    pub fleet_stream_len: u64,
    /// Events of this instance waiting to be written to the stream; past it
    /// they are dropped for the fleet (and counted), never waited for.
    pub relay_buffer: usize,
    /// Longest wait between two attempts to reach Redis again (the waits
    /// double from 100 ms up to this).
    #[serde(with = "humantime_serde")]
    pub relay_retry_max: Duration,
}

/// The relay keeps some history, has room for a burst, and retries.
impl Validate for EventsConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            self.fleet_stream_len >= 100,
            "fleet_stream_len",
            "must be at least 100",
        );
        errors.ensure(self.relay_buffer >= 1, "relay_buffer", "must be at least 1");
        errors.ensure(
            !self.relay_retry_max.is_zero(),
            "relay_retry_max",
            "must be positive",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::refused_after;

    fn config() -> EventsConfig {
        EventsConfig {
            fleet_stream_len: 10_000,
            relay_buffer: 1024,
            relay_retry_max: Duration::from_secs(5),
        }
    }

    #[test]
    fn events_relay_values_are_each_reported_under_their_own_key() {
        assert!(refused_after(config(), |_| {}).is_empty());
        assert_eq!(
            refused_after(config(), |e| e.fleet_stream_len = 99),
            ["fleet_stream_len"]
        );
        assert!(refused_after(config(), |e| e.fleet_stream_len = 100).is_empty());
        assert_eq!(
            refused_after(config(), |e| e.relay_buffer = 0),
            ["relay_buffer"]
        );
        assert!(refused_after(config(), |e| e.relay_buffer = 1).is_empty());
        assert_eq!(
            refused_after(config(), |e| e.relay_retry_max = Duration::ZERO),
            ["relay_retry_max"]
        );
    }
}

//! `[fleet]` in the configuration.

use std::time::Duration;

use crate::validate::{ConfigErrors, Validate};
use serde::Deserialize;

/// `[fleet]` in the configuration: how often each instance announces itself
/// and how long an announcement lasts.
#[derive(Debug, Clone, Deserialize)]
pub struct FleetConfig {
    /// How often this instance writes its heartbeat (and looks for dead
    /// instances to take over).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a heartbeat lives in Redis: an instance not heard from for
    /// this long is dead, and its jobs are released.
    #[serde(with = "humantime_serde")]
    pub heartbeat_ttl: Duration,
}

/// A heartbeat must be able to miss one beat without its instance being
/// taken for dead, so the TTL is at least two intervals; a zero interval
/// would panic the timer that drives it.
impl Validate for FleetConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            self.heartbeat_interval >= Duration::from_millis(50),
            "heartbeat_interval",
            "must be at least 50ms",
        );
        errors.ensure(
            self.heartbeat_ttl >= self.heartbeat_interval * 2,
            "heartbeat_ttl",
            "must be at least twice fleet.heartbeat_interval",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::refused_after;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> FleetConfig {
        FleetConfig {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(15),
        }
    }

    #[test]
    fn fleet_heartbeats_tick_and_outlive_a_missed_beat() {
        assert!(refused_after(config(), |_| {}).is_empty());
        assert_eq!(
            refused_after(config(), |f| f.heartbeat_interval = Duration::ZERO),
            ["heartbeat_interval"]
        );
        assert_eq!(
            refused_after(config(), |f| f.heartbeat_interval = 49 * MS),
            ["heartbeat_interval"]
        );
        assert!(refused_after(config(), |f| {
            f.heartbeat_interval = 50 * MS;
            f.heartbeat_ttl = 100 * MS;
        })
        .is_empty());
        assert_eq!(
            refused_after(config(), |f| f.heartbeat_ttl =
                f.heartbeat_interval * 2 - MS),
            ["heartbeat_ttl"]
        );
        assert!(refused_after(config(), |f| f.heartbeat_ttl = f.heartbeat_interval * 2).is_empty());
    }
}

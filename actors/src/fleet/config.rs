//! `[fleet]` in the configuration.

use std::time::Duration;

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

//! `[cache]` in the configuration.

use std::time::Duration;

use serde::Deserialize;

/// `[cache]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct CacheConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Entries of the in-process tier (0: no such tier).
    pub local_entries: u64,
    /// Whether a hit in the tier first waits for the invalidations sent
    /// before it (one shared PING on the tracking connection).
    pub local_strict: bool,
    /// How long an invalidation's fence lives in Redis.
    #[serde(with = "humantime_serde")]
    pub fence_ttl: Duration,
    /// How often the tracking connection is pinged, and how long a lost one
    /// waits before reconnecting.
    #[serde(with = "humantime_serde")]
    pub tracking_check: Duration,
}

impl CacheConfig {
    /// The oldest a load may be and still store what it read: half the
    /// fence's life, so the fence it was checked against cannot have expired
    /// (and a newer one come and gone) in between.
    pub fn fill_deadline(&self) -> Duration {
        self.fence_ttl / 2
    }
}

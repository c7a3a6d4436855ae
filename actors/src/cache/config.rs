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
}

//! `[cache]` in the configuration.

use std::time::Duration;

use crate::validate::{ConfigErrors, Validate};
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

/// Most entries of the in-process tier (a few hundred bytes each).
pub const MAX_LOCAL_ENTRIES: u64 = 10_000_000;

/// Both lifetimes are positive, the tier is bounded, the tracking
/// connection is checked at a positive interval. (That a fence outlives two
/// call timeouts is the system's rule: see `SystemConfig`.)
impl Validate for CacheConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            !self.ttl.is_zero() && !self.negative_ttl.is_zero(),
            "ttl",
            "both cache.ttl and cache.negative_ttl must be positive",
        );
        errors.ensure(
            self.local_entries <= MAX_LOCAL_ENTRIES,
            "local_entries",
            format!("must be at most {MAX_LOCAL_ENTRIES} (0 turns the tier off)"),
        );
        errors.ensure(
            !self.tracking_check.is_zero(),
            "tracking_check",
            "must be positive",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::refused_after;

    fn config() -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            local_entries: 10_000,
            local_strict: false,
            fence_ttl: Duration::from_secs(30),
            tracking_check: Duration::from_secs(1),
        }
    }

    #[test]
    fn cache_lifetimes_are_positive_and_the_tier_is_bounded() {
        assert!(refused_after(config(), |_| {}).is_empty());
        assert_eq!(
            refused_after(config(), |c| c.local_entries = MAX_LOCAL_ENTRIES + 1),
            ["local_entries"]
        );
        for ok in [MAX_LOCAL_ENTRIES, 0] {
            assert!(refused_after(config(), |c| c.local_entries = ok).is_empty());
        }
        assert_eq!(
            refused_after(config(), |c| c.tracking_check = Duration::ZERO),
            ["tracking_check"]
        );
        assert!(
            refused_after(config(), |c| c.tracking_check = Duration::from_millis(1)).is_empty()
        );
        assert_eq!(
            refused_after(config(), |c| c.negative_ttl = Duration::ZERO),
            ["ttl"]
        );
        assert_eq!(refused_after(config(), |c| c.ttl = Duration::ZERO), ["ttl"]);
    }
}

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
    /// How long an invalidation's fence lives in Redis.
    #[serde(with = "humantime_serde")]
    pub fence_ttl: Duration,
    /// How long one renewal lets an instance serve from its tier, and the
    /// longest a write waits for an instance that does not acknowledge its
    /// invalidation (see [`Self::ack_bound`]).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl CacheConfig {
    /// The oldest a load may be and still store what it read: half the
    /// fence's life, so the fence it was checked against cannot have expired
    /// (and a newer one come and gone) in between.
    pub fn fill_deadline(&self) -> Duration {
        self.fence_ttl / 2
    }

    /// How often a lease is renewed (and a lost subscription re-made): four
    /// renewals per lease, so one late or lost renewal does not lapse it.
    pub fn renew_every(&self) -> Duration {
        self.lease / 4
    }

    /// The longest a write waits for the acknowledgements of its
    /// invalidation: one lease from the fan-out's reply, plus a margin for
    /// the clocks' rates and the timers' slack (an eighth, at least 20 ms).
    pub fn ack_bound(&self) -> Duration {
        self.lease + (self.lease / 8).max(Duration::from_millis(20))
    }
}

/// The shortest lease: a renewal every quarter of it must fit a round trip
/// on a loaded machine.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

/// Most entries of the in-process tier (a few hundred bytes each).
pub const MAX_LOCAL_ENTRIES: u64 = 10_000_000;

/// Both lifetimes are positive, the tier is bounded, a lease leaves room
/// for its renewals. (That a fence outlives two call timeouts, and a write's
/// wait for acknowledgements fits in one, are the system's rules: see
/// `SystemConfig`.)
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
            self.lease >= MIN_LEASE,
            "lease",
            format!("must be at least {}", humantime::format_duration(MIN_LEASE)),
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
            fence_ttl: Duration::from_secs(30),
            lease: Duration::from_secs(2),
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
            refused_after(config(), |c| c.lease = MIN_LEASE - Duration::from_millis(1)),
            ["lease"]
        );
        assert!(refused_after(config(), |c| c.lease = MIN_LEASE).is_empty());
        assert_eq!(
            refused_after(config(), |c| c.negative_ttl = Duration::ZERO),
            ["ttl"]
        );
        assert_eq!(refused_after(config(), |c| c.ttl = Duration::ZERO), ["ttl"]);
    }

    #[test]
    fn a_write_waits_one_lease_and_a_margin_renewed_four_times_per_lease() {
        let config = config();
        assert_eq!(config.renew_every(), Duration::from_millis(500));
        assert_eq!(config.ack_bound(), Duration::from_millis(2250));
        let short = CacheConfig {
            lease: MIN_LEASE,
            ..config
        };
        assert_eq!(short.ack_bound(), MIN_LEASE + Duration::from_millis(20));
    }
}

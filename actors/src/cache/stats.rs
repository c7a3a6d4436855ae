//! [`CacheStats`]: the cache's counters and its degraded flag.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::striped::Striped;

/// Counters and the degraded flag, shared with readiness and metrics. The
/// ones every hit bumps are [`Striped`] (no cache line shared between the
/// cores serving hits).
#[derive(Default)]
pub struct CacheStats {
    /// Every hit: the tier's and Redis's.
    pub hits: Striped,
    pub misses: AtomicU64,
    /// Profile loads from the source (one per single-flight group).
    pub loads: AtomicU64,
    pub sets: AtomicU64,
    /// Fills refused: the key changed (an invalidation) since the load looked.
    pub fills_refused: AtomicU64,
    pub invalidations: AtomicU64,
    /// Redis commands that failed or timed out.
    pub errors: AtomicU64,
    /// The in-process tier: reads it answered, reads it did not (while
    /// served), ids invalidated by a write, flushes (a subscription lost or
    /// made).
    pub local_hits: Striped,
    pub local_misses: Striped,
    pub local_invalidations: AtomicU64,
    pub local_flushes: AtomicU64,
    /// Entries in the tier, as of the subscription task's last renewal.
    pub local_size: AtomicU64,
    /// Invalidations this instance published to the fleet.
    pub fanouts: AtomicU64,
    /// Acknowledgements its writes waited for (one per instance holding a
    /// lease, each write).
    pub acks_awaited: AtomicU64,
    /// Writes that waited out the bound (an instance did not acknowledge).
    pub lease_waits: AtomicU64,
    /// Leases lost: the subscription dropped, or a renewal came too late.
    pub lease_losses: AtomicU64,
    degraded: AtomicBool,
    tracking: AtomicBool,
}

impl CacheStats {
    /// Whether the last Redis command failed.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Whether the in-process tier is served (it held a lease at the last
    /// renewal, and its subscription is up).
    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    pub(super) fn set_tracking(&self, on: bool) {
        self.tracking.store(on, Ordering::Relaxed);
    }

    pub(super) fn redis_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "cache", "redis answers again; cache recovered");
        }
    }

    pub(super) fn redis_failed(&self, err: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "cache", error = %err, "redis unavailable; serving from the source (cache degraded)");
        }
    }
}

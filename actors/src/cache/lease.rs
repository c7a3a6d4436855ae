//! [`Lease`]: how long the in-process tier may still be served without
//! hearing from Redis again.
//!
//! A lease is granted by a renewal round trip on the subscription connection
//! (the one that delivers invalidations) and runs from when that renewal was
//! **sent**, on the monotonic clock. Redis processed the renewal after it
//! was sent, so every invalidation it published before that arrived ahead of
//! the reply and was applied before the lease was granted; and a write
//! published after it waits (at most one lease from its own reply, which
//! came later still) for this instance's acknowledgement — by then this
//! lease has run out unless a later renewal, which followed the
//! invalidation on the same connection, extended it.
//!
//! A reader checks the lease with one clock read and one atomic load: no
//! round trip. A lost connection or a restart revokes it at once; a late
//! renewal lets it lapse by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Until when the tier may be served, as nanoseconds since `base`
/// (0: no lease).
pub(super) struct Lease {
    base: Instant,
    until: AtomicU64,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl Lease {
    /// Nanoseconds from `base` to `at` (0 before it: never valid).
    fn offset(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// A renewal sent at `sent` was answered: the lease runs until `sent +
    /// length`. Never shortens a later grant (renewals of one connection are
    /// answered in order, but a grant must not race a revocation back).
    pub(super) fn grant(&self, sent: Instant, length: Duration) {
        let until = self.offset(sent + length);
        self.until.fetch_max(until, Ordering::SeqCst);
    }

    /// No lease from now on (a lost connection, a restart).
    pub(super) fn revoke(&self) {
        self.until.store(0, Ordering::SeqCst);
    }

    /// Whether the lease holds at `now`.
    pub(super) fn holds_at(&self, now: Instant) -> bool {
        self.offset(now) < self.until.load(Ordering::SeqCst)
    }

    /// Whether the lease holds now.
    pub(super) fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(2);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lease_runs_from_the_renewal_sent_not_from_its_reply() {
        let lease = Lease::default();
        let sent = lease.base + Duration::from_secs(10);
        assert!(!lease.holds_at(sent), "no lease before a renewal");
        // The reply comes back 1.5 s late: only half a second is left.
        lease.grant(sent, LEASE);
        assert!(lease.holds_at(sent + Duration::from_millis(1500)));
        assert!(lease.holds_at(sent + LEASE - MS));
        assert!(!lease.holds_at(sent + LEASE), "expired at send + lease");
    }

    #[test]
    fn a_renewal_extends_and_an_older_one_answered_late_does_not_shorten() {
        let lease = Lease::default();
        let first = lease.base + Duration::from_secs(1);
        lease.grant(first, LEASE);
        let second = first + LEASE / 4;
        lease.grant(second, LEASE);
        assert!(lease.holds_at(first + LEASE));
        lease.grant(first, LEASE);
        assert!(lease.holds_at(second + LEASE - MS));
        assert!(!lease.holds_at(second + LEASE));
    }

    #[test]
    fn a_revoked_lease_holds_no_more_until_the_next_renewal() {
        let lease = Lease::default();
        let sent = lease.base + Duration::from_secs(1);
        lease.grant(sent, LEASE);
        lease.revoke();
        assert!(!lease.holds_at(sent + MS));
        lease.grant(sent + MS, LEASE);
        assert!(lease.holds_at(sent + MS));
    }
}

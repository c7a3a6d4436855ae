//! [`LocalTier`]: the in-process tier in front of Redis, its [`Lease`], and
//! the [`Generations`] that keep a slow fill from resurrecting what an
//! invalidation removed.
//!
//! The tier is served only while it holds a [`Lease`] (see
//! [`super::lease`] and [`super::subscription`]): every invalidation a write
//! published before the lease's renewal has then been applied here, and a
//! write published after it waits for this instance's acknowledgement (or
//! for the lease to run out). A hit is one clock read and a lookup: no
//! round trip. Without a lease the tier is bypassed; a lost subscription
//! also flushes it.
//!
//! **The race it guards.** A reader reads Redis on the shared connection,
//! then inserts what it read here. A write that lands in Redis after that
//! GET was answered publishes an invalidation to the subscription, which
//! may be processed *before* the reader's insert: the insert would then keep
//! the old value with nothing left to remove it. So a reader takes a
//! [`Guard`] (the generation of its id's stripe and the tier's epoch) before
//! its GET and inserts only if both are unchanged, checking again after the
//! insert (an invalidation bumps first, then removes; whichever of the two
//! checks it falls behind, the entry goes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;

use super::config::CacheConfig;
use super::fanout::Fanout;
use super::lease::Lease;
use super::source::ProfileJson;
use super::stats::CacheStats;
use crate::store::RedisStore;

/// Stripes of per-id generations: an invalidation of one id spoils the
/// guards of ids that share its stripe (1/STRIPES of them), not all.
const STRIPES: usize = 256;

/// Invalidation counters: one epoch for flushes, one per stripe of ids.
pub(super) struct Generations {
    epoch: AtomicU64,
    stripes: Box<[AtomicU64]>,
}

/// What a reader saw before its Redis GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Guard {
    epoch: u64,
    stripe: usize,
    generation: u64,
}

impl Default for Generations {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Generations {
    /// `id`'s stripe: its random and counter bytes (the timestamp bytes are
    /// the same for ids made in one second).
    fn stripe(id: &ObjectId) -> usize {
        let bytes = id.bytes();
        (usize::from(bytes[11]) ^ usize::from(bytes[8]).rotate_left(3)) % STRIPES
    }

    pub(super) fn guard(&self, id: &ObjectId) -> Guard {
        let stripe = Self::stripe(id);
        Guard {
            epoch: self.epoch.load(Ordering::SeqCst),
            stripe,
            generation: self.stripes[stripe].load(Ordering::SeqCst),
        }
    }

    /// Whether nothing that could touch the guard's id happened since.
    pub(super) fn unchanged(&self, guard: &Guard) -> bool {
        self.epoch.load(Ordering::SeqCst) == guard.epoch
            && self.stripes[guard.stripe].load(Ordering::SeqCst) == guard.generation
    }

    pub(super) fn bump(&self, id: &ObjectId) {
        self.stripes[Self::stripe(id)].fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// A cached profile (`None`: a tombstone) and until when it may be served
/// here: the TTL its Redis copy was stored with, from the insert. (Expiry
/// is no matter of coherence: every change of a profile is an
/// invalidation.) Checked on read with the clock read the lease check made;
/// an expired entry is a miss, and is replaced by the read-through's insert
/// or evicted by the bound.
#[derive(Clone)]
struct Entry {
    profile: Option<ProfileJson>,
    expires: Instant,
}

/// The tier's map: sharded, bounded by entry count (S3-FIFO eviction), a
/// read is a shard's read lock, a hash probe and a reference bit — no
/// read buffer, frequency sketch or timer wheel to feed (moka's read path,
/// most of what a hit cost in the profile: `docs/performance.md`).
type Map = quick_cache::sync::Cache<ObjectId, Entry>;

/// The in-process tier, shared by the readers, the writers, the
/// subscription task, and every incarnation of the CacheActor.
pub(crate) struct LocalTier {
    /// `None`: the tier is off (`cache.local_entries = 0`, or a cluster).
    entries: Option<Map>,
    /// Until when the tier may be served.
    lease: Lease,
    /// How long a renewal lets it be served.
    lease_length: Duration,
    /// The subscription task that may grant or revoke the lease: the latest
    /// to [`claim`](Self::claim) it (an aborted task of an earlier
    /// incarnation of the actor may end after the next one started).
    owner: AtomicU64,
    /// This instance's writes waiting for acknowledgements.
    pub(super) fanout: Fanout,
    generations: Generations,
    stats: Arc<CacheStats>,
}

impl LocalTier {
    /// The tier for a cache on `redis` as `config` says: off on a Redis
    /// Cluster (see `docs/cache.md`: the fan-out's order holds on one node).
    pub(crate) fn shared(
        config: &CacheConfig,
        redis: &RedisStore,
        stats: &Arc<CacheStats>,
    ) -> Arc<Self> {
        let capacity = if redis.is_cluster() {
            0
        } else {
            config.local_entries
        };
        let mut tier = Self::new(capacity, Arc::clone(stats));
        tier.lease_length = config.lease;
        Arc::new(tier)
    }

    /// A tier of `capacity` entries (0: off) with leases of 2 s.
    pub(super) fn new(capacity: u64, stats: Arc<CacheStats>) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let entries = (capacity > 0).then(|| Map::new(capacity));
        Self {
            entries,
            lease: Lease::default(),
            lease_length: Duration::from_secs(2),
            owner: AtomicU64::new(0),
            fanout: Fanout::default(),
            generations: Generations::default(),
            stats,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub(super) fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Whether the tier is served now (on, and its lease holds).
    pub(super) fn serving(&self) -> bool {
        self.enabled() && self.lease.holds()
    }

    /// `id`'s entry, if the tier is served and holds one unexpired.
    /// Counted. One clock read serves the lease and the entry's expiry.
    pub(super) fn get(&self, id: &ObjectId) -> Option<Option<ProfileJson>> {
        let entries = self.entries.as_ref()?;
        let now = Instant::now();
        if !self.lease.holds_at(now) {
            return None;
        }
        let found = entries
            .get(id)
            .filter(|entry| now < entry.expires)
            .map(|entry| entry.profile);
        let counter = match found {
            Some(_) => &self.stats.local_hits,
            None => &self.stats.local_misses,
        };
        counter.inc();
        found
    }

    /// Taken before the Redis GET whose answer may be inserted.
    pub(super) fn guard(&self, id: &ObjectId) -> Guard {
        self.generations.guard(id)
    }

    /// Keep what Redis answered for `id`, unless the tier is bypassed or
    /// something invalidated `id` since `guard` was taken.
    pub(super) fn insert(
        &self,
        id: ObjectId,
        guard: &Guard,
        profile: Option<ProfileJson>,
        ttl: Duration,
    ) {
        let Some(entries) = self.entries.as_ref().filter(|_| self.serving()) else {
            return;
        };
        if !self.generations.unchanged(guard) {
            return;
        }
        // A TTL too long for the clock: as good as never (the bound evicts).
        let Some(expires) = Instant::now().checked_add(ttl) else {
            return;
        };
        entries.insert(id, Entry { profile, expires });
        // An invalidation between the check and the insert bumped before it
        // removed: if it removed before the insert, this check sees its bump.
        if !self.generations.unchanged(guard) || !self.serving() {
            entries.remove(&id);
        }
    }

    /// A write says `id` changed.
    pub(super) fn invalidate(&self, id: &ObjectId) {
        self.generations.bump(id);
        if let Some(entries) = &self.entries {
            entries.remove(id);
        }
        self.stats
            .local_invalidations
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Forget everything (a subscription lost or made, an unreadable
    /// invalidation).
    pub(super) fn flush(&self) {
        self.generations.bump_all();
        if let Some(entries) = &self.entries {
            entries.clear();
        }
        self.stats.local_flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Make the calling subscription task the tier's owner; its session.
    pub(super) fn claim(&self) -> u64 {
        let session = self.owner.fetch_add(1, Ordering::SeqCst) + 1;
        self.unsubscribed(session);
        session
    }

    /// Whether `session` is the tier's owner now.
    pub(super) fn owns(&self, session: u64) -> bool {
        self.owner.load(Ordering::SeqCst) == session
    }

    /// Subscribed as `token`: start from an empty tier (what was read
    /// before may have changed unannounced; the epoch bump spoils the
    /// guards taken before), served from the first renewal. Ignored unless
    /// `session` owns the tier.
    pub(super) fn subscribed(&self, session: u64, token: Arc<str>) {
        if !self.owns(session) {
            return;
        }
        self.flush();
        self.fanout.set_token(Some(token));
    }

    /// A renewal sent at `sent` was answered and what came before it is
    /// applied: served until `sent` + one lease. A renewal that finds the
    /// lease lapsed (it came late) counts a lease loss. Ignored unless
    /// `session` owns the tier.
    pub(super) fn renewed(&self, session: u64, sent: Instant) {
        if !self.owns(session) {
            return;
        }
        if self.stats.tracking() && !self.lease.holds() {
            self.stats.lease_losses.fetch_add(1, Ordering::Relaxed);
        }
        self.lease.grant(sent, self.lease_length);
        self.stats.set_tracking(self.serving());
        self.stats.local_size.store(self.len(), Ordering::Relaxed);
    }

    /// The subscription is lost: revoke the lease, then flush (in this
    /// order, so no reader serves or keeps an entry once this returns).
    /// Ignored unless `session` owns the tier.
    pub(super) fn unsubscribed(&self, session: u64) {
        if !self.owns(session) {
            return;
        }
        if self.stats.tracking() {
            self.stats.lease_losses.fetch_add(1, Ordering::Relaxed);
        }
        self.lease.revoke();
        self.fanout.set_token(None);
        self.stats.set_tracking(false);
        self.flush();
    }

    /// Entries held now (expired ones included until replaced or evicted).
    pub(super) fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| e.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> LocalTier {
        let tier = LocalTier::new(100, Arc::default());
        up(&tier, tier.claim());
        tier
    }

    /// Subscribed, and a renewal sent just now answered.
    fn up(tier: &LocalTier, session: u64) {
        tier.subscribed(session, "t".into());
        tier.renewed(session, Instant::now());
    }

    fn profile(name: &str) -> Option<ProfileJson> {
        Some(ProfileJson(format!(r#"{{"name":"{name}"}}"#).into()))
    }

    const TTL: Duration = Duration::from_secs(60);

    fn get(tier: &LocalTier, id: &ObjectId) -> Option<Option<ProfileJson>> {
        tier.get(id)
    }

    #[test]
    fn an_insert_after_an_invalidation_of_its_id_is_refused() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.invalidate(&id); // the push for a write after the GET
        tier.insert(id, &guard, profile("old"), TTL);
        assert_eq!(get(&tier, &id), None);
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("new"), TTL);
        assert_eq!(get(&tier, &id), Some(profile("new")));
    }

    #[test]
    fn a_flush_spoils_every_guard_and_other_stripes_are_untouched() {
        let tier = tier();
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let generations = &tier.generations;
        let guard = generations.guard(&a);
        tier.flush();
        assert!(!generations.unchanged(&guard));
        let guard_a = generations.guard(&a);
        let other = (0..1000)
            .map(|_| ObjectId::new())
            .find(|o| Generations::stripe(o) != Generations::stripe(&a))
            .unwrap();
        generations.bump(&other);
        assert!(generations.unchanged(&guard_a), "another stripe");
        generations.bump(&a);
        assert!(!generations.unchanged(&guard_a));
        let _ = b;
    }

    #[test]
    fn nothing_is_served_or_kept_while_unsubscribed() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("a"), TTL);
        assert_eq!(get(&tier, &id), Some(profile("a")));
        let session = tier.owner.load(Ordering::SeqCst);
        tier.unsubscribed(session);
        assert_eq!(get(&tier, &id), None, "bypassed");
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("b"), TTL);
        up(&tier, session);
        assert_eq!(get(&tier, &id), None, "flushed, and nothing kept meanwhile");
    }

    #[test]
    fn a_guard_taken_before_the_subscription_came_back_cannot_insert() {
        let tier = LocalTier::new(100, Arc::default());
        let id = ObjectId::new();
        let guard = tier.guard(&id); // GET sent while unsubscribed
        up(&tier, tier.claim());
        tier.insert(id, &guard, profile("unannounced"), TTL);
        assert_eq!(get(&tier, &id), None);
    }

    #[test]
    fn an_entry_past_its_ttl_is_a_miss() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("old"), Duration::ZERO);
        assert_eq!(get(&tier, &id), None, "expired as it was kept");
        assert_eq!(
            (tier.stats.local_hits.get(), tier.stats.local_misses.get()),
            (0, 1)
        );
        // The read-through's insert replaces it.
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("new"), TTL);
        assert_eq!(get(&tier, &id), Some(profile("new")));
        assert_eq!(tier.stats.local_hits.get(), 1);
    }

    #[test]
    fn the_tier_holds_at_most_its_capacity() {
        let tier = tier();
        let ids: Vec<ObjectId> = (0..10_000).map(|_| ObjectId::new()).collect();
        for id in &ids {
            let guard = tier.guard(id);
            tier.insert(*id, &guard, profile("x"), TTL);
        }
        assert!(tier.len() <= 100, "{} entries", tier.len());
        let held = ids.iter().filter(|id| get(&tier, id).is_some()).count();
        assert!((1..=100).contains(&held), "{held} served");
    }

    #[test]
    fn tombstones_are_kept_and_a_disabled_tier_holds_nothing() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.insert(id, &guard, None, TTL);
        assert_eq!(get(&tier, &id), Some(None));
        let off = LocalTier::new(0, Arc::default());
        up(&off, off.claim());
        let guard = off.guard(&id);
        off.insert(id, &guard, profile("x"), TTL);
        assert_eq!((get(&off, &id), off.serving()), (None, false));
    }

    #[test]
    fn a_lapsed_lease_bypasses_the_tier_until_a_renewal_sent_later_answers() {
        let (tier, id) = (tier(), ObjectId::new());
        let session = tier.owner.load(Ordering::SeqCst);
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("a"), TTL);
        // A renewal answered long after it was sent: its lease has run out.
        let long_ago = Instant::now() - tier.lease_length - Duration::from_millis(1);
        tier.lease.revoke();
        tier.renewed(session, long_ago);
        assert_eq!(get(&tier, &id), None, "served on a lapsed lease");
        assert_eq!(tier.stats.lease_losses.load(Ordering::Relaxed), 1);
        // The connection was never lost: every invalidation still reached
        // the tier, so the next renewal serves what it holds.
        tier.renewed(session, Instant::now());
        assert_eq!(get(&tier, &id), Some(profile("a")));
    }

    #[test]
    fn a_superseded_subscription_task_can_no_longer_grant_or_revoke_the_lease() {
        let tier = LocalTier::new(100, Arc::default());
        let old = tier.claim();
        up(&tier, old);
        let new = tier.claim(); // the restarted actor's task
        assert!(!tier.serving(), "claiming revokes the lease");
        up(&tier, new);
        tier.unsubscribed(old); // the aborted task's guard, dropped late
        assert!(tier.serving());
        tier.unsubscribed(new);
        up(&tier, old);
        assert!(!tier.serving());
    }
}

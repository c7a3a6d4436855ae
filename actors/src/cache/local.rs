//! [`LocalTier`]: the in-process tier in front of Redis, and the
//! [`Generations`] that keep a slow fill from resurrecting what an
//! invalidation removed.
//!
//! The tier is served only while the tracking connection is established
//! (see [`super::tracking`]): Redis then pushes an invalidation for every
//! write under the profile keys, to every instance. While it is not, the
//! tier is empty and bypassed, so nothing that might be stale is served.
//!
//! **The read barrier** (`cache.local_strict`, on by default). A push is
//! asynchronous: Redis sends it before it answers the write, but the reader
//! instance may take a client's next request before it has read the push.
//! So a strict hit first waits for a [`Barrier`]: the tracking task PINGs on
//! its connection, and since Redis answers in order, every push sent before
//! the PING was processed has arrived before the PONG; the task applies them
//! and only then lets the waiting reads through. A PING started after a read
//! arrived covers every write acknowledged before it; one PING serves every
//! read waiting (group commit), and it runs alongside the lookup counter's
//! round trip, so a strict hit costs no more latency than before, and Redis
//! one shared PING instead of a GET per read.
//!
//! **The race it guards.** A reader reads Redis on the shared connection,
//! then inserts what it read here. A write that lands in Redis after that
//! GET was answered pushes an invalidation on the tracking connection, which
//! may be processed *before* the reader's insert: the insert would then keep
//! the old value with nothing left to remove it. So a reader takes a
//! [`Guard`] (the generation of its id's stripe and the tier's epoch) before
//! its GET and inserts only if both are unchanged, checking again after the
//! insert (an invalidation bumps first, then removes; whichever of the two
//! checks it falls behind, the entry goes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use tokio::sync::{watch, Notify};

use super::config::CacheConfig;
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

/// Where the tracking task stands with the reads' barrier.
#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// The last sync whose pushes are all applied.
    through: u64,
    /// Whether tracking is established (a wait ends, failed, when not).
    up: bool,
}

/// Reads waiting for the pushes sent before they arrived (see the module's
/// doc): they ask, the tracking task syncs and tells.
#[derive(Default)]
pub(super) struct Barrier {
    /// The last sync started.
    started: AtomicU64,
    synced: watch::Sender<Synced>,
    wanted: Notify,
}

impl Barrier {
    /// Wait, at most `limit`, until every push Redis sent before now has
    /// been applied; `false` if that could not be confirmed.
    pub(super) async fn pass(&self, limit: Duration) -> bool {
        let mut synced = self.synced.subscribe();
        // A sync that starts after this load: its PING follows this read.
        let need = self.started.load(Ordering::SeqCst) + 1;
        self.wanted.notify_one();
        let wait = synced.wait_for(|s| s.through >= need || !s.up);
        let passed = match tokio::time::timeout(limit, wait).await {
            Ok(Ok(s)) => s.up && s.through >= need,
            _ => false,
        };
        passed
    }

    /// Resolves when a read waits for a sync.
    pub(super) async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// The tracking task begins a sync (before its PING).
    pub(super) fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Every push sent before sync `id`'s PING is applied.
    pub(super) fn passed(&self, id: u64) {
        self.synced.send_modify(|s| s.through = s.through.max(id));
    }

    fn up(&self, up: bool) {
        self.synced.send_modify(|s| s.up = up);
    }
}

/// A cached profile (`None`: a tombstone) and how long it may live here.
#[derive(Clone)]
struct Entry {
    profile: Option<ProfileJson>,
    ttl: Duration,
}

/// Each entry lives for the TTL its Redis copy was stored with (Redis's
/// own expiry of that copy pushes an invalidation too).
struct ByTtl;

impl moka::Expiry<ObjectId, Entry> for ByTtl {
    fn expire_after_create(&self, _: &ObjectId, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// The in-process tier, shared by the readers and the tracking task, and
/// by every incarnation of the CacheActor.
pub(crate) struct LocalTier {
    /// `None`: the tier is off (`cache.local_entries = 0`, or a cluster).
    entries: Option<moka::sync::Cache<ObjectId, Entry>>,
    /// Whether Redis's invalidations reach this tier now.
    tracking: AtomicBool,
    /// The tracking task that may turn `tracking` on or off: the latest to
    /// [`claim`](Self::claim) it (an aborted task of an earlier incarnation
    /// of the actor may end after the next one started).
    owner: AtomicU64,
    /// Whether a hit waits for the [`Barrier`].
    strict: bool,
    pub(super) barrier: Barrier,
    generations: Generations,
    stats: Arc<CacheStats>,
}

impl LocalTier {
    /// The tier for a cache on `redis` as `config` says: off on a Redis
    /// Cluster, where BCAST tracking covers only the node it is sent to.
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
        tier.strict = config.local_strict;
        Arc::new(tier)
    }

    /// A strict tier of `capacity` entries (0: off).
    pub(super) fn new(capacity: u64, stats: Arc<CacheStats>) -> Self {
        let entries = (capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByTtl)
                .build()
        });
        Self {
            entries,
            tracking: AtomicBool::new(false),
            owner: AtomicU64::new(0),
            strict: true,
            barrier: Barrier::default(),
            generations: Generations::default(),
            stats,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Whether the tier is served now (on, and tracked).
    pub(super) fn serving(&self) -> bool {
        self.enabled() && self.tracking.load(Ordering::SeqCst)
    }

    /// Whether the tier is served and holds `id` now: if not, it will not
    /// after a barrier either (a barrier only removes). Counts a miss.
    pub(super) fn holds(&self, id: &ObjectId) -> bool {
        let Some(entries) = self.entries.as_ref().filter(|_| self.serving()) else {
            return false;
        };
        let holds = entries.contains_key(id);
        if !holds {
            self.stats.local_misses.fetch_add(1, Ordering::Relaxed);
        }
        holds
    }

    /// `id`'s entry, once every invalidation sent before this call is
    /// applied (strict; waiting at most `limit`), if the tier is served and
    /// still holds one. Counted.
    pub(super) async fn get(&self, id: &ObjectId, limit: Duration) -> Option<Option<ProfileJson>> {
        if self.strict && !self.barrier.pass(limit).await {
            return None;
        }
        let entries = self.entries.as_ref().filter(|_| self.serving())?;
        let found = entries.get(id).map(|entry| entry.profile);
        let counter = match found {
            Some(_) => &self.stats.local_hits,
            None => &self.stats.local_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        entries.insert(id, Entry { profile, ttl });
        // An invalidation between the check and the insert bumped before it
        // removed: if it removed before the insert, this check sees its bump.
        if !self.generations.unchanged(guard) || !self.serving() {
            entries.invalidate(&id);
        }
    }

    /// Redis says `id` changed.
    pub(super) fn invalidate(&self, id: &ObjectId) {
        self.generations.bump(id);
        if let Some(entries) = &self.entries {
            entries.invalidate(id);
        }
        self.stats
            .local_invalidations
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Forget everything (a flush push, tracking lost or re-established).
    pub(super) fn flush(&self) {
        self.generations.bump_all();
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
        self.stats.local_flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Make the calling tracking task the tier's owner; its session.
    pub(super) fn claim(&self) -> u64 {
        let session = self.owner.fetch_add(1, Ordering::SeqCst) + 1;
        self.untracked(session);
        session
    }

    fn owns(&self, session: u64) -> bool {
        self.owner.load(Ordering::SeqCst) == session
    }

    /// Tracking is established: start serving from an empty tier (what was
    /// read before it may have changed unannounced; the epoch bump spoils
    /// the guards taken before). Ignored unless `session` owns the tier.
    pub(super) fn tracked(&self, session: u64) {
        if !self.owns(session) {
            return;
        }
        self.flush();
        self.tracking.store(true, Ordering::SeqCst);
        self.barrier.up(true);
        self.stats.set_tracking(true);
    }

    /// Tracking is lost: stop serving, then flush (in this order, so no
    /// reader serves or keeps an entry once this returns). Ignored unless
    /// `session` owns the tier.
    pub(super) fn untracked(&self, session: u64) {
        if !self.owns(session) {
            return;
        }
        self.tracking.store(false, Ordering::SeqCst);
        self.barrier.up(false);
        self.stats.set_tracking(false);
        self.flush();
    }

    /// Entries held now (approximate: moka counts lazily).
    pub(super) fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| e.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> LocalTier {
        let tier = lax(LocalTier::new(100, Arc::default()));
        tier.tracked(tier.claim());
        tier
    }

    fn profile(name: &str) -> Option<ProfileJson> {
        Some(ProfileJson(format!(r#"{{"name":"{name}"}}"#).into()))
    }

    const TTL: Duration = Duration::from_secs(60);

    /// The tier without its barrier (no tracking task in these tests).
    fn lax(mut tier: LocalTier) -> LocalTier {
        tier.strict = false;
        tier
    }

    fn get(tier: &LocalTier, id: &ObjectId) -> Option<Option<ProfileJson>> {
        futures::executor::block_on(tier.get(id, Duration::ZERO))
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
    fn nothing_is_served_or_kept_while_untracked() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("a"), TTL);
        assert_eq!(get(&tier, &id), Some(profile("a")));
        let session = tier.owner.load(Ordering::SeqCst);
        tier.untracked(session);
        assert_eq!(get(&tier, &id), None, "bypassed");
        let guard = tier.guard(&id);
        tier.insert(id, &guard, profile("b"), TTL);
        tier.tracked(session);
        assert_eq!(get(&tier, &id), None, "flushed, and nothing kept meanwhile");
    }

    #[test]
    fn a_guard_taken_before_tracking_came_back_cannot_insert() {
        let tier = lax(LocalTier::new(100, Arc::default()));
        let id = ObjectId::new();
        let guard = tier.guard(&id); // GET sent while untracked
        tier.tracked(tier.claim());
        tier.insert(id, &guard, profile("unannounced"), TTL);
        assert_eq!(get(&tier, &id), None);
    }

    #[test]
    fn tombstones_are_kept_and_a_disabled_tier_holds_nothing() {
        let (tier, id) = (tier(), ObjectId::new());
        let guard = tier.guard(&id);
        tier.insert(id, &guard, None, TTL);
        assert_eq!(get(&tier, &id), Some(None));
        let off = lax(LocalTier::new(0, Arc::default()));
        off.tracked(off.claim());
        let guard = off.guard(&id);
        off.insert(id, &guard, profile("x"), TTL);
        assert_eq!((get(&off, &id), off.serving()), (None, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_passes_the_barrier_only_after_a_sync_that_started_after_it() {
        let tier = Arc::new(LocalTier::new(100, Arc::default()));
        tier.tracked(tier.claim());
        let barrier = &tier.barrier;
        let early = barrier.start(); // a sync in flight when the read arrives
        let read = {
            let tier = Arc::clone(&tier);
            tokio::spawn(async move { tier.barrier.pass(Duration::from_secs(1)).await })
        };
        barrier.wanted().await; // the read asked
        barrier.passed(early);
        tokio::task::yield_now().await;
        assert!(!read.is_finished(), "passed on a sync that began before it");
        let id = barrier.start();
        barrier.passed(id);
        assert!(read.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_barrier_fails_when_tracking_is_lost_or_silent() {
        let tier = Arc::new(LocalTier::new(100, Arc::default()));
        let session = tier.claim();
        tier.tracked(session);
        assert!(
            !tier.barrier.pass(Duration::from_millis(50)).await,
            "no sync: timed out"
        );
        let read = {
            let tier = Arc::clone(&tier);
            tokio::spawn(async move { tier.barrier.pass(Duration::from_secs(60)).await })
        };
        tier.barrier.wanted().await;
        tier.untracked(session);
        assert!(!read.await.unwrap());
    }

    #[test]
    fn a_superseded_tracking_task_can_no_longer_turn_the_tier_on_or_off() {
        let tier = lax(LocalTier::new(100, Arc::default()));
        let old = tier.claim();
        tier.tracked(old);
        let new = tier.claim(); // the restarted actor's task
        assert!(!tier.serving(), "claiming starts untracked");
        tier.tracked(new);
        tier.untracked(old); // the aborted task's guard, dropped late
        assert!(tier.serving());
        tier.tracked(old);
        tier.untracked(new);
        assert!(!tier.serving());
    }
}

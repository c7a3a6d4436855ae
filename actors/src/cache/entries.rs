//! The cached entries in Redis: their keys, how a value is encoded and
//! decoded, and the load-and-fill and fence that the actor's tasks run.
//!
//! **Fences.** An invalidation does not delete the key: it overwrites it
//! with a fence (`fence:<random>`, for `cache.fence_ttl`). A load notes what
//! the key held before it read the source (nothing, or a fence) and stores
//! its result through [`FILL`] only if the key still holds exactly that. A
//! write acknowledged after the load looked has replaced the key with a new
//! fence, so a load that read the old profile — on this instance or any
//! other — can never store it over the invalidation. A load older than half
//! the fence's life stores nothing (its fence could have expired and the
//! key look untouched).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;

use super::acks::Outcome;
use super::config::CacheConfig;
use super::fanout::Channels;
use super::local::LocalTier;
use super::source::{Lookup, ProfileJson, ProfileSource};
use super::stats::CacheStats;
use crate::store::{RedisStore, StoreError};

/// What is stored for an id the source does not know.
const TOMBSTONE: &str = "null";
/// What an invalidation stores (followed by a random token).
const FENCE: &str = "fence:";

/// Store `ARGV[3]` for `ARGV[4]` ms only if the key holds what the load saw
/// (`ARGV[1]` = 1: the value `ARGV[2]`; 0: no value). 1 if stored.
const FILL: &str = r"
local current = redis.call('GET', KEYS[1])
local expected = false
if ARGV[1] == '1' then expected = ARGV[2] end
if current == expected then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
";

/// What a key held when it was read, other than a profile or tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seen {
    /// No value.
    Nothing,
    /// A fence (or a value this cache never writes).
    Marker(Arc<str>),
    /// Redis did not answer: a load stores nothing.
    Unknown,
}

/// A profile key's value, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A hit: the profile, or `None` for a tombstone.
    Profile(Option<ProfileJson>),
    /// Nothing servable: load, and fill only if this is still there.
    Empty(Seen),
}

/// Decode what `GET` answered.
pub(super) fn decode(value: Option<String>) -> Stored {
    let Some(value) = value else {
        return Stored::Empty(Seen::Nothing);
    };
    // Only this cache writes these keys: a profile's JSON, the tombstone or
    // a fence. Anything else is not served (and only replaced by a fill
    // that saw it).
    if value == TOMBSTONE {
        Stored::Profile(None)
    } else if value.starts_with('{') {
        Stored::Profile(Some(ProfileJson(value.into())))
    } else {
        Stored::Empty(Seen::Marker(value.into()))
    }
}

/// The value to store for a loaded profile, and for how long.
pub(super) fn encode(profile: &Option<ProfileJson>, config: &CacheConfig) -> (String, Duration) {
    (encoded(profile), ttl(profile, config))
}

fn encoded(profile: &Option<ProfileJson>) -> String {
    match profile {
        Some(json) => json.0.to_string(),
        None => TOMBSTONE.to_string(),
    }
}

fn ttl(profile: &Option<ProfileJson>, config: &CacheConfig) -> Duration {
    match profile {
        Some(_) => config.ttl,
        None => config.negative_ttl,
    }
}

/// A new fence: random, so no two invalidations leave the same value.
fn fence() -> String {
    format!("{FENCE}{}", uuid::Uuid::new_v4().simple())
}

/// What the actor, its tasks and its clients share.
pub(super) struct Entries {
    pub(super) redis: RedisStore,
    source: Arc<dyn ProfileSource>,
    config: CacheConfig,
    pub(super) stats: Arc<CacheStats>,
    pub(super) local: Arc<LocalTier>,
    channels: Channels,
}

impl Entries {
    pub(super) fn new(
        redis: RedisStore,
        source: Arc<dyn ProfileSource>,
        config: CacheConfig,
        stats: Arc<CacheStats>,
        local: Arc<LocalTier>,
    ) -> Self {
        Self {
            channels: Channels::new(&redis),
            redis,
            source,
            config,
            stats,
            local,
        }
    }

    /// The key of `id`'s cached profile. `v3`: since v3 a key may hold a
    /// fence, which a v2 instance would overwrite with a plain SET (and so
    /// undo an invalidation): the new namespace keeps a fleet being upgraded
    /// from sharing keys across the two formats. (v2: the public profile lost
    /// its e-mail and age.) Change it again whenever what is stored changes.
    pub(super) fn key(&self, id: &ObjectId) -> String {
        self.redis.key(&format!("{}{id}", Self::NAMESPACE))
    }

    pub(super) const NAMESPACE: &'static str = "profile:v3:";

    /// The TTL `profile` is stored with.
    pub(super) fn ttl(&self, profile: &Option<ProfileJson>) -> Duration {
        ttl(profile, &self.config)
    }

    /// Decode what `GET key` answered; a hit is counted and logged.
    pub(super) fn read(&self, key: &str, value: Option<String>) -> Stored {
        let stored = decode(value);
        if let Stored::Profile(_) = stored {
            self.stats.hits.inc();
            tracing::info!(target: "cache", %key, "HIT");
        }
        stored
    }

    /// Load from the source and fill Redis with the result (errors are not
    /// stored) — unless Redis has a value by now.
    pub(super) async fn load(&self, id: ObjectId) -> Lookup {
        let key = self.key(&id);
        let seen = match self.recheck(&key).await {
            Stored::Profile(cached) => return Ok(cached),
            Stored::Empty(seen) => seen,
        };
        let started = Instant::now();
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let profile = self.source.public_profile(id).await?;
        if started.elapsed() < self.config.fill_deadline() {
            self.fill(&key, &seen, &profile).await;
        }
        Ok(profile)
    }

    /// Look in Redis once more before loading: what the fill compares with.
    /// (A reader looks in Redis in its own task and sends its miss to the
    /// actor; if its task is descheduled in between, the miss can reach the
    /// actor just after the load that stored the value landed, and would
    /// load it a second time.) Skipped while Redis is failing (the reader
    /// has just waited for it once).
    async fn recheck(&self, key: &str) -> Stored {
        if self.stats.degraded() {
            return Stored::Empty(Seen::Unknown);
        }
        match self.redis.run(redis::cmd("GET").arg(key)).await {
            Ok(value) => {
                self.stats.redis_ok();
                self.read(key, value)
            }
            Err(err) => {
                self.stats.redis_failed(&err);
                Stored::Empty(Seen::Unknown)
            }
        }
    }

    /// Store `profile` if the key still holds what the load saw.
    async fn fill(&self, key: &str, seen: &Seen, profile: &Option<ProfileJson>) {
        let (expected_set, expected) = match seen {
            Seen::Nothing => ("0", ""),
            Seen::Marker(value) => ("1", &**value),
            Seen::Unknown => return,
        };
        let (value, ttl) = encode(profile, &self.config);
        let fill = redis::cmd("EVAL")
            .arg(FILL)
            .arg(1)
            .arg(key)
            .arg(expected_set)
            .arg(expected)
            .arg(value)
            .arg(ttl.as_millis() as u64)
            .clone();
        match self.redis.run::<i64>(&fill).await {
            Ok(stored) => {
                self.stats.redis_ok();
                if stored == 1 {
                    self.stats.sets.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "cache", %key, ttl = %humantime::format_duration(ttl), "SET");
                } else {
                    self.stats.fills_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "cache", %key, "SET refused: invalidated while loading");
                }
            }
            Err(err) => self.stats.redis_failed(&err),
        }
    }

    /// Replace the key with a new fence (see the module's doc) and, on one
    /// Redis node, publish the invalidation in the same script and wait for
    /// every instance holding a lease to acknowledge it, at most
    /// [`CacheConfig::ack_bound`] (see [`super::fanout`]). On a cluster the
    /// fence alone (no instance has a tier there).
    pub(super) async fn invalidate(&self, id: &ObjectId) {
        let key = self.key(id);
        let fence_ms = self.config.fence_ttl.as_millis() as u64;
        if self.redis.is_cluster() {
            let set = redis::cmd("SET")
                .arg(&key)
                .arg(fence())
                .arg("PX")
                .arg(fence_ms)
                .clone();
            if self
                .fenced(&key, self.redis.run::<()>(&set).await)
                .is_some()
            {
                tracing::info!(target: "cache", %key, "INVALIDATE");
            }
            return;
        }
        let fanout = &self.local.fanout;
        // Opened before the publish: an acknowledgement may come back
        // before the script's own reply.
        let round = fanout.acks.open();
        let lease_ms = self.config.lease.as_millis() as u64;
        let script = fanout.invalidation(
            &self.channels,
            (&key, &fence(), fence_ms),
            (round.seq, id),
            lease_ms,
        );
        let Some(holders) = self.fenced(&key, self.redis.run::<Vec<String>>(&script).await) else {
            return;
        };
        let holders: Vec<Arc<str>> = holders.into_iter().map(Arc::from).collect();
        self.stats.fanouts.fetch_add(1, Ordering::Relaxed);
        self.stats
            .acks_awaited
            .fetch_add(holders.len() as u64, Ordering::Relaxed);
        match round.wait(&holders, self.config.ack_bound()).await {
            Outcome::All => {
                tracing::info!(target: "cache", %key, acks = holders.len(), "INVALIDATE")
            }
            Outcome::Missing(missing) => {
                self.stats.lease_waits.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "cache", %key, missing = missing.len(), "INVALIDATE: waited out a lease for instances that did not acknowledge");
            }
        }
    }

    /// What the fence's command answered; `None` (counted) if it failed:
    /// fail-open, the old value (if any) expires within the TTL, and the
    /// tiers of instances that lost Redis too lapse with their leases.
    fn fenced<T>(&self, key: &str, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.stats.redis_ok();
                Some(value)
            }
            Err(err) => {
                tracing::debug!(target: "cache", %key, error = %err, "INVALIDATE failed: no fence, no fan-out");
                self.stats.redis_failed(&err);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            local_entries: 10,
            fence_ttl: Duration::from_secs(30),
            lease: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_profile_and_a_tombstone_round_trip() {
        let json = ProfileJson(r#"{"id":"65f1c0ffee0000000000beef","name":"Ada"}"#.into());
        for profile in [Some(json), None] {
            let (value, _) = encode(&profile, &config());
            assert_eq!(decode(Some(value)), Stored::Profile(profile));
        }
    }

    #[test]
    fn a_tombstone_lives_for_the_negative_ttl() {
        let (value, ttl) = encode(&None, &config());
        assert_eq!((value.as_str(), ttl), ("null", Duration::from_secs(5)));
        let (_, ttl) = encode(&Some(ProfileJson("{}".into())), &config());
        assert_eq!(ttl, Duration::from_secs(60));
    }

    #[test]
    fn no_value_a_fence_or_a_foreign_one_is_a_miss() {
        assert_eq!(decode(None), Stored::Empty(Seen::Nothing));
        // A fence, or not written by this cache (an operator's SET, an old
        // format): a miss, whose fill replaces exactly that value.
        let fence = fence();
        for marker in [fence.as_str(), "", "true", "\"text\"", "[1]", "NULL", " {}"] {
            assert_eq!(
                decode(Some(marker.into())),
                Stored::Empty(Seen::Marker(marker.into())),
                "{marker:?}"
            );
        }
    }

    #[test]
    fn every_fence_is_new_and_is_never_served() {
        let (a, b) = (fence(), fence());
        assert_ne!(a, b);
        assert!(a.starts_with("fence:") && !a.starts_with('{') && a != TOMBSTONE);
    }

    /// The load race across instances, made deterministic: a source that
    /// hands over the profile as it was *before* a write whose invalidation
    /// (another instance's [`Entries`]) lands while it loads. Needs the
    /// Redis at `REDIS_URL` (as the API tests do).
    mod fence {
        use futures::future::BoxFuture;

        use super::*;
        use crate::cache::source::LoadError;

        /// Answers `old`, after `writer` (another instance) invalidated `id`
        /// if `racing`: the profile was read before the write landed.
        struct Racing {
            writer: Option<Arc<Entries>>,
            old: ProfileJson,
        }

        impl ProfileSource for Racing {
            fn public_profile(
                &self,
                id: ObjectId,
            ) -> BoxFuture<'static, Result<Option<ProfileJson>, LoadError>> {
                let (writer, old) = (self.writer.clone(), self.old.clone());
                Box::pin(async move {
                    if let Some(writer) = writer {
                        writer.invalidate(&id).await;
                    }
                    Ok(Some(old))
                })
            }
        }

        fn entries(redis: &RedisStore, writer: Option<Arc<Entries>>) -> Arc<Entries> {
            let stats = Arc::new(CacheStats::default());
            let old = ProfileJson(r#"{"name":"old"}"#.into());
            let local = Arc::new(LocalTier::new(0, Arc::clone(&stats)));
            let source = Arc::new(Racing { writer, old });
            Arc::new(Entries::new(redis.clone(), source, config(), stats, local))
        }

        fn redis() -> RedisStore {
            let url = std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
            let prefix = format!("test-fence-{}:", uuid::Uuid::new_v4().simple());
            RedisStore::new(&url, &prefix, Duration::from_secs(2)).unwrap()
        }

        async fn stored(redis: &RedisStore, entries: &Entries, id: &ObjectId) -> Option<String> {
            redis
                .run(redis::cmd("GET").arg(entries.key(id)))
                .await
                .unwrap()
        }

        #[tokio::test]
        async fn a_load_that_read_the_old_profile_cannot_store_it_over_the_fence() {
            let redis = redis();
            let writer = entries(&redis, None);
            let reader = entries(&redis, Some(Arc::clone(&writer)));
            // Nothing cached, then an earlier fence: the load sees either,
            // the write replaces it with a new fence while it loads.
            let (fresh, fenced) = (ObjectId::new(), ObjectId::new());
            writer.invalidate(&fenced).await;
            for id in [fresh, fenced] {
                let answered = reader.load(id).await.unwrap();
                assert_eq!(answered, Some(ProfileJson(r#"{"name":"old"}"#.into())));
                let left = stored(&redis, &reader, &id).await.unwrap();
                assert!(
                    left.starts_with(FENCE),
                    "the old profile was stored: {left}"
                );
            }
            let stats = &reader.stats;
            assert_eq!(stats.fills_refused.load(Ordering::Relaxed), 2);
            assert_eq!(stats.sets.load(Ordering::Relaxed), 0);
        }

        #[tokio::test]
        async fn a_load_with_no_write_meanwhile_is_stored_over_nothing_or_a_fence() {
            let redis = redis();
            let loader = entries(&redis, None);
            let (fresh, fenced) = (ObjectId::new(), ObjectId::new());
            loader.invalidate(&fenced).await;
            for id in [fresh, fenced] {
                loader.load(id).await.unwrap();
                let left = stored(&redis, &loader, &id).await;
                assert_eq!(left.as_deref(), Some(r#"{"name":"old"}"#));
            }
            assert_eq!(loader.stats.sets.load(Ordering::Relaxed), 2);
        }
    }
}

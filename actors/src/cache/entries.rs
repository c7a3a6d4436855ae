//! The cached entries in Redis: their keys, how a value is encoded and
//! decoded, and the load-and-store and delete that the actor's tasks run.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use super::config::CacheConfig;
use super::source::{Lookup, ProfileJson, ProfileSource};
use super::stats::CacheStats;
use crate::store::RedisStore;

/// What is stored for an id the source does not know.
const TOMBSTONE: &str = "null";

/// A cached value, decoded: `Some(profile)` or `None` for a tombstone.
/// `None` overall: no value, or one this cache never writes.
pub(super) fn decode(value: Option<String>) -> Option<Option<ProfileJson>> {
    let value = value?;
    // Only this cache writes these keys: a profile's JSON or the tombstone.
    if value == TOMBSTONE {
        Some(None)
    } else if value.starts_with('{') {
        Some(Some(ProfileJson(value.into())))
    } else {
        None
    }
}

/// The value to store for a loaded profile, and for how long.
pub(super) fn encode(profile: &Option<ProfileJson>, config: &CacheConfig) -> (String, Duration) {
    match profile {
        Some(json) => (json.0.to_string(), config.ttl),
        None => (TOMBSTONE.to_string(), config.negative_ttl),
    }
}

/// What the actor, its tasks and its clients share.
pub(super) struct Entries {
    pub(super) redis: RedisStore,
    source: Arc<dyn ProfileSource>,
    config: CacheConfig,
    pub(super) stats: Arc<CacheStats>,
}

impl Entries {
    pub(super) fn new(
        redis: RedisStore,
        source: Arc<dyn ProfileSource>,
        config: CacheConfig,
        stats: Arc<CacheStats>,
    ) -> Self {
        Self {
            redis,
            source,
            config,
            stats,
        }
    }

    /// The key of `id`'s cached profile. `v2`: until the public profile lost
    /// its e-mail and age, profiles were cached under `user:{id}` with both;
    /// the new namespace means no such value is ever read after an upgrade
    /// (the old keys expire within their TTL). Change it again whenever the
    /// cached JSON's shape changes.
    pub(super) fn key(&self, id: &ObjectId) -> String {
        self.redis.key(&format!("profile:v2:{id}"))
    }

    /// A hit (counted and logged) from what `GET key` answered, or `None`.
    pub(super) fn hit(&self, key: &str, value: Option<String>) -> Option<Option<ProfileJson>> {
        let hit = decode(value)?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache", %key, "HIT");
        Some(hit)
    }

    /// Load from the source and store the result (errors are not stored) —
    /// unless Redis has the value by now.
    pub(super) async fn load(&self, id: ObjectId) -> Lookup {
        if let Some(cached) = self.recheck(&id).await {
            return Ok(cached);
        }
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let profile = self.source.public_profile(id).await?;
        self.store(&id, &profile).await;
        Ok(profile)
    }

    /// Look in Redis once more before loading. A reader looks in Redis in
    /// its own task and sends its miss to the actor; if its task is
    /// descheduled in between (milliseconds, on busy cores), the miss can
    /// reach the actor just after the load that stored the value landed,
    /// and would load it a second time. Skipped while Redis is failing
    /// (the reader has just waited for it once).
    async fn recheck(&self, id: &ObjectId) -> Option<Option<ProfileJson>> {
        if self.stats.degraded() {
            return None;
        }
        let key = self.key(id);
        match self.redis.run(redis::cmd("GET").arg(&key)).await {
            Ok(value) => {
                self.stats.redis_ok();
                self.hit(&key, value)
            }
            Err(err) => {
                self.stats.redis_failed(&err);
                None
            }
        }
    }

    async fn store(&self, id: &ObjectId, profile: &Option<ProfileJson>) {
        let (value, ttl) = encode(profile, &self.config);
        let key = self.key(id);
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .clone();
        match self.redis.run::<()>(&set).await {
            Ok(()) => {
                self.stats.redis_ok();
                self.stats.sets.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: "cache", %key, ttl = %humantime::format_duration(ttl), "SET");
            }
            Err(err) => self.stats.redis_failed(&err),
        }
    }

    pub(super) async fn delete(&self, id: &ObjectId) {
        let key = self.key(id);
        match self.redis.run::<()>(redis::cmd("DEL").arg(&key)).await {
            Ok(()) => {
                self.stats.redis_ok();
                tracing::info!(target: "cache", %key, "INVALIDATE");
            }
            // Fail-open: the value (if any) expires within the TTL.
            Err(err) => self.stats.redis_failed(&err),
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
        }
    }

    #[test]
    fn a_profile_and_a_tombstone_round_trip() {
        let json = ProfileJson(r#"{"id":"65f1c0ffee0000000000beef","name":"Ada"}"#.into());
        for profile in [Some(json), None] {
            let (value, _) = encode(&profile, &config());
            assert_eq!(decode(Some(value)), Some(profile));
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
    fn no_value_or_a_foreign_one_is_a_miss() {
        assert_eq!(decode(None), None);
        // Not written by this cache (an operator's SET, an old format): a
        // miss, so it is loaded and overwritten rather than served.
        for foreign in ["", "true", "\"text\"", "[1]", "NULL", " {}"] {
            assert_eq!(decode(Some(foreign.into())), None, "{foreign:?}");
        }
    }
}

//! The cache's two handles: [`CacheClient`] for readers, [`Invalidator`]
//! for the writer of profiles.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use super::actor::{CacheArgs, CacheMsg};
use super::entries::Entries;
use super::source::{LoadError, ProfileJson};
use crate::limits::FixedWindow;
use crate::supervision::slot::{ActorSlot, CallError};

/// Why a lookup through the [`CacheClient`] gave no profile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The client made too many lookups; retry after this long.
    #[error("too many lookups")]
    Throttled(Duration),
    /// The CacheActor is not running or did not answer in time.
    #[error("the cache could not load")]
    Unavailable(#[source] CallError),
    #[error("the profile could not be loaded")]
    Load(#[source] LoadError),
}

/// How the rest of the service reads profiles. Cheap to clone.
#[derive(Clone)]
pub struct CacheClient {
    entries: Arc<Entries>,
    actor: ActorSlot<CacheMsg>,
    call_timeout: Duration,
}

impl CacheClient {
    /// A client of the actor in `actor`, reading what `args` describe.
    pub(crate) fn new(args: &CacheArgs, actor: ActorSlot<CacheMsg>) -> Self {
        Self {
            entries: Arc::new(args.entries()),
            actor,
            call_timeout: args.call_timeout,
        }
    }

    /// The public profile of `id` (`None`: no such profile), counted against
    /// `limit` for `client`: a refused lookup answers
    /// [`CacheError::Throttled`] and loads nothing. The count and the read
    /// are sent together (two pipelines: the profile's key and the client's
    /// counter are unrelated, so on a Redis Cluster they live in different
    /// slots), so a hit costs one Redis round trip, as without the limit;
    /// with Redis down the lookup is served (both fail open).
    pub async fn get_limited(
        &self,
        id: ObjectId,
        limit: &FixedWindow,
        client: IpAddr,
    ) -> Result<Option<ProfileJson>, CacheError> {
        let key = self.entries.key(&id);
        let mut count = redis::pipe();
        limit.count_in(&mut count, client);
        let get = redis::cmd("GET").arg(&key).clone();
        let redis = &self.entries.redis;
        let (counted, value) = tokio::join!(
            redis.run_pipe::<(u64, i64)>(&count),
            redis.run::<Option<String>>(&get),
        );
        let value = match value {
            Ok(value) => {
                self.entries.stats.redis_ok();
                value
            }
            Err(err) => {
                self.entries.stats.redis_failed(&err);
                None
            }
        };
        match counted {
            Ok((count, ttl_ms)) => {
                if let Some(wait) = limit.verdict(count, ttl_ms) {
                    return Err(CacheError::Throttled(wait));
                }
            }
            Err(err) => limit.unavailable(&err),
        }
        let read = self.entries.hit(&key, value);
        match read {
            Some(hit) => Ok(hit),
            // Miss, or Redis down: join (or start) the single load.
            None => self.load(id).await,
        }
    }

    /// Join (or start) the single load of `id` in the actor.
    async fn load(&self, id: ObjectId) -> Result<Option<ProfileJson>, CacheError> {
        self.actor
            .call(|reply| CacheMsg::Load { id, reply }, self.call_timeout)
            .await
            .map_err(CacheError::Unavailable)?
            .map_err(CacheError::Load)
    }
}

/// How the writer of profiles tells the cache one changed. Cheap to clone.
#[derive(Clone)]
pub struct Invalidator {
    actor: ActorSlot<CacheMsg>,
    call_timeout: Duration,
}

impl Invalidator {
    /// Invalidations through the actor in `actor`, each waiting at most
    /// `call_timeout`.
    pub(crate) fn new(actor: ActorSlot<CacheMsg>, call_timeout: Duration) -> Self {
        Self {
            actor,
            call_timeout,
        }
    }

    /// Forget `id`'s cached profile; answers once no older value can
    /// reappear (see the contract of [`crate::cache`]). An error means the
    /// cache could not confirm it: the old value expires within its TTL.
    pub async fn invalidate(&self, id: ObjectId) -> Result<(), CallError> {
        self.actor
            .call(
                |reply| CacheMsg::Invalidate { id, reply },
                self.call_timeout,
            )
            .await
    }
}

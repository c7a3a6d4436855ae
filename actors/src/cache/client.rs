//! The cache's two handles: [`CacheClient`] for readers, [`Invalidator`]
//! for the writer of profiles.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use super::actor::{CacheArgs, CacheMsg};
use super::entries::{Entries, Seen, Stored};
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
    /// [`CacheError::Throttled`] and loads nothing. With Redis down the
    /// lookup is served (both fail open).
    ///
    /// A hit in the in-process tier sends no command for the profile and
    /// waits for nothing but the count (none for most lookups when the limit
    /// is batched): the tier's lease stands for the invalidations (see
    /// [`crate::cache`]). Otherwise the count and the read are sent together
    /// (separately: the profile's key and the client's counter are
    /// unrelated, so on a Redis Cluster they live in different slots): a
    /// Redis hit costs one round trip too, and is kept in the tier.
    pub async fn get_limited(
        &self,
        id: ObjectId,
        limit: &FixedWindow,
        client: IpAddr,
    ) -> Result<Option<ProfileJson>, CacheError> {
        let entries = &self.entries;
        let count = limit.hit(client);
        let Some(hit) = entries.local.get(&id) else {
            return self.read_through(id, count).await;
        };
        Self::verdict(count.await)?;
        entries.stats.hits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache", %id, tier = "local", "HIT");
        Ok(hit)
    }

    /// Read Redis (with the lookup's `count`): a hit is
    /// kept in the local tier; a miss joins (or starts) the single load.
    async fn read_through(
        &self,
        id: ObjectId,
        count: impl Future<Output = Option<Duration>>,
    ) -> Result<Option<ProfileJson>, CacheError> {
        let entries = &self.entries;
        // Taken before the GET: an invalidation processed from now on
        // keeps what the GET answers out of the tier.
        let guard = entries.local.guard(&id);
        let key = entries.key(&id);
        let get = redis::cmd("GET").arg(&key).clone();
        let get = entries.redis.run::<Option<String>>(&get);
        let (refused, value) = tokio::join!(count, get);
        Self::verdict(refused)?;
        let read = match value {
            Ok(value) => {
                entries.stats.redis_ok();
                entries.read(&key, value)
            }
            Err(err) => {
                entries.stats.redis_failed(&err);
                Stored::Empty(Seen::Unknown)
            }
        };
        match read {
            Stored::Profile(hit) => {
                let ttl = entries.ttl(&hit);
                entries.local.insert(id, &guard, hit.clone(), ttl);
                Ok(hit)
            }
            // Miss, or Redis down: join (or start) the single load.
            Stored::Empty(seen) => self.load(id, seen).await,
        }
    }

    /// Refuse the lookup if the limit said so (it fails open by itself).
    fn verdict(refused: Option<Duration>) -> Result<(), CacheError> {
        refused.map_or(Ok(()), |wait| Err(CacheError::Throttled(wait)))
    }

    /// Join (or start) the single load of `id` in the actor.
    async fn load(&self, id: ObjectId, seen: Seen) -> Result<Option<ProfileJson>, CacheError> {
        self.actor
            .call(
                |reply| CacheMsg::Load { id, seen, reply },
                self.call_timeout,
            )
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

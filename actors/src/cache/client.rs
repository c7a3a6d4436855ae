//! The cache's two handles: [`CacheClient`] for readers, [`Invalidator`]
//! for the writer of profiles.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use super::actor::{CacheArgs, CacheMsg};
use super::entries::{Entries, Seen, Stored};
use super::source::{LoadError, ProfileJson};
use crate::supervision::slot::{ActorSlot, CallError};
use crate::trace::Parent;

/// Why a lookup through the [`CacheClient`] gave no profile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
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

    /// The public profile of `id` (`None`: no such profile). With Redis
    /// down the lookup is served (it fails open).
    ///
    /// A hit in the in-process tier sends no command and waits for
    /// nothing: the tier's lease stands for the invalidations (see
    /// [`crate::cache`]). Otherwise a Redis hit costs one round trip, and is
    /// kept in the tier.
    pub async fn get(&self, id: ObjectId) -> Result<Option<ProfileJson>, CacheError> {
        let entries = &self.entries;
        let Some(hit) = entries.local.get(&id) else {
            // Boxed: the miss path's future (a Redis command, an actor
            // call) is kilobytes, and held inline it would make every
            // hit's future as large — allocated and copied on each request
            // (`docs/performance.md`). A miss pays the box.
            return Box::pin(self.read_through(id)).await;
        };
        entries.stats.hits.inc();
        tracing::info!(target: "cache", %id, tier = "local", "HIT");
        Ok(hit)
    }

    /// Read Redis: a hit is kept in the local tier; a miss joins (or
    /// starts) the single load.
    async fn read_through(&self, id: ObjectId) -> Result<Option<ProfileJson>, CacheError> {
        let entries = &self.entries;
        // Taken before the GET: an invalidation processed from now on
        // keeps what the GET answers out of the tier.
        let guard = entries.local.guard(&id);
        let key = entries.key(&id);
        let get = redis::cmd("GET").arg(&key).clone();
        let value = entries.redis.run::<Option<String>>(&get).await;
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

    /// Join (or start) the single load of `id` in the actor.
    async fn load(&self, id: ObjectId, seen: Seen) -> Result<Option<ProfileJson>, CacheError> {
        self.actor
            .call(
                |reply| CacheMsg::Load {
                    id,
                    seen,
                    parent: Parent::current(),
                    reply,
                },
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
                |reply| CacheMsg::Invalidate {
                    id,
                    parent: Parent::current(),
                    reply,
                },
                self.call_timeout,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// The size of the future `make` would return (never called: no
    /// `T` is needed).
    fn future_size<'a, T: 'a, F: Future>(_make: impl FnOnce(&'a T) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_hit_s_future_is_small_the_miss_path_boxed() {
        let hit = future_size(|client: &CacheClient| client.get(ObjectId::new()));
        let miss = future_size(|client: &CacheClient| client.read_through(ObjectId::new()));
        assert!(hit <= 128, "a hit's future is {hit} bytes");
        assert!(
            miss > 4 * hit,
            "the miss path ({miss} bytes) is what the box keeps out"
        );
    }
}

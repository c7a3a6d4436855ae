//! The CacheActor: the single-flight table of loads and the invalidations
//! waiting on them (see the contract in [`crate::cache`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinSet;

use super::config::CacheConfig;
use super::entries::Entries;
use super::source::{Lookup, ProfileSource};
use super::stats::CacheStats;
use crate::store::RedisStore;
use crate::supervision::stats::{ActorStats, Handling};

pub(crate) enum CacheMsg {
    /// `id` is not in Redis (or Redis is down): join or start its single
    /// load, and answer the public profile (`None`: no such profile).
    Load {
        id: ObjectId,
        reply: RpcReplyPort<Lookup>,
    },
    /// Forget `id`; answered once no older value can reappear.
    Invalidate {
        id: ObjectId,
        reply: RpcReplyPort<()>,
    },
    /// Internal: a load finished (and, unless it failed, was stored).
    Loaded { id: ObjectId, result: Lookup },
}

/// What the actor is started with (cloned on every restart).
#[derive(Clone)]
pub(crate) struct CacheArgs {
    pub redis: RedisStore,
    /// Where misses are loaded.
    pub source: Arc<dyn ProfileSource>,
    pub config: CacheConfig,
    pub stats: Arc<CacheStats>,
    /// How long a reader waits for the actor's answer to a miss.
    pub call_timeout: Duration,
    pub actor_stats: Arc<ActorStats>,
    /// How long a graceful stop waits for the loads and deletes running.
    pub grace: Duration,
}

impl CacheArgs {
    pub(super) fn entries(&self) -> Entries {
        Entries::new(
            self.redis.clone(),
            Arc::clone(&self.source),
            self.config.clone(),
            Arc::clone(&self.stats),
        )
    }
}

struct Inflight {
    waiters: Vec<RpcReplyPort<Lookup>>,
    /// Set when an invalidation arrived while loading.
    stale: bool,
    /// Invalidations waiting for this load to land.
    invalidations: Vec<RpcReplyPort<()>>,
}

pub(crate) struct CacheState {
    entries: Arc<Entries>,
    actor_stats: Arc<ActorStats>,
    inflight: HashMap<ObjectId, Inflight>,
    /// The loads and deletes running: aborted with the state, so no task
    /// outlives this incarnation (reaped as they finish).
    tasks: JoinSet<()>,
    grace: Duration,
}

impl CacheState {
    /// Run `task`, reaping the finished ones first so the set stays small.
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Err(err) = done {
                tracing::error!(target: "cache", error = %err, "a cache task failed");
            }
        }
        self.tasks.spawn(task);
    }

    /// Join the load of `id`, or start it in a task that reports `Loaded`.
    fn load(
        &mut self,
        myself: ActorRef<CacheMsg>,
        id: ObjectId,
        reply: RpcReplyPort<Lookup>,
        handling: Handling,
    ) {
        if let Some(flight) = self.inflight.get_mut(&id) {
            flight.waiters.push(reply);
            return;
        }
        self.entries.stats.misses.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache", key = %self.entries.key(&id), "MISS");
        let flight = Inflight {
            waiters: vec![reply],
            stale: false,
            invalidations: vec![],
        };
        self.inflight.insert(id, flight);
        let (entries, actor_stats) = (Arc::clone(&self.entries), Arc::clone(&self.actor_stats));
        self.spawn(async move {
            let result = handling.measure(entries.load(id)).await;
            actor_stats.sent();
            let _ = myself.cast(CacheMsg::Loaded { id, result });
        });
    }

    /// Answer the waiters of `id`'s load; if an invalidation came while it
    /// ran, delete what it stored before confirming the invalidation.
    fn loaded(&mut self, id: ObjectId, result: Lookup, handling: Handling) {
        let Some(flight) = self.inflight.remove(&id) else {
            return;
        };
        for waiter in flight.waiters {
            let _ = waiter.send(result.clone());
        }
        if flight.stale {
            // The load may have stored a value older than the write
            // that invalidated it: delete again, then acknowledge.
            let entries = Arc::clone(&self.entries);
            self.spawn(async move {
                handling.measure(entries.delete(&id)).await;
                for reply in flight.invalidations {
                    let _ = reply.send(());
                }
            });
        }
    }

    /// Delete `id`; confirm now, or once a load in flight has landed.
    fn invalidate(&mut self, id: ObjectId, reply: RpcReplyPort<()>, handling: Handling) {
        let stats = &self.entries.stats;
        stats.invalidations.fetch_add(1, Ordering::Relaxed);
        let confirm_now = match self.inflight.get_mut(&id) {
            Some(flight) => {
                flight.stale = true;
                flight.invalidations.push(reply);
                None
            }
            None => Some(reply),
        };
        let entries = Arc::clone(&self.entries);
        self.spawn(async move {
            handling.measure(entries.delete(&id)).await;
            if let Some(reply) = confirm_now {
                let _ = reply.send(());
            }
        });
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct CacheActor;

impl Actor for CacheActor {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = CacheArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CacheMsg>,
        args: CacheArgs,
    ) -> Result<CacheState, ActorProcessingErr> {
        Ok(CacheState {
            entries: Arc::new(args.entries()),
            inflight: HashMap::new(),
            actor_stats: args.actor_stats,
            tasks: JoinSet::new(),
            grace: args.grace,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CacheMsg>,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        // Deletes confirm invalidations: let them (and the loads) finish
        // within the grace. What is left is aborted when `tasks` drops, as
        // it is if this actor is killed meanwhile.
        let tasks = &mut state.tasks;
        let drained = tokio::time::timeout(state.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(target: "cache", left = state.tasks.len(), "cache tasks still running after the grace; aborted");
            state.tasks.abort_all();
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "cache_actor")]
    async fn handle(
        &self,
        myself: ActorRef<CacheMsg>,
        message: CacheMsg,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        // The guard moves into the task a message starts (a load, a
        // delete), so the handling time covers that work; a message that
        // starts none is timed until here.
        let handling = state.actor_stats.begin(&myself.get_cell()).await;
        match message {
            CacheMsg::Load { id, reply } => state.load(myself, id, reply, handling),
            CacheMsg::Loaded { id, result } => state.loaded(id, result, handling),
            CacheMsg::Invalidate { id, reply } => state.invalidate(id, reply, handling),
        }
        Ok(())
    }
}

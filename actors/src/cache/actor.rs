//! The CacheActor: the single-flight table of loads (by what their readers
//! found in Redis), the fences and fan-outs of invalidations, and the task
//! that subscribes the in-process tier to the fleet's invalidations (see the contract in [`crate::cache`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::config::CacheConfig;
use super::entries::{Entries, Seen};
use super::local::LocalTier;
use super::source::{Lookup, ProfileSource};
use super::stats::CacheStats;
use crate::store::RedisStore;
use crate::supervision::stats::{ActorStats, Handling};
use crate::trace::Parent;

/// The actor's name in its messages' spans (`CacheActor load`).
const ACTOR: &str = "CacheActor";

pub(crate) enum CacheMsg {
    /// `id` is not in Redis (or Redis is down): join or start its single
    /// load, and answer the public profile (`None`: no such profile).
    /// `seen`: what the reader found in the key; a load started on a
    /// different observation (before an invalidation) is not joined.
    Load {
        id: ObjectId,
        seen: Seen,
        /// The sender's span: a load's span is its starter's child (who
        /// joins a load in flight waits inside another trace's load).
        parent: Parent,
        reply: RpcReplyPort<Lookup>,
    },
    /// Forget `id`; answered once no older value can be stored or served.
    Invalidate {
        id: ObjectId,
        /// The sender's span: the invalidation's span is its child.
        parent: Parent,
        reply: RpcReplyPort<()>,
    },
    /// Internal: the load `flight` finished (and, unless it failed or was
    /// overtaken by an invalidation, was stored).
    Loaded { flight: u64, result: Lookup },
}

/// What the actor is started with (cloned on every restart).
#[derive(Clone)]
pub(crate) struct CacheArgs {
    pub redis: RedisStore,
    /// Where misses are loaded.
    pub source: Arc<dyn ProfileSource>,
    pub config: CacheConfig,
    pub stats: Arc<CacheStats>,
    /// The in-process tier, shared by the readers and every incarnation.
    pub local: Arc<LocalTier>,
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
            Arc::clone(&self.local),
        )
    }
}

/// The loads in flight: who waits for each, and which one a new miss
/// may join.
#[derive(Default)]
struct Flights {
    /// Waiters by flight.
    waiters: HashMap<u64, Vec<RpcReplyPort<Lookup>>>,
    /// The flight a miss for `id` that saw `seen` joins. An invalidation
    /// removes `id`'s: a miss after it starts a load of its own (a flight
    /// that started before may have read the old profile).
    joinable: HashMap<(ObjectId, Seen), u64>,
    next: u64,
}

pub(crate) struct CacheState {
    entries: Arc<Entries>,
    actor_stats: Arc<ActorStats>,
    flights: Flights,
    /// The loads and fences running: aborted with the state, so no task
    /// outlives this incarnation (reaped as they finish).
    tasks: JoinSet<()>,
    /// The subscription task (see [`super::subscription`]); aborted first
    /// on stop.
    subscription: JoinSet<()>,
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

    /// Join the load of `id` started on the same observation, or start one
    /// in a task that reports `Loaded`.
    fn load(
        &mut self,
        myself: ActorRef<CacheMsg>,
        (id, seen, parent): (ObjectId, Seen, Parent),
        reply: RpcReplyPort<Lookup>,
        handling: Handling,
    ) {
        let flights = &mut self.flights;
        if let Some(waiters) = flights
            .joinable
            .get(&(id, seen.clone()))
            .and_then(|flight| flights.waiters.get_mut(flight))
        {
            waiters.push(reply);
            return;
        }
        self.entries.stats.misses.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache", key = %self.entries.key(&id), "MISS");
        let flight = flights.next;
        flights.next += 1;
        flights.waiters.insert(flight, vec![reply]);
        flights.joinable.insert((id, seen), flight);
        let (entries, actor_stats) = (Arc::clone(&self.entries), Arc::clone(&self.actor_stats));
        let load = async move { entries.load(id).await }.instrument(parent.span(ACTOR, "load"));
        self.spawn(async move {
            let result = handling.measure(load).await;
            actor_stats.sent();
            let _ = myself.cast(CacheMsg::Loaded { flight, result });
        });
    }

    /// Answer the waiters of `flight`.
    fn loaded(&mut self, flight: u64, result: Lookup) {
        let flights = &mut self.flights;
        flights.joinable.retain(|_, joinable| *joinable != flight);
        for waiter in flights.waiters.remove(&flight).into_iter().flatten() {
            let _ = waiter.send(result.clone());
        }
    }

    /// Fence `id` in Redis and stop new misses joining its loads in
    /// flight; confirm once the fence is written (a load in flight cannot
    /// store over it, see [`Entries`]).
    fn invalidate(
        &mut self,
        (id, parent): (ObjectId, Parent),
        reply: RpcReplyPort<()>,
        handling: Handling,
    ) {
        self.entries
            .stats
            .invalidations
            .fetch_add(1, Ordering::Relaxed);
        self.flights.joinable.retain(|(of, _), _| *of != id);
        let entries = Arc::clone(&self.entries);
        let span = parent.span(ACTOR, "invalidate");
        self.spawn(async move {
            let invalidate = async { entries.invalidate(&id).await };
            handling.measure(invalidate.instrument(span)).await;
            let _ = reply.send(());
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
        // Even with the tier off: its writes hear their acknowledgements
        // there, and it acknowledges others' (it holds no lease, so none
        // waits for it). It ends by itself on a cluster.
        let mut subscription = JoinSet::new();
        subscription.spawn(super::subscription::subscribe(
            Arc::clone(&args.local),
            args.redis.clone(),
            args.config.clone(),
        ));
        Ok(CacheState {
            entries: Arc::new(args.entries()),
            flights: Flights::default(),
            actor_stats: args.actor_stats,
            tasks: JoinSet::new(),
            subscription,
            grace: args.grace,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CacheMsg>,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        // The subscription stops at once (the tier is then bypassed; writes
        // in flight stop hearing acknowledgements and wait out their bound,
        // within the grace). Fences confirm invalidations: let them (and the
        // loads) finish within the grace. What is left is aborted when
        // `tasks` drops, as it is if this actor is killed meanwhile.
        state.subscription.abort_all();
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
            CacheMsg::Load {
                id,
                seen,
                parent,
                reply,
            } => state.load(myself, (id, seen, parent), reply, handling),
            CacheMsg::Loaded { flight, result } => state.loaded(flight, result),
            CacheMsg::Invalidate { id, parent, reply } => {
                state.invalidate((id, parent), reply, handling)
            }
        }
        Ok(())
    }
}

//! The actor tree: which actors run, in which order, with what arguments,
//! and the handles (slots, shared counters) the HTTP layer reaches them by.
//!
//! ```text
//! RootSupervisor
//! ├── EventBus           domain events → subscribers
//! ├── AuditLog           user/auth events → the `user` and `auth` log files
//! ├── EventCounter       events by kind → metrics
//! ├── UserActor          users, sessions; enqueues jobs
//! ├── CacheActor         Redis read-through of public profiles
//! └── QueuePollerActor   claims jobs
//!     └── JobExecutor × N
//! ```
//! Started top to bottom, stopped bottom to top: the bus outlives everything
//! that publishes, and the poller stops (finishing its jobs) first.

use std::sync::Arc;

use mongodb::Database;
use troupe_actors::cache::{CacheActor, CacheArgs, CacheClient, CacheMsg, CacheStats};
use troupe_actors::events::audit::{AuditLog, SubscriberArgs};
use troupe_actors::events::counter::{CounterArgs, EventCounter, EventCounts};
use troupe_actors::events::{BusArgs, BusMsg, Delivery, EventBus, Events, Registry};
use troupe_actors::limits::{LimitMetrics, Limits};
use troupe_actors::queue::executor::{Queue, QueueMetrics};
use troupe_actors::queue::handlers::{JobHandlers, Mailer};
use troupe_actors::queue::poller::{PollerArgs, PollerMsg, QueuePollerActor};
use troupe_actors::queue::snapshot::QueueSnapshot;
use troupe_actors::queue::store::JobStore;
use troupe_actors::store::RedisStore;
use troupe_actors::supervision::slot::ActorSlot;
use troupe_actors::supervision::stats::ActorStats;
use troupe_actors::supervision::supervisor::{ChildSpec, TreeHealth};
use troupe_actors::users::throttle::Throttle;
use troupe_actors::users::tokens::Tokens;
use troupe_actors::users::{UserActor, UserArgs, UserMsg, Users};

use crate::config::Settings;

/// How the rest of the service reaches the actors. Cheap to clone.
#[derive(Clone)]
pub struct Actors {
    pub users: ActorSlot<UserMsg>,
    pub cache: ActorSlot<CacheMsg>,
    /// Profile reads: hits straight from Redis, misses through the CacheActor.
    pub profiles: CacheClient,
    /// Per-address limits the HTTP layer applies (sign-ups, profile lookups).
    pub limits: Limits,
    /// Refusals and fail-opens of every limit and the login throttle.
    pub limit_metrics: LimitMetrics,
    pub poller: ActorSlot<PollerMsg>,
    pub bus: ActorSlot<BusMsg>,
    /// Publish domain events.
    pub events: Events,
    /// Subscribe to domain events (live streams).
    pub registry: Registry,
    pub event_counts: EventCounts,
    pub cache_stats: Arc<CacheStats>,
    pub tree: TreeHealth,
    pub tokens: Arc<Tokens>,
    /// Counts of each executor place of the pool.
    pub executor_stats: Vec<Arc<ActorStats>>,
    pub audit: ActorSlot<Delivery>,
    /// Claim and execution histograms, recorded by the queue's actors.
    pub queue_metrics: QueueMetrics,
    pub counter: ActorSlot<Delivery>,
    /// The queue's figures for `/metrics`, refreshed by the poller.
    pub queue_snapshot: Arc<QueueSnapshot>,
}

impl Actors {
    /// Every actor's name and stats (the root supervisor's children, then
    /// the executors): what `/metrics` reports, read from shared counters
    /// without a message to any actor.
    pub fn all_stats(&self) -> Vec<(String, Arc<ActorStats>)> {
        let children = [
            (self.bus.name(), self.bus.stats()),
            (self.audit.name(), self.audit.stats()),
            (self.counter.name(), self.counter.stats()),
            (self.users.name(), self.users.stats()),
            (self.cache.name(), self.cache.stats()),
            (self.poller.name(), self.poller.stats()),
        ];
        let executors = self
            .executor_stats
            .iter()
            .enumerate()
            .map(|(index, stats)| (format!("executor-{index}"), Arc::clone(stats)));
        children
            .into_iter()
            .map(|(name, stats)| (name.to_owned(), stats))
            .chain(executors)
            .collect()
    }

    /// The stats (and fault switch) of the actor called `name`.
    pub fn stats_of(&self, name: &str) -> Option<Arc<ActorStats>> {
        if let Some(index) = name
            .strip_prefix("executor-")
            .and_then(|i| i.parse::<usize>().ok())
        {
            return self.executor_stats.get(index).cloned();
        }
        match name {
            n if n == self.users.name() => Some(self.users.stats()),
            n if n == self.cache.name() => Some(self.cache.stats()),
            n if n == self.poller.name() => Some(self.poller.stats()),
            n if n == self.bus.name() => Some(self.bus.stats()),
            n if n == self.audit.name() => Some(self.audit.stats()),
            n if n == self.counter.name() => Some(self.counter.stats()),
            _ => None,
        }
    }
}

/// The children of the root supervisor, in start order, and their handles.
pub fn build(
    settings: &Settings,
    db: &Database,
    redis: &RedisStore,
    mailer: Mailer,
    extra_jobs: JobHandlers,
) -> (Vec<ChildSpec>, Actors) {
    let call_timeout = settings.actors.call_timeout;
    let instance = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let store = JobStore::new(db, instance, settings.queue.max_attempts);
    let bus = ActorSlot::new("event-bus");
    let (user_slot, cache_slot) = (ActorSlot::new("user"), ActorSlot::new("cache"));
    let cache_stats = Arc::new(CacheStats::default());
    let limit_metrics = LimitMetrics::default();
    let cache_args = CacheArgs {
        redis: redis.clone(),
        users: user_slot.clone(),
        config: settings.cache.clone(),
        stats: Arc::clone(&cache_stats),
        call_timeout,
        actor_stats: cache_slot.stats(),
    };
    let actors = Actors {
        users: user_slot,
        profiles: CacheClient::new(&cache_args, cache_slot.clone()),
        cache: cache_slot,
        limits: Limits::new(redis, &settings.limits, &limit_metrics),
        limit_metrics,
        poller: ActorSlot::new("queue-poller"),
        events: Events::new(bus.clone()),
        bus,
        registry: Registry::default(),
        event_counts: EventCounts::default(),
        cache_stats,
        tree: TreeHealth::default(),
        tokens: Arc::new(Tokens::new(&settings.auth)),
        executor_stats: (0..settings.queue.executors)
            .map(|_| Arc::default())
            .collect(),
        audit: ActorSlot::new("audit-log"),
        queue_metrics: QueueMetrics::default(),
        counter: ActorSlot::new("event-counter"),
        queue_snapshot: Arc::default(),
    };
    let a = &actors;
    let users = Users::new(
        db,
        store.clone(),
        a.events.clone(),
        Throttle::new(
            redis.clone(),
            settings.auth.throttle.clone(),
            &a.limit_metrics,
        ),
        Arc::clone(&a.tokens),
        settings.auth.bcrypt_cost,
        call_timeout,
        settings.auth.idempotency.clone(),
    );
    let queue = Queue {
        metrics: a.queue_metrics.clone(),
        store,
        events: a.events.clone(),
        handlers: JobHandlers::standard(db, mailer).merge(extra_jobs),
        config: settings.queue.clone(),
        snapshot: Arc::clone(&a.queue_snapshot),
    };
    let (audit, counter) = (a.audit.clone(), a.counter.clone());
    let children = vec![
        ChildSpec::new(
            EventBus,
            BusArgs {
                registry: a.registry.clone(),
                stats: a.bus.stats(),
            },
            a.bus.clone(),
        ),
        ChildSpec::new(
            AuditLog,
            SubscriberArgs {
                registry: a.registry.clone(),
                stats: audit.stats(),
            },
            audit,
        ),
        ChildSpec::new(
            EventCounter,
            CounterArgs {
                registry: a.registry.clone(),
                counts: a.event_counts.clone(),
                stats: counter.stats(),
            },
            counter,
        ),
        ChildSpec::new(
            UserActor,
            UserArgs {
                users: Arc::new(users),
                cache: a.cache.clone(),
                poller: a.poller.clone(),
                stats: a.users.stats(),
            },
            a.users.clone(),
        ),
        ChildSpec::new(CacheActor, cache_args, a.cache.clone()),
        ChildSpec::new(
            QueuePollerActor,
            PollerArgs {
                queue: Arc::new(queue),
                grace: settings.server.shutdown_grace,
                policy: settings.actors.restart,
                health: a.tree.clone(),
                stats: a.poller.stats(),
                executor_stats: a.executor_stats.clone(),
            },
            a.poller.clone(),
        ),
    ];
    (children, actors)
}

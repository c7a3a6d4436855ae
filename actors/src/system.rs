//! The actor system: which actors run, in which order, with what arguments,
//! and the handles the rest of the service reaches them by.
//! [`ActorSystem::start`] is the one place the tree is wired.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cache::{CacheActor, CacheArgs, CacheClient, CacheMsg, CacheStats};
use crate::events::audit::{AuditLog, SubscriberArgs};
use crate::events::counter::{CounterArgs, EventCounter, EventCounts};
use crate::events::{BusArgs, BusMsg, Delivery, EventBus, EventKind, Events, Registry};
use crate::limits::{LimitMetrics, Limits};
use crate::mail::Mailer;
use crate::queue::handlers::JobHandlers;
use crate::queue::metrics::QueueMetrics;
use crate::queue::poller::{PollerArgs, PollerMsg, QueuePollerActor};
use crate::queue::producer::JobQueue;
use crate::queue::shared::Queue;
use crate::queue::snapshot::QueueSnapshot;
use crate::queue::store::JobStore;
use crate::queue::QueueHandle;
use crate::store::RedisStore;
use crate::supervision::health::{TreeEvent, TreeHealth};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;
use crate::supervision::supervisor::ChildSpec;
use crate::users::throttle::Throttle;
use crate::users::tokens::Tokens;
use crate::users::{UserActor, UserArgs, UserMsg, Users};
use mongodb::Database;
use ractor::{Actor, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::cache::CacheConfig;
use crate::limits::LimitsConfig;
use crate::mail::MailConfig;
use crate::queue::config::QueueConfig;
use crate::supervision::budget::RestartPolicy;
use crate::supervision::supervisor::{RootSupervisor, SupervisorArgs, SupervisorMsg};
use crate::users::config::AuthConfig;

/// What the actors are configured with (the service's settings, less what
/// only the HTTP layer uses).
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub auth: AuthConfig,
    pub cache: CacheConfig,
    pub queue: QueueConfig,
    pub limits: LimitsConfig,
    pub mail: MailConfig,
    pub restart: RestartPolicy,
    /// How long a caller waits for an actor's reply.
    pub call_timeout: Duration,
    /// How long shutdown waits for each actor (and the running jobs).
    pub shutdown_grace: Duration,
    /// How long MongoDB operations wait for a reachable server (the index
    /// builder's first retry delay).
    pub store_timeout: Duration,
}

/// The stores every actor leans on, connected (lazily) by the caller.
#[derive(Clone)]
pub struct Stores {
    pub db: Database,
    pub redis: RedisStore,
}

/// Why the actor system could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid mail settings: {0}")]
    Mail(String),
    #[error("cannot start the actor tree")]
    Spawn(#[from] SpawnErr),
}

/// The running actor tree. Dropping it does not stop it: call
/// [`ActorSystem::shutdown`].
pub struct ActorSystem {
    handles: Handles,
    grace: Duration,
    /// Creates the start-up indexes, retrying while MongoDB is unreachable.
    indexes: JoinHandle<()>,
}

impl ActorSystem {
    /// Start every actor, in order, with the service's own job handlers
    /// and `extra_jobs` (an extension's job types).
    pub async fn start(
        config: SystemConfig,
        stores: Stores,
        extra_jobs: JobHandlers,
    ) -> Result<Self, StartError> {
        let mailer = Mailer::new(&config.mail).map_err(StartError::Mail)?;
        let indexes_ready = Arc::new(AtomicBool::new(false));
        let indexes = build_indexes(
            stores.db.clone(),
            Arc::clone(&indexes_ready),
            config.store_timeout,
        )
        .await;
        let (children, mut handles) = build(&config, &stores, mailer, extra_jobs, indexes_ready);
        let (supervisor, _) = Actor::spawn(
            None,
            RootSupervisor,
            SupervisorArgs {
                children,
                policy: config.restart,
                health: handles.tree.clone(),
            },
        )
        .await?;
        handles.supervisor = Some(supervisor);
        Ok(Self {
            handles,
            grace: config.shutdown_grace,
            indexes,
        })
    }

    /// How the rest of the service reaches the actors.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// Stop every actor, last started first, each within the grace period
    /// (the poller lets running jobs finish), and the index builder.
    pub async fn shutdown(self) {
        self.indexes.abort();
        let supervisor = self.handles.supervisor();
        let grace = self.grace;
        let stopped = ractor::call!(supervisor, |reply| SupervisorMsg::Shutdown { grace, reply });
        if let Err(err) = stopped {
            tracing::warn!(target: "system", error = %err, "actor tree did not shut down cleanly");
        }
        supervisor.stop(None);
    }
}

/// Create the indexes every actor relies on. One attempt now; if MongoDB is
/// unreachable, keep retrying (with backoff up to 30 s) in a task the
/// [`ActorSystem`] owns; `ready` is set once they exist.
async fn build_indexes(db: Database, ready: Arc<AtomicBool>, timeout: Duration) -> JoinHandle<()> {
    async fn create(db: &Database) -> mongodb::error::Result<()> {
        Users::ensure_indexes(db).await?;
        JobStore::ensure_indexes(db).await
    }
    if let Err(err) = create(&db).await {
        tracing::error!(target: "system", error = %err, "MongoDB unreachable at start-up; not ready until it answers");
        return tokio::spawn(async move {
            let mut delay = timeout.max(Duration::from_millis(500));
            loop {
                tokio::time::sleep(delay).await;
                match create(&db).await {
                    Ok(()) => {
                        tracing::info!(target: "system", "MongoDB answers; indexes created");
                        ready.store(true, Ordering::Release);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(target: "system", error = %err, "MongoDB still unreachable");
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
    ready.store(true, Ordering::Release);
    tokio::spawn(async {})
}

/// How the rest of the service reaches the actors. Cheap to clone.
#[derive(Clone)]
pub struct Handles {
    pub users: ActorSlot<UserMsg>,
    pub cache: ActorSlot<CacheMsg>,
    /// Profile reads: hits straight from Redis, misses through the CacheActor.
    pub profiles: CacheClient,
    /// Per-address limits the HTTP layer applies (sign-ups, profile lookups).
    pub limits: Limits,
    /// Refusals and fail-opens of every limit and the login throttle.
    pub limit_metrics: LimitMetrics,
    /// The job queue, for operators: list, get, retry, stats, the pool.
    pub queue: QueueHandle,
    /// The poller's place (stats, name); the HTTP layer uses `queue`.
    pub(crate) poller: ActorSlot<PollerMsg>,
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
    /// Set once the start-up indexes exist.
    pub indexes_ready: Arc<AtomicBool>,
    /// The root of the tree (set once it runs).
    supervisor: Option<ActorRef<SupervisorMsg>>,
}

impl Handles {
    /// The root supervisor (introspection).
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        self.supervisor
            .as_ref()
            .expect("handles are handed out once the tree runs")
    }

    /// Whether the start-up indexes exist.
    pub fn indexes_ready(&self) -> bool {
        self.indexes_ready.load(Ordering::Acquire)
    }

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
fn build(
    settings: &SystemConfig,
    stores: &Stores,
    mailer: Mailer,
    extra_jobs: JobHandlers,
    indexes_ready: Arc<AtomicBool>,
) -> (Vec<ChildSpec>, Handles) {
    let (db, redis) = (&stores.db, &stores.redis);
    let call_timeout = settings.call_timeout;
    let instance = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let store = JobStore::new(db, instance, settings.queue.max_attempts);
    let bus = ActorSlot::new("event-bus");
    let events = Events::new(bus.clone());
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
    let poller = ActorSlot::new("queue-poller");
    let actors = Handles {
        users: user_slot,
        profiles: CacheClient::new(&cache_args, cache_slot.clone()),
        cache: cache_slot,
        limits: Limits::new(redis, &settings.limits, &limit_metrics),
        limit_metrics,
        queue: QueueHandle::new(poller.clone(), call_timeout),
        poller,
        events: events.clone(),
        bus,
        registry: Registry::default(),
        event_counts: EventCounts::default(),
        cache_stats,
        tree: tree_health(&events),
        tokens: Arc::new(Tokens::new(&settings.auth)),
        executor_stats: (0..settings.queue.executors)
            .map(|_| Arc::default())
            .collect(),
        audit: ActorSlot::new("audit-log"),
        queue_metrics: QueueMetrics::default(),
        counter: ActorSlot::new("event-counter"),
        queue_snapshot: Arc::default(),
        indexes_ready,
        supervisor: None,
    };
    let a = &actors;
    let users = Users::new(
        db,
        JobQueue::new(store.clone(), a.poller.clone()),
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
    let jobs = JobHandlers::builtin()
        .merge(crate::users::jobs::handlers(db, mailer))
        .merge(extra_jobs);
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
                stats: a.users.stats(),
            },
            a.users.clone(),
        ),
        ChildSpec::new(CacheActor, cache_args, a.cache.clone()),
        queue_poller(settings, store, jobs, a),
    ];
    (children, actors)
}

/// The QueuePollerActor (and through it the executor pool), running the
/// job types of `handlers` from `store`.
fn queue_poller(
    settings: &SystemConfig,
    store: JobStore,
    handlers: JobHandlers,
    handles: &Handles,
) -> ChildSpec {
    let queue = Queue {
        metrics: handles.queue_metrics.clone(),
        store,
        events: handles.events.clone(),
        handlers,
        config: settings.queue.clone(),
        snapshot: Arc::clone(&handles.queue_snapshot),
    };
    let args = PollerArgs {
        queue: Arc::new(queue),
        grace: settings.shutdown_grace,
        policy: settings.restart,
        health: handles.tree.clone(),
        stats: handles.poller.stats(),
        executor_stats: handles.executor_stats.clone(),
    };
    ChildSpec::new(QueuePollerActor, args, handles.poller.clone())
}

/// The tree's health flag, with supervisors' reports published as events.
pub fn tree_health(events: &Events) -> TreeHealth {
    let events = events.clone();
    TreeHealth::new(move |report| {
        events.publish(match report {
            TreeEvent::Restarted {
                actor,
                reason,
                restarts,
            } => EventKind::ActorRestarted {
                actor,
                reason,
                restarts,
            },
            TreeEvent::Escalated { actor, reason } => EventKind::ActorEscalated { actor, reason },
        })
    })
}

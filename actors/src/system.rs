//! The actor system: which actors run, in which order, with what arguments,
//! and the handles the rest of the service reaches them by.
//! [`ActorSystem::start`] is the one place the tree is wired.
//!
//! ```text
//! RootSupervisor
//! ├── EventBus           domain events → subscribers
//! ├── EventRelay         this instance's events ⇄ the fleet's (Redis Stream)
//! ├── AuditLog           this instance's user/auth events → the `user` and `auth` log files
//! ├── EventCounter       this instance's events by kind → metrics
//! ├── UserActor          users, sessions; enqueues jobs
//! ├── CacheActor         Redis read-through of public profiles
//! ├── QueuePollerActor   claims jobs
//! │   └── JobExecutor × N
//! ├── QueueSchedulerActor  fires the periodic jobs, once per slot fleet-wide
//! └── FleetActor         heartbeats into the fleet's registry; takes over dead instances
//! ```
//! Started top to bottom, stopped bottom to top: the bus outlives everything
//! that publishes; the instance leaves the fleet first, then the poller
//! stops (finishing its jobs).
//!
//! Introspection (the live tree, stats, fault injection) goes through
//! [`tree::TreeView`], which [`Handles::introspection`] hands out.

pub mod tree;

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cache::{
    CacheActor, CacheArgs, CacheClient, CacheMsg, CacheStats, Invalidator, LocalTier, ProfileSource,
};
use crate::events::audit::{AuditLog, SubscriberArgs};
use crate::events::bus::{BusArgs, BusMsg, EventBus};
use crate::events::config::EventsConfig;
use crate::events::counter::{CounterArgs, EventCounter, EventCounts};
use crate::events::relay::{self, EventRelay, RelayArgs, RelayStatus};
use crate::events::{Event, Events, Registry};
use crate::fleet::actor::{FleetActor, FleetArgs, FleetMsg};
use crate::fleet::beat::{Beat, Identity};
use crate::fleet::config::FleetConfig;
use crate::fleet::registry::FleetStore;
use crate::fleet::Fleet;
use crate::limits::{FixedWindow, LimitMetrics, Limits};
use crate::mail::{MailError, Mailer};
use crate::migrate::{self, ApplyOptions, MongoLedger};
use crate::queue::error::chain;
use crate::queue::handlers::JobHandlers;
use crate::queue::metrics::QueueMetrics;
use crate::queue::pause::PauseStore;
use crate::queue::poller::{PollerArgs, PollerMsg, QueuePollerActor};
use crate::queue::producer::JobQueue;
use crate::queue::schedule::{Schedule, ScheduleError};
use crate::queue::scheduler::{
    self, prune_handlers, QueueSchedulerActor, SchedulerArgs, SchedulerMsg, SlotStore,
};
use crate::queue::shared::Queue;
use crate::queue::snapshot::QueueSnapshot;
use crate::queue::store::JobStore;
use crate::queue::types::JobTypes;
use crate::queue::QueueHandle;
use crate::store::{RedisStore, StoreError};
use crate::supervision::health::{TreeEvent, TreeHealth};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;
use crate::supervision::supervisor::ChildSpec;
use crate::users::idempotency::RequestScope;
use crate::users::throttle::Throttle;
use crate::users::tokens::Tokens;
use crate::users::UserMsg;
use crate::users::{
    Collaborators, RequestTasks, Tuning, UserActor, UserArgs, UserCalls, UserService, Users,
};
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
use tree::TreeView;

/// What the actors are configured with (the service's settings, less what
/// only the HTTP layer uses).
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub auth: AuthConfig,
    pub cache: CacheConfig,
    pub queue: QueueConfig,
    pub limits: LimitsConfig,
    pub mail: MailConfig,
    pub events: EventsConfig,
    pub fleet: FleetConfig,
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

impl Stores {
    /// `{ping: 1}` against MongoDB.
    pub async fn ping_mongo(&self) -> Result<(), StoreError> {
        crate::store::ping_mongo(&self.db).await
    }

    /// `PING` against Redis.
    pub async fn ping_redis(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }

    /// End the MongoDB driver's server sessions and close its connections
    /// now. (Dropped, the driver ends them in a task of its own, whenever
    /// that is; after this, nothing more is sent to MongoDB.)
    pub async fn close(&self) {
        self.db.client().clone().shutdown().immediate(true).await;
    }
}

/// Why the actor system could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid mail settings")]
    Mail(#[source] MailError),
    #[error("cannot start the actor tree")]
    Spawn(#[from] SpawnErr),
    #[error("invalid periodic job queue.schedules.{name}")]
    Schedule {
        name: String,
        #[source]
        source: Box<ScheduleError>,
    },
    #[error("queue.schedules.{name}.type: no handler runs jobs of type {kind:?}")]
    ScheduleType { name: String, kind: String },
}

/// The job types the service itself handles: `build` registers exactly
/// these (a debug assertion there keeps the list true), so a schedule's
/// `type` can be checked without building the handlers (`config check`).
pub const SERVICE_JOB_TYPES: &[&str] = &["noop", scheduler::PRUNE, "user.created", "user.login"];

/// The actor-side settings `start` refuses that can be checked without a
/// server or any I/O: the mail sender and SMTP URL, and the type of each
/// periodic job whose pattern parses (among [`SERVICE_JOB_TYPES`]; the
/// pattern is the configuration's own check). Every problem found.
pub fn check_config(config: &SystemConfig) -> Vec<StartError> {
    let mut problems = Vec::new();
    if let Err(err) = crate::mail::check(&config.mail) {
        problems.push(StartError::Mail(err));
    }
    // A pattern that does not parse is the configuration's own check
    // (`Schedule::parse`); here only the types of those that do.
    for (name, schedule) in &config.queue.schedules {
        if let Ok(parsed) = Schedule::parse(name, schedule) {
            if !SERVICE_JOB_TYPES.contains(&parsed.kind.as_str()) {
                problems.push(StartError::ScheduleType {
                    name: name.clone(),
                    kind: parsed.kind,
                });
            }
        }
    }
    problems
}

/// The running actor tree. Dropping it does not stop it: call
/// [`ActorSystem::shutdown`].
pub struct ActorSystem {
    handles: Handles,
    grace: Duration,
    /// Prepares the database (migrations) while MongoDB is unreachable at
    /// start; aborted and awaited at shutdown.
    database: Option<JoinHandle<()>>,
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
        // Computed once: every part of this instance names it the same way.
        let instance: Arc<str> = instance_id().into();
        let database = prepare_database(
            stores.db.clone(),
            Arc::clone(&indexes_ready),
            config.store_timeout,
            Arc::clone(&instance),
        )
        .await;
        let (children, mut handles) = build(
            &config,
            &stores,
            mailer,
            extra_jobs,
            (instance, indexes_ready),
        )?;
        let places = places(&children, &handles.executor_stats);
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
        handles.introspection = Some(TreeView::new(
            supervisor,
            places,
            handles.queue.clone(),
            handles.tree.clone(),
            handles.events.clone(),
            config.call_timeout,
        ));
        Ok(Self {
            handles,
            grace: config.shutdown_grace,
            database,
        })
    }

    /// How the rest of the service reaches the actors.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// Stop every actor, last started first, each within the grace period
    /// (the poller lets running jobs finish), and the database preparation.
    pub async fn shutdown(self) {
        if let Some(database) = self.database {
            // Aborted at its next await; waited for, so that no migration
            // step is still on its way to MongoDB after this returns.
            database.abort();
            let _ = database.await;
        }
        // Out of the fleet first: from now on no instance lists this one or
        // takes it for dead while its jobs finish. (`Application::run` has
        // usually done so already, as its requests drained.)
        self.handles.fleet.leave().await;
        let supervisor = self.handles.supervisor();
        let grace = self.grace;
        let stopped = ractor::call!(supervisor, |reply| SupervisorMsg::Shutdown { grace, reply });
        if let Err(err) = stopped {
            tracing::warn!(target: "system", error = %err, "actor tree did not shut down cleanly");
        }
        supervisor.stop(None);
    }
}

/// Bring the database to this binary's migrations before the actors use it
/// (see [`crate::migrate`]): an empty database is initialised under the
/// lock; one already migrated is left as it is. One attempt now; if MongoDB
/// is unreachable, keep retrying (with backoff up to 30 s) in a task the
/// [`ActorSystem`] owns (returned); `ready` is set once the database is
/// ready. A database found to need `troupe migrate` only then (MongoDB was
/// down at start, so start-up could not refuse it) is never marked ready:
/// readiness stays 503 and the error says why.
async fn prepare_database(
    db: Database,
    ready: Arc<AtomicBool>,
    timeout: Duration,
    instance: Arc<str>,
) -> Option<JoinHandle<()>> {
    let ledger = MongoLedger::new(&db);
    let options = ApplyOptions::new(instance.as_ref());
    let create = move || {
        let (ledger, options) = (ledger.clone(), options.clone());
        async move { migrate::initialise(&ledger, &migrate::migrations(), &options).await }
    };
    match create().await {
        Ok(_) => {
            ready.store(true, Ordering::Release);
            return None;
        }
        Err(err) if !err.is_transient() => {
            tracing::error!(target: "system", error = %err, "the database needs migrating; not ready");
            return None;
        }
        Err(err) => {
            // One line that names the setting; the retries below repeat it
            // at a growing interval (not the driver's topology dump each time).
            tracing::error!(target: "system", "MongoDB at MONGODB_URI (mongodb.uri) is unreachable at start-up: {}; the service runs but is not ready until it answers (retrying); fix: start MongoDB, or set MONGODB_URI to a reachable server", chain(&err))
        }
    }
    Some(tokio::spawn(async move {
        let mut delay = timeout.max(Duration::from_millis(500));
        loop {
            tokio::time::sleep(delay).await;
            match create().await {
                Ok(_) => {
                    tracing::info!(target: "system", "MongoDB answers; database ready");
                    ready.store(true, Ordering::Release);
                    return;
                }
                Err(err) if !err.is_transient() => {
                    tracing::error!(target: "system", error = %err, "the database needs migrating; not ready");
                    return;
                }
                Err(err) => {
                    tracing::warn!(target: "system", "MongoDB at MONGODB_URI still unreachable: {}", chain(&err));
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }))
}

/// How the rest of the service reaches the actors. Cheap to clone.
#[derive(Clone)]
pub struct Handles {
    /// This instance's id (`host-pid-random`): `lockedBy` on the jobs it
    /// holds, the tag on the events published here, its name in the fleet's
    /// registry.
    pub instance: Arc<str>,
    /// Accounts, sessions, profiles (public ones through the cache).
    pub users: Users,
    pub(crate) user_actor: ActorSlot<UserMsg>,
    pub(crate) cache: ActorSlot<CacheMsg>,
    /// Per-address limits the HTTP layer applies (sign-ups, profile lookups).
    pub limits: Limits,
    /// Refusals and fail-opens of every limit and the login throttle.
    pub limit_metrics: LimitMetrics,
    /// The job queue, for operators: list, get, retry, stats, the pool.
    pub queue: QueueHandle,
    /// The job queue, for producers: enqueue a [`crate::queue::JobSpec`]
    /// (an embedding application's, or `POST /jobs`).
    pub jobs: JobQueue,
    /// The poller's place; the HTTP layer uses `queue`.
    pub(crate) poller: ActorSlot<PollerMsg>,
    /// Publish domain events.
    pub events: Events,
    /// Subscribe to domain events (live streams), this instance's or the fleet's.
    pub registry: Registry,
    /// The events relay's health (readiness) and figures (metrics).
    pub relay: RelayStatus,
    pub event_counts: EventCounts,
    pub cache_stats: Arc<CacheStats>,
    pub tree: TreeHealth,
    /// Counts of each executor place of the pool.
    pub executor_stats: Vec<Arc<ActorStats>>,
    /// Claim and execution histograms, recorded by the queue's actors.
    pub queue_metrics: QueueMetrics,
    /// The queue's figures for `/metrics`, refreshed by the poller.
    pub queue_snapshot: Arc<QueueSnapshot>,
    /// Set once the database is migrated (and so has its indexes).
    pub indexes_ready: Arc<AtomicBool>,
    /// The fleet's registry: the live instances, another's tree, leaving.
    pub fleet: Fleet,
    /// Introspection of the tree (set once it runs).
    introspection: Option<TreeView>,
}

impl Handles {
    /// The live tree, every place's stats, fault injection.
    pub fn introspection(&self) -> &TreeView {
        self.introspection
            .as_ref()
            .expect("handles are handed out once the tree runs")
    }

    /// The root supervisor (shutdown; a test harness kills it).
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        self.introspection().supervisor()
    }

    /// The CacheActor's name in the tree (its figures are `cache_stats`).
    pub fn cache_name(&self) -> &'static str {
        self.cache.name()
    }

    /// Whether the database is migrated (and so has its indexes).
    pub fn indexes_ready(&self) -> bool {
        self.indexes_ready.load(Ordering::Acquire)
    }
}

/// Every place's name and stats: the root's children in start order, then
/// the poller's executors.
fn places(children: &[ChildSpec], executors: &[Arc<ActorStats>]) -> Vec<(String, Arc<ActorStats>)> {
    let children = children
        .iter()
        .map(|child| (child.name().to_owned(), Arc::clone(child.stats())));
    let executors = executors
        .iter()
        .enumerate()
        .map(|(index, stats)| (format!("executor-{index}"), Arc::clone(stats)));
    children.chain(executors).collect()
}

/// The children of the root supervisor, in start order, and their handles.
fn build(
    settings: &SystemConfig,
    stores: &Stores,
    mailer: Mailer,
    extra_jobs: JobHandlers,
    (instance, indexes_ready): (Arc<str>, Arc<AtomicBool>),
) -> Result<(Vec<ChildSpec>, Handles), StartError> {
    let (db, redis) = (&stores.db, &stores.redis);
    let store = JobStore::new(db, &*instance, settings.queue.max_attempts);
    let bus = ActorSlot::new("event-bus");
    let events = Events::new(bus.clone(), Arc::clone(&instance));
    let (user_slot, cache_slot) = (ActorSlot::new("user"), ActorSlot::new("cache"));
    let cache_stats = Arc::new(CacheStats::default());
    let limit_metrics = LimitMetrics::default();
    let limits = Limits::new(redis, &settings.limits, &limit_metrics);
    let (users, cache_args) = users_and_cache(
        settings,
        redis,
        (&user_slot, &cache_slot),
        &cache_stats,
        limits.profile_lookups.clone(),
    );
    let poller = ActorSlot::new("queue-poller");
    let fleet_slot = ActorSlot::new("fleet");
    let queue = QueueHandle::new(poller.clone(), settings.call_timeout);
    let slots = SlotStore::new(db);
    let retention = settings.queue.retention;
    let handlers = JobHandlers::builtin()
        .merge(prune_handlers(store.clone(), slots.clone(), retention))
        .merge(crate::users::jobs::handlers(db, mailer));
    debug_assert!(
        handlers
            .kinds()
            .all(|kind| SERVICE_JOB_TYPES.contains(&kind)),
        "SERVICE_JOB_TYPES misses one of the service's job types"
    );
    let handlers = handlers.merge(extra_jobs);
    let schedules = schedules(&settings.queue, &handlers)?;
    // This instance claims only the types it runs; the fleet's union is
    // what an enqueue accepts (see `queue::types`).
    let types = Arc::new(JobTypes::new(handlers.kinds()));
    let store = store.handling(types.local().clone());
    let beat = Arc::new(beat(settings, redis, &instance, (&queue, &types)));
    let jobs = JobQueue::new(
        store.clone(),
        poller.clone(),
        &settings.queue,
        Arc::clone(&types),
    );
    let actors = Handles {
        instance: Arc::clone(&instance),
        users,
        user_actor: user_slot,
        cache: cache_slot,
        limits,
        limit_metrics,
        queue,
        jobs,
        poller,
        events: events.clone(),
        registry: Registry::default(),
        relay: RelayStatus::default(),
        event_counts: EventCounts::default(),
        cache_stats,
        tree: tree_health(&events),
        executor_stats: (0..settings.queue.executors)
            .map(|_| Arc::default())
            .collect(),
        queue_metrics: QueueMetrics::default(),
        queue_snapshot: Arc::default(),
        indexes_ready,
        fleet: Fleet::new(Arc::clone(&beat), redis.timeout() * 2),
        introspection: None,
    };
    let a = &actors;
    let user_child = user_child(settings, stores, a, a.jobs.clone());
    let scheduler = scheduler_child(settings, (store.clone(), slots), a.jobs.clone(), schedules);
    let relay = relay_child(settings, redis, bus.clone(), a);
    let [bus, audit, counter] = event_children(bus, &a.registry, &a.event_counts);
    let children = vec![
        bus,
        relay,
        audit,
        counter,
        user_child,
        ChildSpec::new(CacheActor, cache_args, a.cache.clone()),
        queue_poller(settings, (store, PauseStore::new(db)), (handlers, types), a),
        scheduler,
        fleet_child(beat, fleet_slot),
    ];
    Ok((children, actors))
}

/// The periodic jobs: `[queue.schedules.*]` and the queue's own
/// `queue.prune` (every `queue.prune_interval`), each of a known type.
fn schedules(config: &QueueConfig, jobs: &JobHandlers) -> Result<Arc<[Schedule]>, StartError> {
    let mut schedules = vec![Schedule::interval(
        scheduler::PRUNE,
        scheduler::PRUNE,
        config.prune_interval,
    )];
    for (name, schedule) in &config.schedules {
        let parsed = Schedule::parse(name, schedule).map_err(|source| StartError::Schedule {
            name: name.clone(),
            source: Box::new(source),
        })?;
        if jobs.get(&parsed.kind).is_none() {
            return Err(StartError::ScheduleType {
                name: name.clone(),
                kind: parsed.kind,
            });
        }
        schedules.push(parsed);
    }
    Ok(schedules.into())
}

/// The QueueSchedulerActor, firing `schedules` (ticking with the poller).
fn scheduler_child(
    settings: &SystemConfig,
    (jobs, slots): (JobStore, SlotStore),
    queue: JobQueue,
    schedules: Arc<[Schedule]>,
) -> ChildSpec {
    let slot: ActorSlot<SchedulerMsg> = ActorSlot::new("queue-scheduler");
    let args = SchedulerArgs {
        schedules,
        jobs,
        slots,
        queue,
        tick: settings.queue.poll_interval,
        retention: settings.queue.retention,
        stats: slot.stats(),
    };
    ChildSpec::new(QueueSchedulerActor, args, slot)
}

/// This instance's id, as written to jobs it holds (`lockedBy`): host,
/// process and a random suffix, so a restarted process is a new instance.
fn instance_id() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

/// The host's name: `HOSTNAME`, else the kernel's, else `unknown`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// What the FleetActor's heartbeats use (and [`Fleet`] shares): this
/// instance, its pool through the queue's handle, and the `local` hook the
/// HTTP layer fills with its tree.
fn beat(
    settings: &SystemConfig,
    redis: &RedisStore,
    instance: &Arc<str>,
    queue: (&QueueHandle, &Arc<JobTypes>),
) -> Beat {
    let me = Identity {
        id: Arc::clone(instance),
        host: host_name(),
        started_at: chrono::Utc::now(),
    };
    let store = FleetStore::new(redis.clone());
    let (queue, types) = (queue.0.clone(), Arc::clone(queue.1));
    Beat::new(store, me, (queue, types), settings.fleet.clone())
}

/// The FleetActor, heartbeating this instance.
fn fleet_child(beat: Arc<Beat>, slot: ActorSlot<FleetMsg>) -> ChildSpec {
    let args = FleetArgs {
        beat,
        stats: slot.stats(),
    };
    ChildSpec::new(FleetActor, args, slot)
}

/// The users' handle and the CacheActor's arguments. The cache loads
/// misses through the UserActor; the handle reads public profiles through
/// the cache, counted against `lookups`.
fn users_and_cache(
    settings: &SystemConfig,
    redis: &RedisStore,
    (user_slot, cache_slot): (&ActorSlot<UserMsg>, &ActorSlot<CacheMsg>),
    cache_stats: &Arc<CacheStats>,
    lookups: FixedWindow,
) -> (Users, CacheArgs) {
    let calls = UserCalls::new(user_slot.clone(), settings.call_timeout);
    let source: Arc<dyn ProfileSource> = Arc::new(calls.clone());
    let cache_args = CacheArgs {
        redis: redis.clone(),
        source,
        config: settings.cache.clone(),
        stats: Arc::clone(cache_stats),
        local: LocalTier::shared(&settings.cache, redis, cache_stats),
        call_timeout: settings.call_timeout,
        actor_stats: cache_slot.stats(),
        grace: settings.shutdown_grace,
    };
    let profiles = CacheClient::new(&cache_args, cache_slot.clone());
    let tokens = Arc::new(Tokens::new(&settings.auth));
    (Users::new(calls, tokens, profiles, lookups), cache_args)
}

/// The UserActor: its service, wired to the job queue, the events, the
/// login throttle and the cache's invalidator.
fn user_child(settings: &SystemConfig, stores: &Stores, a: &Handles, jobs: JobQueue) -> ChildSpec {
    let auth = &settings.auth;
    let with = Collaborators {
        db: stores.db.clone(),
        jobs,
        events: a.events.clone(),
        throttle: Throttle::new(
            stores.redis.clone(),
            auth.throttle.clone(),
            &a.limit_metrics,
        ),
        tokens: a.users.tokens(),
        cache: Invalidator::new(a.cache.clone(), settings.call_timeout),
    };
    let tuning = Tuning {
        bcrypt_cost: auth.bcrypt_cost,
        idempotency: auth.idempotency.clone(),
        scope: RequestScope::new(&auth.refresh_secret),
        refresh_reuse_grace: auth.refresh_reuse_grace,
        call_timeout: settings.call_timeout,
    };
    let args = UserArgs {
        service: Arc::new(UserService::new(with, tuning)),
        stats: a.user_actor.stats(),
        tasks: RequestTasks::default(),
        grace: settings.shutdown_grace,
    };
    ChildSpec::new(UserActor, args, a.user_actor.clone())
}

/// The EventBus (publishing through `bus`) and its two subscribers, in
/// start order: the bus first, so it outlives everything that publishes.
fn event_children(
    bus: ActorSlot<BusMsg>,
    registry: &Registry,
    counts: &EventCounts,
) -> [ChildSpec; 3] {
    let (audit, counter) = (ActorSlot::new("audit-log"), ActorSlot::new("event-counter"));
    let bus_args = BusArgs {
        registry: registry.clone(),
        stats: bus.stats(),
    };
    let audit_args = SubscriberArgs {
        registry: registry.clone(),
        stats: audit.stats(),
    };
    let counter_args = CounterArgs {
        registry: registry.clone(),
        counts: counts.clone(),
        stats: counter.stats(),
    };
    [
        ChildSpec::new(EventBus, bus_args, bus),
        ChildSpec::new(AuditLog, audit_args, audit),
        ChildSpec::new(EventCounter, counter_args, counter),
    ]
}

/// The EventRelay: this instance's events to the fleet's stream, the other
/// instances' to `bus`. Started right after the bus, before anything that
/// publishes, so it relays every event; stopped after them.
fn relay_child(
    settings: &SystemConfig,
    redis: &RedisStore,
    bus: ActorSlot<BusMsg>,
    a: &Handles,
) -> ChildSpec {
    let slot = ActorSlot::new(relay::NAME);
    let args = RelayArgs {
        redis: redis.clone(),
        registry: a.registry.clone(),
        bus,
        instance: Arc::clone(&a.instance),
        config: settings.events.clone(),
        status: a.relay.clone(),
        stats: slot.stats(),
    };
    ChildSpec::new(EventRelay, args, slot)
}

/// The QueuePollerActor (and through it the executor pool), running the
/// job types of `handlers` from `store`.
fn queue_poller(
    settings: &SystemConfig,
    (store, pauses): (JobStore, PauseStore),
    (handlers, types): (JobHandlers, Arc<JobTypes>),
    handles: &Handles,
) -> ChildSpec {
    let queue = Queue {
        metrics: handles.queue_metrics.clone(),
        pauses,
        cancellations: Default::default(),
        store,
        events: handles.events.clone(),
        handlers,
        types,
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
            } => Event::ActorRestarted {
                actor,
                reason,
                restarts,
            },
            TreeEvent::Escalated { actor, reason } => Event::ActorEscalated { actor, reason },
        })
    })
}

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

mod children;
mod database;
mod handles;
pub mod tree;
mod validation;

pub use self::children::instance_id;
use self::children::{
    beat, event_children, fleet_child, queue_poller, relay_child, scheduler_child, user_child,
    users_and_cache,
};
use self::database::prepare_database;
pub use self::database::STORE_COLLECTIONS;
pub use self::handles::Handles;

use std::sync::Arc;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cache::{CacheActor, CacheStats};
use crate::events::config::EventsConfig;
use crate::events::counter::EventCounts;
use crate::events::relay::RelayStatus;
use crate::events::{Event, Events, Registry};
use crate::fleet::config::FleetConfig;
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::Fleet;
use crate::limits::{LimitMetrics, Limits, Sharing, SystemClock};
use crate::mail::{MailError, Mailer};
use crate::queue::handlers::JobHandlers;
use crate::queue::metrics::QueueMetrics;
use crate::queue::producer::JobQueue;
use crate::queue::schedule::{Schedule, ScheduleError};
use crate::queue::scheduler::{self, prune_handlers};
use crate::queue::shared::Queue;
use crate::queue::store::{JobStore, PauseStore, SlotStore};
use crate::queue::types::JobTypes;
use crate::queue::worker::Worker;
use crate::queue::QueueHandle;
use crate::store::{RedisStore, StoreError};
use crate::supervision::health::{TreeEvent, TreeHealth};
use crate::supervision::slot::ActorSlot;
use crate::supervision::supervisor::ChildSpec;
use mongodb::Database;
use ractor::{Actor, SpawnErr};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::CacheConfig;
use crate::limits::LimitsConfig;
use crate::mail::MailConfig;
use crate::queue::config::QueueConfig;
use crate::supervision::budget::RestartPolicy;
use crate::supervision::supervisor::{RootSupervisor, SupervisorArgs, SupervisorMsg};
use crate::users::config::AuthConfig;
use crate::users::keys::{SigningAlg, SigningKeys};
use crate::validate::{ConfigErrors, Validate};
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
    /// This instance's id, when the caller made it already (the binary names
    /// its traces' resource with it before starting); `None`: made at start
    /// by [`instance_id`].
    pub instance: Option<Arc<str>>,
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
    /// Every field the configuration refuses ([`crate::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
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

/// The job types the service handles (`build` registers exactly these, a debug assertion
/// says), so `config check` checks a schedule's `type` without building the handlers.
pub const SERVICE_JOB_TYPES: &[&str] = &[
    "noop",
    "sleep",
    scheduler::PRUNE,
    "user.created",
    "user.login",
    crate::users::notices::PASSWORD_CHANGED,
    crate::users::mail_jobs::PASSWORD_RESET,
    crate::users::mail_jobs::VERIFY_EMAIL,
    crate::users::mail_jobs::ATTACK_NOTICE,
];

/// What `start` refuses beyond the configuration's own rules ([`Validate`], which covers
/// the mail settings) that needs no server or I/O: the type of each periodic job whose
/// pattern parses (among [`SERVICE_JOB_TYPES`]). Every problem found.
pub fn check_config(config: &SystemConfig) -> Vec<StartError> {
    let mut problems = Vec::new();
    // A pattern that does not parse is the configuration's own check (`Schedule::parse`).
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
    /// Shares the per-address limits' counts with the fleet; stopped (after
    /// a last round) and awaited at shutdown.
    sharing: Sharing,
    /// Reloads (and rotates) the signing keys; cancelled and awaited at
    /// shutdown.
    signing_keys: Option<(CancellationToken, JoinHandle<()>)>,
}

impl ActorSystem {
    /// Start every actor, in order, with the service's own job handlers
    /// and `extra_jobs` (an extension's job types).
    ///
    /// Failure: a configuration any rule refuses is
    /// [`StartError::Config`], listing every field error, before anything
    /// starts or any store is touched.
    pub async fn start(
        config: SystemConfig,
        stores: Stores,
        extra_jobs: JobHandlers,
    ) -> Result<Self, StartError> {
        // The same rules the service's loader runs, for a caller without it.
        config.validate()?;
        let mailer = Mailer::new(&config.mail).map_err(StartError::Mail)?;
        let indexes_ready = Arc::new(AtomicBool::new(false));
        // Computed once: every part of this instance names it the same way.
        let instance: Arc<str> = config
            .instance
            .clone()
            .unwrap_or_else(|| instance_id().into());
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
        let places = tree::places(&children, &handles.executor_stats);
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
        let sharing = Sharing::start(handles.limits.clone(), config.limits.share_every);
        let signing_keys = match &handles.signing_keys {
            Some(keys) => Some(start_signing_keys(keys).await),
            None => None,
        };
        Ok(Self {
            handles,
            grace: config.shutdown_grace,
            database,
            sharing,
            signing_keys,
        })
    }

    /// How the rest of the service reaches the actors.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// Stop every actor, last started first, each within the grace period
    /// (the poller lets running jobs finish), the database preparation, and
    /// the limits' sharing.
    pub async fn shutdown(self) {
        // Requests have drained: what the limits let through goes to the
        // fleet in a last round while Redis is still there.
        self.sharing.shutdown().await;
        if let Some((stop, task)) = self.signing_keys {
            stop.cancel();
            let _ = task.await;
        }
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

/// The signing keys loaded (created, for a new fleet) before the first
/// request, then reloaded by a task the caller owns. A first load that
/// fails (MongoDB unreachable) is logged; the task retries.
async fn start_signing_keys(keys: &Arc<SigningKeys>) -> (CancellationToken, JoinHandle<()>) {
    if let Err(err) = keys.reload().await {
        tracing::error!(target: "system", error = %err,
            "signing keys not loaded at start; access tokens can be neither issued nor verified until they are (retrying)");
    }
    let stop = CancellationToken::new();
    (stop.clone(), Arc::clone(keys).spawn(stop))
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
    let store =
        JobStore::new(db, &*instance, settings.queue.max_attempts).configured(&settings.queue);
    let bus = ActorSlot::new("event-bus");
    let events = Events::new(bus.clone(), Arc::clone(&instance));
    let (user_slot, cache_slot) = (ActorSlot::new("user"), ActorSlot::new("cache"));
    let cache_stats = Arc::new(CacheStats::default());
    let (limit_metrics, fleet_metrics) = (LimitMetrics::default(), FleetMetrics::default());
    // Each limit divides its budget by the fleet's size as the heartbeat
    // last read it (no registry read per request).
    let limits = Limits::new(
        redis,
        &settings.limits,
        (&limit_metrics, &fleet_metrics.instances),
        Arc::new(SystemClock::default()),
    );
    let signing_keys = (settings.auth.signing != SigningAlg::HS256)
        .then(|| Arc::new(SigningKeys::new(db, &settings.auth)));
    let ring = signing_keys
        .as_ref()
        .map(|keys| keys.ring().clone())
        .unwrap_or_default();
    let (users, cache_args) = users_and_cache(
        settings,
        redis,
        (&user_slot, &cache_slot),
        &cache_stats,
        (limits.profile_lookups.clone(), ring),
    );
    let poller = ActorSlot::new("queue-poller");
    let fleet_slot = ActorSlot::new("fleet");
    let slots = SlotStore::new(db);
    let retention = settings.queue.retention;
    let handlers = JobHandlers::builtin()
        .merge(prune_handlers(store.clone(), slots.clone(), retention))
        .merge(crate::users::jobs::handlers(db, mailer, &settings.auth));
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
    let (queue_metrics, queue_snapshot) = (QueueMetrics::default(), Arc::default());
    let shared = Arc::new(Queue {
        metrics: queue_metrics.clone(),
        store: store.clone(),
        pauses: PauseStore::new(db),
        cancellations: Default::default(),
        events: events.clone(),
        handlers,
        types: Arc::clone(&types),
        config: settings.queue.clone(),
        snapshot: Arc::clone(&queue_snapshot),
    });
    let queue = QueueHandle::new(poller.clone(), Arc::clone(&shared), settings.call_timeout);
    let beat = beat(settings, redis, &instance, (&queue, &types), fleet_metrics);
    let beat = Arc::new(beat);
    let jobs = JobQueue::new(
        store.clone(),
        poller.clone(),
        &settings.queue,
        (Arc::clone(&types), events.clone()),
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
        worker: Worker::new(Arc::clone(&shared)),
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
        queue_metrics,
        queue_snapshot,
        indexes_ready,
        fleet: Fleet::new(Arc::clone(&beat), redis.timeout() * 2),
        signing_keys,
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
        queue_poller(settings, shared, a),
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

//! [`Handles`]: how the rest of the service reaches the actors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ractor::ActorRef;

use super::tree::TreeView;
use crate::cache::{CacheMsg, CacheStats};
use crate::events::counter::EventCounts;
use crate::events::relay::RelayStatus;
use crate::events::{Events, Registry};
use crate::fleet::Fleet;
use crate::limits::{LimitMetrics, Limits};
use crate::queue::metrics::QueueMetrics;
use crate::queue::poller::PollerMsg;
use crate::queue::producer::JobQueue;
use crate::queue::snapshot::QueueSnapshot;
use crate::queue::worker::Worker;
use crate::queue::QueueHandle;
use crate::supervision::health::TreeHealth;
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;
use crate::supervision::supervisor::SupervisorMsg;
use crate::users::{UserMsg, Users};

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
    /// Runs due jobs on demand: tests whose poller does not claim
    /// (`queue.poller_claims = false`) run their jobs with it.
    pub worker: Worker,
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
    /// The fleet's access-token signing keys (`None` with `auth.signing =
    /// "HS256"`): reloaded by a task the system owns; a test reloads them
    /// by hand after moving `auth.key_clock`.
    pub signing_keys: Option<Arc<crate::users::keys::SigningKeys>>,
    /// Introspection of the tree (set once it runs).
    pub(super) introspection: Option<TreeView>,
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

//! [`TreeView`]: the one handle introspection goes through — the live
//! tree (the root supervisor's children and the poller's executor pool),
//! every place's stats, fault injection, and the tree's health.
//!
//! Snapshots ask the root supervisor and the poller (one message each,
//! with the call timeout); stats and fault switches are read from the
//! places' shared [`ActorStats`] without any message.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;

use crate::events::{Event, Events};
use crate::queue::pool::PoolInfo;
use crate::queue::pool::EXECUTOR_KIND;
use crate::queue::QueueHandle;
use crate::supervision::fault::Fault;
use crate::supervision::health::TreeHealth;
use crate::supervision::place::ActorSnapshot;
use crate::supervision::slot::CallError;
use crate::supervision::stats::ActorStats;
use crate::supervision::supervisor::{ChildSpec, SupervisorMsg};

/// The name the root supervisor goes by in errors.
const ROOT: &str = "root supervisor";

/// The tree as it is now.
#[derive(Debug, Clone)]
pub struct TreeSnapshot {
    /// ractor's id of the root supervisor.
    pub root_id: String,
    /// Why a supervisor gave up on a place, once one has.
    pub escalated: Option<String>,
    /// The root supervisor's children, in start order.
    pub children: Vec<ChildSnapshot>,
}

/// One child of the root supervisor.
#[derive(Debug, Clone)]
pub struct ChildSnapshot {
    pub actor: ActorSnapshot,
    /// The executor pool, on the queue poller (`None` on the others, or if
    /// the poller did not answer).
    pub pool: Option<PoolInfo>,
}

/// No place of the tree has that name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no actor named {0:?}")]
pub struct UnknownActor(pub String);

/// One supervised place: its name, its actor's kind (`UserActor`,
/// `JobExecutor`, …) and its shared stats (and fault switch).
pub(crate) type PlaceStats = (String, &'static str, Arc<ActorStats>);

/// Every place's name, kind and stats: the root's children in start order, then
/// the poller's executors.
pub(crate) fn places(children: &[ChildSpec], executors: &[Arc<ActorStats>]) -> Vec<PlaceStats> {
    let children = children.iter().map(|child| {
        let stats = Arc::clone(child.stats());
        (child.name().to_owned(), child.kind(), stats)
    });
    let executors = executors.iter().enumerate().map(|(index, stats)| {
        let stats = Arc::clone(stats);
        (format!("executor-{index}"), EXECUTOR_KIND, stats)
    });
    children.chain(executors).collect()
}

/// Introspection of one running tree. Cheap to clone.
#[derive(Clone)]
pub struct TreeView {
    supervisor: ActorRef<SupervisorMsg>,
    queue: QueueHandle,
    /// The root's children in start order, then the executors.
    places: Arc<[PlaceStats]>,
    health: TreeHealth,
    events: Events,
    call_timeout: Duration,
}

impl TreeView {
    pub(crate) fn new(
        supervisor: ActorRef<SupervisorMsg>,
        places: Vec<PlaceStats>,
        queue: QueueHandle,
        health: TreeHealth,
        events: Events,
        call_timeout: Duration,
    ) -> Self {
        Self {
            supervisor,
            queue,
            places: places.into(),
            health,
            events,
            call_timeout,
        }
    }

    /// The root supervisor's children and the poller's pool. Fails only if
    /// the root supervisor does not answer; a poller that does not answer
    /// leaves its `pool` empty.
    pub async fn snapshot(&self) -> Result<TreeSnapshot, CallError> {
        let (children, pool) = tokio::join!(self.children(), self.queue.pool());
        let mut pool = pool.ok();
        let poller = self.queue.poller_name();
        let children = children?
            .into_iter()
            .map(|actor| ChildSnapshot {
                pool: if actor.name == poller {
                    pool.take()
                } else {
                    None
                },
                actor,
            })
            .collect();
        Ok(TreeSnapshot {
            root_id: self.supervisor.get_id().to_string(),
            escalated: self.health.escalated(),
            children,
        })
    }

    async fn children(&self) -> Result<Vec<ActorSnapshot>, CallError> {
        let asked = self
            .supervisor
            .call(SupervisorMsg::Children, Some(self.call_timeout))
            .await;
        match asked {
            Ok(CallResult::Success(children)) => Ok(children),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(ROOT)),
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(ROOT)),
        }
    }

    /// Arm `fault` on the place called `name` (met by its next message),
    /// log it and publish [`Event::FaultInjected`].
    pub fn inject(&self, name: &str, fault: Fault) -> Result<(), UnknownActor> {
        let stats = self
            .stats_of(name)
            .ok_or_else(|| UnknownActor(name.to_owned()))?;
        stats.inject(fault);
        let fault = fault.describe();
        tracing::warn!(target: "system", actor = %name, %fault, "fault injected");
        self.events.publish(Event::FaultInjected {
            actor: name.to_owned(),
            fault,
        });
        Ok(())
    }

    /// Every place's name and stats: the root supervisor's children in
    /// start order, then the executors. Read from shared counters, without
    /// a message to any actor (what `/metrics` reports).
    pub fn all_stats(&self) -> impl Iterator<Item = (&str, &Arc<ActorStats>)> {
        self.places
            .iter()
            .map(|(name, _, stats)| (name.as_str(), stats))
    }

    /// Every place's actor kind and stats, in the order of [`Self::all_stats`]
    /// (what `/metrics` adds up by kind: a closed set, fixed in the code).
    pub fn stats_by_kind(&self) -> impl Iterator<Item = (&'static str, &Arc<ActorStats>)> {
        self.places.iter().map(|(_, kind, stats)| (*kind, stats))
    }

    fn stats_of(&self, name: &str) -> Option<&Arc<ActorStats>> {
        self.all_stats()
            .find_map(|(place, stats)| (place == name).then_some(stats))
    }

    /// `Some(reason)` once a supervisor has given up on a place.
    pub fn escalated(&self) -> Option<String> {
        self.health.escalated()
    }

    /// The root supervisor (shutdown; a test harness kills it).
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }
}

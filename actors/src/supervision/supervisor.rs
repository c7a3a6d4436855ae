//! The root supervisor: starts the service's actors, restarts them when they
//! fail, and stops them in order at shutdown.
//!
//! # Contract
//! - Children are started in the order of their [`ChildSpec`]s and stopped in
//!   the reverse order ([`SupervisorMsg::Shutdown`]), so that an actor is never
//!   left running without the actors it talks to.
//! - A child that panics, returns an error, or stops on its own is restarted at
//!   once with the same arguments. Its [`ActorSlot`] is emptied while it is down
//!   (callers get a prompt `Unavailable`) and refilled with the new reference.
//! - Restart intensity is bounded: at most `max_restarts` restarts of one child
//!   within `within`. Past that the supervisor *escalates*: it leaves the child
//!   down, logs in the `system` category and raises [`TreeHealth::escalated`],
//!   which turns `/health/ready` to 503 so an orchestrator replaces the process.
//!
//! ractor's default supervision stops the supervisor when any child exits; this
//! actor overrides `handle_supervisor_evt` to implement the policy above.
//!
//! State that must survive a restart lives in MongoDB or Redis, never only in a
//! child actor: a restarted child starts from its arguments and the stores.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use serde::Deserialize;

use crate::events::{EventKind, Events};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::{ActorStats, Timings};

/// How often a child may be restarted before the supervisor gives up on it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RestartPolicy {
    /// Restarts allowed within `within`.
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

type StartFn =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// How to (re)start one child, and how to tell the world it is down.
#[derive(Clone)]
pub struct ChildSpec {
    name: &'static str,
    kind: &'static str,
    stats: Arc<ActorStats>,
    start: StartFn,
    on_down: Arc<dyn Fn() + Send + Sync>,
}

impl ChildSpec {
    /// A child running `actor` with `args`, published through `slot`.
    pub fn new<A>(actor: A, args: A::Arguments, slot: ActorSlot<A::Msg>) -> Self
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        let name = slot.name();
        let stats = slot.stats();
        let kind = std::any::type_name::<A>()
            .rsplit("::")
            .next()
            .unwrap_or("actor");
        let down_slot = slot.clone();
        let start: StartFn = Arc::new(move |supervisor: ActorCell| {
            let (actor, args, slot) = (actor.clone(), args.clone(), slot.clone());
            Box::pin(async move {
                // No registry name: names are process-global in ractor.
                let (actor_ref, _) = Actor::spawn_linked(None, actor, args, supervisor).await?;
                slot.set(actor_ref.clone());
                Ok(actor_ref.get_cell())
            })
        });
        Self {
            name,
            kind,
            stats,
            start,
            on_down: Arc::new(move || down_slot.clear()),
        }
    }
}

/// A failure the supervisor saw, for introspection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub reason: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A snapshot of one child, as reported by [`SupervisorMsg::Children`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChildInfo {
    pub name: &'static str,
    pub kind: &'static str,
    pub messages_handled: u64,
    pub mailbox_backlog: u64,
    pub handling: Option<Timings>,
    pub id: Option<String>,
    pub running: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub restarts: u64,
    pub restart_budget_left: u32,
    pub last_failure: Option<Failure>,
}

/// Health of the whole tree, shared with the readiness probe.
#[derive(Clone, Default)]
pub struct TreeHealth {
    escalated: Arc<Mutex<Option<String>>>,
}

impl TreeHealth {
    /// `Some(reason)` once the supervisor has given up on a child.
    pub fn escalated(&self) -> Option<String> {
        self.escalated.lock().expect("tree health lock").clone()
    }

    pub fn escalate(&self, reason: String) {
        self.escalated
            .lock()
            .expect("tree health lock")
            .get_or_insert(reason);
    }
}

/// Messages understood by the root supervisor.
pub enum SupervisorMsg {
    /// Report every child's state.
    Children(RpcReplyPort<Vec<ChildInfo>>),
    /// Stop all children, last started first, each within `grace`.
    Shutdown {
        grace: Duration,
        reply: RpcReplyPort<()>,
    },
}

/// Arguments: the children in start order, the restart policy, and the shared health flag.
#[derive(Clone)]
pub struct SupervisorArgs {
    pub children: Vec<ChildSpec>,
    /// Restarts and escalations are published here.
    pub events: Events,
    pub policy: RestartPolicy,
    pub health: TreeHealth,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    started_at: SystemTime,
    restarts: u64,
    recent_restarts: VecDeque<Instant>,
    last_failure: Option<Failure>,
}

pub struct SupervisorState {
    children: Vec<Child>,
    events: Events,
    policy: RestartPolicy,
    health: TreeHealth,
    shutting_down: bool,
}

impl SupervisorState {
    fn budget_left(&self, child: &Child) -> u32 {
        let used = child
            .recent_restarts
            .iter()
            .filter(|t| t.elapsed() < self.policy.within)
            .count() as u32;
        self.policy.max_restarts.saturating_sub(used)
    }
}

/// The root of the actor tree.
#[derive(Clone, Copy, Default)]
pub struct RootSupervisor;

impl Actor for RootSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let cell = (spec.start)(myself.get_cell()).await?;
            tracing::info!(target: "system", actor = spec.name, id = %cell.get_id(), "actor started");
            children.push(Child {
                restarts: spec.stats.restarts(),
                spec,
                cell: Some(cell),
                started_at: SystemTime::now(),
                recent_restarts: VecDeque::new(),
                last_failure: None,
            });
        }
        Ok(SupervisorState {
            children,
            events: args.events,
            policy: args.policy,
            health: args.health,
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Children(reply) => {
                let infos = state
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.spec.name,
                        kind: c.spec.kind,
                        messages_handled: c.spec.stats.handled(),
                        mailbox_backlog: c.spec.stats.backlog(),
                        handling: c.spec.stats.timings(),
                        id: c.cell.as_ref().map(|cell| cell.get_id().to_string()),
                        running: c.cell.is_some(),
                        started_at: c.started_at.into(),
                        restarts: c.restarts,
                        restart_budget_left: state.budget_left(c),
                        last_failure: c.last_failure.clone(),
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            SupervisorMsg::Shutdown { grace, reply } => {
                state.shutting_down = true;
                for child in state.children.iter_mut().rev() {
                    if let Some(cell) = child.cell.take() {
                        (child.spec.on_down)();
                        // A child that does not stop within the grace period is killed.
                        if cell
                            .stop_and_wait(Some("shutdown".into()), Some(grace))
                            .await
                            .is_err()
                        {
                            tracing::warn!(target: "system", actor = child.spec.name, "actor did not stop in time; killed");
                            cell.kill();
                        }
                        tracing::info!(target: "system", actor = child.spec.name, "actor stopped");
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "supervision")]
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!(
                    "stopped: {}",
                    reason.unwrap_or_else(|| "no reason given".into())
                ),
            ),
            _ => return Ok(()),
        };
        if state.shutting_down {
            return Ok(());
        }
        let policy = state.policy;
        let Some(child) = state
            .children
            .iter_mut()
            .find(|c| c.cell.as_ref().is_some_and(|c| c.get_id() == cell.get_id()))
        else {
            return Ok(()); // not one of ours (or already replaced)
        };
        (child.spec.on_down)();
        child.cell = None;
        // ractor does not stop a panicked actor's own children: stop them
        // (gracefully: they finish their current message) before replacing it.
        cell.stop_children(Some("supervisor restarted".into()));
        child.last_failure = Some(Failure {
            reason: reason.clone(),
            at: chrono::Utc::now(),
        });
        child
            .recent_restarts
            .retain(|t| t.elapsed() < policy.within);
        if child.recent_restarts.len() as u32 >= policy.max_restarts {
            let msg = format!(
                "actor {} exceeded its restart limit ({} in {}); last failure: {reason}",
                child.spec.name,
                policy.max_restarts,
                humantime::format_duration(policy.within)
            );
            tracing::error!(target: "system", "{msg}; not restarting");
            state.events.publish(EventKind::ActorEscalated {
                actor: child.spec.name.into(),
                reason: msg.clone(),
            });
            state.health.escalate(msg);
            return Ok(());
        }
        child.recent_restarts.push_back(Instant::now());
        match (child.spec.start)(myself.get_cell()).await {
            Ok(new_cell) => {
                // Counted in the shared stats too, which `/metrics` reads
                // without asking this actor.
                child.restarts = child.spec.stats.note_restart();
                child.started_at = SystemTime::now();
                tracing::warn!(target: "system", actor = child.spec.name, %reason, restarts = child.restarts, "actor restarted");
                state.events.publish(EventKind::ActorRestarted {
                    actor: child.spec.name.into(),
                    reason,
                    restarts: child.restarts,
                });
                child.cell = Some(new_cell);
            }
            Err(err) => {
                let msg = format!("actor {} could not be restarted: {err}", child.spec.name);
                tracing::error!(target: "system", "{msg}");
                state.events.publish(EventKind::ActorEscalated {
                    actor: child.spec.name.into(),
                    reason: msg.clone(),
                });
                state.health.escalate(msg);
            }
        }
        Ok(())
    }
}

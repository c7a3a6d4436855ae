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
//! - It spawns no task of its own: its only work is starting and stopping
//!   children, in its own handlers.
//!
//! ractor's default supervision stops the supervisor when any child exits; this
//! actor overrides `handle_supervisor_evt` to implement the policy above.
//!
//! State that must survive a restart lives in MongoDB or Redis, never only in a
//! child actor: a restarted child starts from its arguments and the stores.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};

use super::budget::RestartPolicy;
use super::health::TreeHealth;
use super::place::{ActorSnapshot, Place, Verdict};
use super::slot::ActorSlot;
use super::stats::ActorStats;

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
    /// The child's name (its place in the tree).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The child's actor type (`UserActor`, …).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The child's stats and fault switch (shared by every incarnation).
    pub fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }

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

/// Messages understood by the root supervisor.
pub enum SupervisorMsg {
    /// Report every child's state.
    Children(RpcReplyPort<Vec<ActorSnapshot>>),
    /// Stop all children, last started first, each within `grace`.
    Shutdown {
        grace: Duration,
        reply: RpcReplyPort<()>,
    },
}

/// Arguments: the children in start order, the restart policy, and where
/// restarts and escalations are reported.
#[derive(Clone)]
pub struct SupervisorArgs {
    pub children: Vec<ChildSpec>,
    pub policy: RestartPolicy,
    pub health: TreeHealth,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    place: Place,
}

pub struct SupervisorState {
    children: Vec<Child>,
    health: TreeHealth,
    shutting_down: bool,
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
            let place = Place::new(spec.name, spec.kind, Arc::clone(&spec.stats), args.policy);
            children.push(Child {
                spec,
                cell: Some(cell),
                place,
            });
        }
        Ok(SupervisorState {
            children,
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
                let _ = reply.send(state.snapshots());
            }
            SupervisorMsg::Shutdown { grace, reply } => {
                state.stop_all(grace).await;
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
        let Some((cell, reason)) = exit_of(event) else {
            return Ok(());
        };
        if state.shutting_down {
            return Ok(());
        }
        let Some(child) = running_child(&mut state.children, &cell) else {
            return Ok(()); // not one of ours (or already replaced)
        };
        child.went_down(&cell);
        match child.place.failed(&reason) {
            Verdict::Restart(restarts) => {
                child
                    .restart(myself.get_cell(), &state.health, &reason, restarts)
                    .await
            }
            Verdict::GiveUp(why) => state.health.escalate(child.spec.name, why),
        }
        Ok(())
    }
}

/// The actor that exited and why, if `event` is an exit.
fn exit_of(event: SupervisionEvent) -> Option<(ActorCell, String)> {
    match event {
        SupervisionEvent::ActorFailed(cell, err) => Some((cell, format!("failed: {err}"))),
        SupervisionEvent::ActorTerminated(cell, _, reason) => {
            let reason = reason.unwrap_or_else(|| "no reason given".into());
            Some((cell, format!("stopped: {reason}")))
        }
        _ => None,
    }
}

/// The running child whose actor is `cell`.
fn running_child<'a>(children: &'a mut [Child], cell: &ActorCell) -> Option<&'a mut Child> {
    let id = cell.get_id();
    children
        .iter_mut()
        .find(|c| c.cell.as_ref().is_some_and(|c| c.get_id() == id))
}

impl SupervisorState {
    /// Every child as introspection shows it, in start order.
    fn snapshots(&self) -> Vec<ActorSnapshot> {
        let snapshot = |c: &Child| {
            let id = c.cell.as_ref().map(|cell| cell.get_id().to_string());
            c.place.snapshot(id)
        };
        self.children.iter().map(snapshot).collect()
    }

    /// Stop every child, last started first, each within `grace` (killed
    /// past it); failures from now on are not restarted.
    async fn stop_all(&mut self, grace: Duration) {
        self.shutting_down = true;
        for child in self.children.iter_mut().rev() {
            let Some(cell) = child.cell.take() else {
                continue;
            };
            (child.spec.on_down)();
            let stopped = cell
                .stop_and_wait(Some("shutdown".into()), Some(grace))
                .await;
            if stopped.is_err() {
                tracing::warn!(target: "system", actor = child.spec.name, "actor did not stop in time; killed");
                cell.kill();
            }
            tracing::info!(target: "system", actor = child.spec.name, "actor stopped");
        }
    }
}

impl Child {
    /// Its actor `cell` exited: callers get `Unavailable` from now on.
    fn went_down(&mut self, cell: &ActorCell) {
        (self.spec.on_down)();
        self.cell = None;
        // ractor does not stop a panicked actor's own children: stop them
        // (gracefully: they finish their current message) before replacing it.
        cell.stop_children(Some("supervisor restarted".into()));
    }

    /// Start a new incarnation (its `restarts`-th restart, after `reason`),
    /// or escalate if it cannot start.
    async fn restart(
        &mut self,
        supervisor: ActorCell,
        health: &TreeHealth,
        reason: &str,
        restarts: u64,
    ) {
        let name = self.spec.name;
        match (self.spec.start)(supervisor).await {
            Ok(cell) => {
                self.place.started();
                self.cell = Some(cell);
                health.restarted(name, reason, restarts);
            }
            Err(err) => {
                let why = format!("actor {name} could not be restarted: {err}");
                health.escalate(name, why);
            }
        }
    }
}

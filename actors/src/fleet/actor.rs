//! FleetActor: keeps this instance in the fleet's registry and takes over
//! the instances that died.
//!
//! # Contract
//! - Every `fleet.heartbeat_interval` (ractor's `send_interval`, and once at
//!   start) it starts a [`Beat`] in a task it owns: write this instance's
//!   heartbeat and tree to Redis, then take over every instance whose
//!   heartbeat lapsed and have the queue release its jobs. At most one beat
//!   runs at a time: a tick that finds one still running is skipped.
//! - **The mailbox never waits on Redis or MongoDB**: beats run in a task (a
//!   `JoinSet` in its state, aborted with it). Handling times on
//!   `/ops/actors` measure the whole beat (the guard moves into its task).
//! - Leaving the fleet at shutdown is not its job: [`crate::fleet::Fleet::leave`]
//!   does it from the caller's task, so it works whatever state the actor is
//!   in; once left, beats write nothing. A stop or restart of this actor
//!   (fault injection, a panic) only skips heartbeats.
//!
//! # Failure
//! Best effort: Redis down means no heartbeat (counted on `/metrics`,
//! logged once per outage) and no take-over; nothing blocks and nothing
//! else degrades, readiness included. A restarted actor goes on from its
//! arguments (the registry is in Redis). Down for longer than the TTL, the
//! instance is taken for dead and its jobs are released (fenced by their
//! attempt records); its next heartbeat says so in the log.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::fleet::beat::Beat;
use crate::supervision::stats::{ActorStats, Handling};

pub(crate) enum FleetMsg {
    /// Periodic: heartbeat and take-overs.
    Tick,
}

#[derive(Clone)]
pub(crate) struct FleetArgs {
    pub beat: Arc<Beat>,
    pub stats: Arc<ActorStats>,
}

/// The `Tick` timer; aborted when dropped (also if the actor panics).
struct Ticker(JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct FleetState {
    args: FleetArgs,
    /// The beats; aborted with the state.
    tasks: JoinSet<()>,
    /// The beat running, if any.
    beating: Option<AbortHandle>,
    ticker: Option<Ticker>,
}

impl FleetState {
    /// Start a beat unless one runs; `handling` ends with it.
    fn beat(&mut self, handling: Handling) {
        while self.tasks.try_join_next().is_some() {}
        if self.beating.as_ref().is_some_and(|b| !b.is_finished()) {
            tracing::debug!(target: "system", "the last heartbeat is still running; skipping a tick");
            return;
        }
        let beat = Arc::clone(&self.args.beat);
        self.beating = Some(self.tasks.spawn(async move {
            let _handling = handling;
            beat.run().await;
        }));
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct FleetActor;

impl Actor for FleetActor {
    type Msg = FleetMsg;
    type State = FleetState;
    type Arguments = FleetArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<FleetMsg>,
        args: FleetArgs,
    ) -> Result<FleetState, ActorProcessingErr> {
        Ok(FleetState {
            args,
            tasks: JoinSet::new(),
            beating: None,
            ticker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<FleetMsg>,
        state: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        let stats = Arc::clone(&state.args.stats);
        let period = state.args.beat.config.heartbeat_interval;
        state.ticker = Some(Ticker(myself.send_interval(period, move || {
            stats.sent();
            FleetMsg::Tick
        })));
        // The first heartbeat now, not one interval after start.
        state.args.stats.sent();
        let _ = myself.cast(FleetMsg::Tick);
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "fleet")]
    async fn handle(
        &self,
        myself: ActorRef<FleetMsg>,
        message: FleetMsg,
        state: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        let handling = state.args.stats.begin(&myself.get_cell()).await;
        match message {
            FleetMsg::Tick => state.beat(handling),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<FleetMsg>,
        state: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker = None;
        state.tasks.shutdown().await;
        Ok(())
    }
}

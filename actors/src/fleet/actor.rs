//! FleetActor: keeps this instance in the fleet's registry and takes over
//! the instances that died.
//!
//! # Contract
//! - Every `fleet.heartbeat_interval` (ractor's `send_interval`, and once at
//!   start) it starts a [`Beat`] in a task it owns: write this instance's
//!   heartbeat and tree to Redis, then take over every instance whose
//!   heartbeat lapsed and have the queue release its jobs. At most one beat
//!   runs at a time: a tick that finds one still running is skipped.
//! - **The mailbox never waits on Redis or MongoDB**: the beat and the leave
//!   run in tasks (a `JoinSet` in its state, aborted if the actor dies).
//!   Handling times on `/ops/actors` measure the whole beat (the guard moves
//!   into its task).
//! - `Leave` (sent when shutdown begins) removes this instance from the
//!   registry at once and stops the heartbeats for good; `post_stop` does
//!   the same if nobody sent it.
//!
//! # Failure
//! Best effort: Redis down means no heartbeat (counted on `/metrics`,
//! logged once per outage) and no take-over; nothing blocks and nothing
//! else degrades, readiness included. A restarted actor goes on from its
//! arguments (the registry is in Redis).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::fleet::beat::Beat;
use crate::supervision::stats::ActorStats;

pub(crate) enum FleetMsg {
    /// Periodic: heartbeat and take-overs.
    Tick,
    /// Shutdown has begun: leave the registry now (answered once done).
    Leave(RpcReplyPort<()>),
}

#[derive(Clone)]
pub(crate) struct FleetArgs {
    pub beat: Arc<Beat>,
    pub stats: Arc<ActorStats>,
    /// Longest wait for Redis when leaving.
    pub leave_within: Duration,
}

pub(crate) struct FleetState {
    args: FleetArgs,
    /// The beat and the leave; aborted with the state.
    tasks: JoinSet<()>,
    /// The beat running, if any.
    beating: Option<AbortHandle>,
    timer: Option<JoinHandle<()>>,
}

impl FleetState {
    fn stop_ticking(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }

    /// Start a beat unless one runs; `handling` ends with it.
    fn beat(&mut self, handling: crate::supervision::stats::Handling) {
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
            timer: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<FleetMsg>,
        state: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        let stats = Arc::clone(&state.args.stats);
        let period = state.args.beat.config.heartbeat_interval;
        state.timer = Some(myself.send_interval(period, move || {
            stats.sent();
            FleetMsg::Tick
        }));
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
            FleetMsg::Leave(reply) => {
                state.stop_ticking();
                let (beat, bound) = (Arc::clone(&state.args.beat), state.args.leave_within);
                state.tasks.spawn(async move {
                    let _handling = handling;
                    beat.leave(bound).await;
                    let _ = reply.send(());
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<FleetMsg>,
        state: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_ticking();
        // Waits for a beat writing (it holds the lock), then removes the keys.
        state.args.beat.leave(state.args.leave_within).await;
        state.tasks.shutdown().await;
        Ok(())
    }
}

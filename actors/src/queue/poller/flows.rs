//! The poller's sweep of the flows' waiting jobs ([`crate::queue::flow`]):
//! at a tick, once per `queue.flow_sweep`, one page of them (settled in a
//! task the poller owns, one at a time), a cursor moving through them.

use std::time::Instant;

use mongodb::bson::oid::ObjectId;
use ractor::ActorRef;

use super::{send, PollerMsg, PollerState};
use crate::queue::flow::Swept;

/// Where the sweep stands.
#[derive(Default)]
pub(super) struct FlowSweep {
    /// The last waiting job the previous sweep looked at (`None`: start over).
    cursor: Option<ObjectId>,
    /// When the last sweep started.
    last: Option<Instant>,
    /// A sweep is under way.
    running: bool,
}

impl PollerState {
    /// Sweep a page of waiting jobs if one is due (not in a test whose
    /// worker runs the jobs: it sweeps when it says).
    pub(super) fn sweep_flows(&mut self, myself: &ActorRef<PollerMsg>) {
        let config = &self.args.queue.config;
        let sweep = &mut self.flow_sweep;
        let due = sweep
            .last
            .is_none_or(|last| last.elapsed() >= config.flow_sweep);
        if !config.poller_claims || sweep.running || !due {
            return;
        }
        (sweep.running, sweep.last) = (true, Some(Instant::now()));
        let cursor = sweep.cursor;
        let (queue, me, stats) = self.task_context(myself);
        self.tasks.spawn(async move {
            let swept = queue.flows().sweep(cursor).await;
            let swept = swept
                .inspect_err(|err| tracing::warn!(target: "worker", error = %crate::queue::error::brief(err), "sweeping the waiting jobs failed"))
                .ok();
            send(&me, &stats, PollerMsg::Swept(swept));
        });
    }

    /// A sweep ended (`None`: it failed; the next starts over).
    pub(super) fn on_swept(&mut self, myself: &ActorRef<PollerMsg>, swept: Option<Swept>) {
        self.flow_sweep.running = false;
        self.flow_sweep.cursor = swept.and_then(|s| s.cursor);
        if swept.is_some_and(|s| s.settled.released > 0) {
            // Released jobs are due: list them now.
            self.candidates.due_again();
            self.wake(myself);
        }
    }
}

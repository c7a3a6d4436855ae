//! The poller's clock: its periodic `Tick`, and at each tick the read of
//! the pauses (at most every [`PAUSES_READ_EVERY`]) before the tick's work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::task::JoinHandle;

use super::{send, PollerMsg, PollerState};
use crate::queue::pause::Pauses;
use crate::supervision::stats::ActorStats;

/// The pauses are read at most this often (from one read's start to the
/// next's), however short the tick: on a 10 ms tick (tests' eager pollers)
/// a read per tick would add a third to the store's load. With a tick of
/// 200 ms or more (1 s by default), every tick reads them.
const PAUSES_READ_EVERY: Duration = Duration::from_millis(200);

/// Periodic messages; aborted when dropped (also if the poller panics).
#[derive(Default)]
pub(super) struct Timers(Vec<JoinHandle<()>>);

impl Timers {
    /// Send `message()` to `poller` every `period`, counting it in its backlog.
    pub(super) fn every(
        &mut self,
        poller: &ActorRef<PollerMsg>,
        stats: &Arc<ActorStats>,
        period: Duration,
        message: fn() -> PollerMsg,
    ) {
        let stats = Arc::clone(stats);
        self.0.push(poller.send_interval(period, move || {
            stats.sent();
            message()
        }));
    }

    pub(super) fn stop(&mut self) {
        self.0.drain(..).for_each(|timer| timer.abort());
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ticks and pauses.
impl PollerState {
    /// A tick: read the pauses (in a task), then [`on_tick_pauses`](Self::on_tick_pauses).
    pub(super) fn on_tick(&mut self, myself: &ActorRef<PollerMsg>) {
        self.snapshot.tick();
        self.sweep_flows(myself);
        let due = !self.reading_pauses
            && self
                .pauses_read_at
                .is_none_or(|last| last.elapsed() >= PAUSES_READ_EVERY);
        if !due {
            return self.on_tick_pauses(myself, None);
        }
        self.reading_pauses = true;
        self.pauses_read_at = Some(Instant::now());
        let (queue, me, stats) = self.task_context(myself);
        self.tasks.spawn(async move {
            let read = queue.pauses.read().await;
            let read = read
                .inspect_err(|err| tracing::warn!(target: "worker", error = %crate::queue::error::brief(err), "reading the pauses failed; the last ones read stay"))
                .ok();
            send(&me, &stats, PollerMsg::TickPauses(Some(read)));
        });
    }

    /// The tick's work, with the pauses it read (`None`: it read none;
    /// `Some(None)`: the read failed).
    pub(super) fn on_tick_pauses(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        read: Option<Option<Pauses>>,
    ) {
        if let Some(read) = read {
            self.reading_pauses = false;
            if let Some(pauses) = read {
                self.apply_pauses(pauses);
            }
        }
        self.candidates.tick();
        self.wake(myself);
    }

    pub(super) fn apply_pauses(&mut self, pauses: Pauses) {
        if *self.pauses != pauses {
            tracing::info!(target: "worker", queue = pauses.queue, types = ?pauses.types, "pauses changed");
            self.pauses = Arc::new(pauses);
            // Candidates listed under the old pauses may be paused now.
            self.candidates.pauses_changed();
        }
    }
}

//! QueueSchedulerActor: fires the periodic jobs ([`crate::queue::schedule`])
//! once per slot across every instance.
//!
//! # Contract
//! - Ticks every `queue.poll_interval` (ractor's `send_interval`). At each
//!   tick it works out, in memory, which slots of each schedule are due
//!   ([`schedule::due`]) and fires them in one task it owns (a `JoinSet`);
//!   the task reports the slots it handled with `Fired`. One such task at a
//!   time: a tick while one runs does nothing. **The mailbox never waits on
//!   MongoDB.**
//! - Firing a slot: insert `{_id: "<name>@<slot time>", jobId}` into
//!   `queue_slots` ([`crate::queue::store::slots`]; a unique `_id`, atomic on MongoDB and FerretDB), then
//!   insert the job with `_id: jobId`. Every instance tries every slot;
//!   the one whose slot insert wins picks the job's id, the others read it
//!   back and insert the same job, which the unique `_id` makes a no-op once
//!   it exists. So each slot has exactly one job, and a crash between the
//!   two inserts loses nothing: the other instances insert the job at the
//!   same tick, and a (re)started instance first makes sure the latest slot
//!   of each schedule has its job. The slot documents stay (so a slot never
//!   fires twice) until the `queue.prune` job deletes those older than
//!   `queue.retention`.
//! - The instance that inserted a job has its poller claim it at once.
//! - Missed slots: after the whole fleet was down (or this instance could
//!   not reach MongoDB), only the latest missed slot fires. The queue's own
//!   `queue.prune` schedule does not catch up (it prunes at its next slot).
//!
//! # Failure
//! No state but the last slot fired per schedule (in memory; a restart
//! starts from the latest slot, which is then found fired). A slot whose
//! firing failed is tried again at the next tick while it is recent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, oid::ObjectId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{JoinHandle, JoinSet};

use crate::queue::error::QueueError;
use crate::queue::handlers::JobHandlers;
use crate::queue::producer::JobQueue;
use crate::queue::schedule::{self, Schedule};
use crate::queue::store::{JobStore, SlotStore};
use crate::supervision::stats::ActorStats;

/// The queue's own periodic job: prune old jobs, attempts and slots.
pub const PRUNE: &str = "queue.prune";

/// The `queue.prune` job type: completed and cancelled jobs, finished
/// attempt records and slots older than `retention` are deleted.
pub fn prune_handlers(jobs: JobStore, slots: SlotStore, retention: Duration) -> JobHandlers {
    JobHandlers::new().with(PRUNE, move |_job| {
        let (jobs, slots) = (jobs.clone(), slots.clone());
        async move {
            let pruned = jobs.prune(retention).await?;
            let slots = slots.prune(jobs.clock().before(retention)).await?;
            if pruned > 0 {
                tracing::info!(target: "worker", pruned, slots, "old completed jobs deleted");
            }
            Ok(doc! { "jobs": pruned as i64, "slots": slots as i64 })
        }
    })
}

pub(crate) enum SchedulerMsg {
    Tick,
    /// Internal: the firing task handled these slots (schedule index, slot).
    Fired(Vec<(usize, DateTime<Utc>)>),
}

#[derive(Clone)]
pub(crate) struct SchedulerArgs {
    pub schedules: Arc<[Schedule]>,
    pub jobs: JobStore,
    pub slots: SlotStore,
    /// Has this instance's poller claim the jobs it inserted.
    pub queue: JobQueue,
    pub tick: Duration,
    /// A slot older than this never fires (`queue.retention`: its document
    /// may have been pruned).
    pub retention: Duration,
    pub stats: Arc<ActorStats>,
}

pub(crate) struct SchedulerState {
    args: SchedulerArgs,
    /// The last slot fired (or found fired) per schedule, by index.
    last: Vec<Option<DateTime<Utc>>>,
    /// Whether the latest slots were checked for their jobs (once per start).
    recovered: bool,
    firing: bool,
    tasks: JoinSet<()>,
    timer: Option<JoinHandle<()>>,
}

impl SchedulerState {
    /// Slots a tick's jitter may skip are still fired within this.
    fn lookback(&self) -> Duration {
        (self.args.tick * 4).max(Duration::from_secs(2))
    }

    /// What is due now: (schedule index, slots).
    fn plan(&self, now: DateTime<Utc>) -> Vec<(usize, Vec<DateTime<Utc>>)> {
        let windows = (self.lookback(), self.args.retention);
        plan(&self.args.schedules, &self.last, now, windows)
    }

    fn on_tick(&mut self, myself: &ActorRef<SchedulerMsg>) {
        if self.firing {
            return;
        }
        let plan = self.plan(self.args.jobs.clock().utc());
        let recover = !self.recovered;
        if plan.is_empty() && !recover {
            return;
        }
        self.firing = true;
        let (args, me) = (self.args.clone(), myself.clone());
        self.tasks.spawn(async move {
            if recover {
                recover_latest(&args).await;
            }
            let fired = fire_all(&args, plan).await;
            args.stats.sent();
            let _ = me.cast(SchedulerMsg::Fired(fired));
        });
    }

    fn on_fired(&mut self, fired: Vec<(usize, DateTime<Utc>)>) {
        self.firing = false;
        self.recovered = true;
        record_fired(&mut self.last, fired);
    }
}

/// The last slot fired per schedule at a start at `now`: none, except for a
/// schedule without catch-up, which starts as if its latest slot had fired.
fn initial_last(schedules: &[Schedule], now: DateTime<Utc>) -> Vec<Option<DateTime<Utc>>> {
    schedules
        .iter()
        .map(|s| (!s.catch_up).then(|| s.every.latest(now)).flatten())
        .collect()
}

/// What of `schedules` is due at `now`, given the `last` slot fired of
/// each: (schedule index, its slots), only schedules with a slot due.
fn plan(
    schedules: &[Schedule],
    last: &[Option<DateTime<Utc>>],
    now: DateTime<Utc>,
    windows: (Duration, Duration),
) -> Vec<(usize, Vec<DateTime<Utc>>)> {
    schedules
        .iter()
        .enumerate()
        .map(|(i, s)| (i, schedule::due(&s.every, last[i], now, windows)))
        .filter(|(_, slots)| !slots.is_empty())
        .collect()
}

/// Record the slots handled: each schedule's last slot only moves forward
/// (the report of an older slot after a newer one changes nothing).
fn record_fired(last: &mut [Option<DateTime<Utc>>], fired: Vec<(usize, DateTime<Utc>)>) {
    for (i, slot) in fired {
        last[i] = Some(last[i].map_or(slot, |last| last.max(slot)));
    }
}

/// Fire `plan`'s slots, in order; the slots handled. A schedule whose slot
/// failed is left for the next tick.
async fn fire_all(
    args: &SchedulerArgs,
    plan: Vec<(usize, Vec<DateTime<Utc>>)>,
) -> Vec<(usize, DateTime<Utc>)> {
    let mut fired = Vec::new();
    for (i, slots) in plan {
        let schedule = &args.schedules[i];
        for at in slots {
            match fire(args, schedule, at).await {
                Ok(()) => fired.push((i, at)),
                Err(err) => {
                    tracing::warn!(target: "worker", slot = %schedule.slot_id(at), error = %err, "could not fire a periodic job; retrying at the next tick");
                    break;
                }
            }
        }
    }
    fired
}

/// Fire `schedule`'s slot `at` (see the contract): take the slot, or read
/// the winner's job id, and make sure that job exists.
async fn fire(
    args: &SchedulerArgs,
    schedule: &Schedule,
    at: DateTime<Utc>,
) -> Result<(), QueueError> {
    let Some(job) = args.slots.take(schedule, at).await? else {
        return Ok(()); // pruned meanwhile: too old to matter
    };
    ensure_job(args, schedule, job).await
}

/// Insert `schedule`'s job `id` unless it exists; have it claimed here if
/// this instance inserted it.
async fn ensure_job(
    args: &SchedulerArgs,
    schedule: &Schedule,
    id: ObjectId,
) -> Result<(), QueueError> {
    if args.jobs.insert_scheduled(id, schedule).await? {
        tracing::info!(target: "worker", job = %id, schedule = %schedule.name, kind = %schedule.kind, "periodic job enqueued");
        args.queue.claim_soon(id, &schedule.kind);
    }
    Ok(())
}

/// At start: the latest slot of each schedule gets its job if an
/// instance died between the two inserts (best effort).
async fn recover_latest(args: &SchedulerArgs) {
    for schedule in args.schedules.iter().filter(|s| s.catch_up) {
        let recovered = match args.slots.latest_job(&schedule.name).await {
            Ok(Some(id)) => ensure_job(args, schedule, id).await,
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = recovered {
            tracing::warn!(target: "worker", schedule = %schedule.name, error = %err, "could not check the latest slot's job");
        }
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct QueueSchedulerActor;

impl Actor for QueueSchedulerActor {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        let last = initial_last(&args.schedules, args.jobs.clock().utc());
        Ok(SchedulerState {
            last,
            args,
            recovered: false,
            firing: false,
            tasks: JoinSet::new(),
            timer: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SchedulerMsg>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let stats = Arc::clone(&state.args.stats);
        state.timer = Some(myself.send_interval(state.args.tick, move || {
            stats.sent();
            SchedulerMsg::Tick
        }));
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "scheduler")]
    async fn handle(
        &self,
        myself: ActorRef<SchedulerMsg>,
        message: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.args.stats.begin(&myself.get_cell()).await;
        while let Some(joined) = state.tasks.try_join_next() {
            if let Err(err) = joined {
                tracing::error!(target: "worker", error = %err, "a scheduler task failed");
                state.firing = false;
            }
        }
        match message {
            SchedulerMsg::Tick => state.on_tick(&myself),
            SchedulerMsg::Fired(fired) => state.on_fired(fired),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        // A firing cut short is finished by the other instances (or by
        // this one's next start): see the contract.
        state.tasks.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: (Duration, Duration) = (Duration::from_secs(4), Duration::from_secs(3600));

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn every(name: &str, secs: u64, catch_up: bool) -> Schedule {
        let mut schedule = Schedule::interval(name, "noop", Duration::from_secs(secs));
        schedule.catch_up = catch_up;
        schedule
    }

    #[test]
    fn at_start_only_schedules_without_catch_up_count_their_latest_slot_fired() {
        let schedules = [every("report", 60, true), every("prune", 60, false)];
        let last = initial_last(&schedules, at("2026-12-07T01:30:30Z"));
        assert_eq!(last, [None, Some(at("2026-12-07T01:30:00Z"))]);
    }

    #[test]
    fn at_start_a_catch_up_schedule_fires_its_latest_slot_and_the_other_waits() {
        let schedules = [every("report", 60, true), every("prune", 60, false)];
        let now = at("2026-12-07T01:30:30Z");
        let last = initial_last(&schedules, now);
        assert_eq!(
            plan(&schedules, &last, now, WINDOWS),
            [(0, vec![at("2026-12-07T01:30:00Z")])]
        );
        // At the next slot both are due.
        let mut last = last;
        record_fired(&mut last, vec![(0, at("2026-12-07T01:30:00Z"))]);
        let next = at("2026-12-07T01:31:00.5Z");
        let slot = at("2026-12-07T01:31:00Z");
        assert_eq!(
            plan(&schedules, &last, next, WINDOWS),
            [(0, vec![slot]), (1, vec![slot])]
        );
    }

    #[test]
    fn a_slot_fired_is_not_planned_again() {
        let schedules = [every("report", 60, true)];
        let now = at("2026-12-07T01:30:30Z");
        let mut last = vec![None];
        record_fired(&mut last, vec![(0, at("2026-12-07T01:30:00Z"))]);
        assert!(plan(&schedules, &last, now, WINDOWS).is_empty());
    }

    #[test]
    fn the_last_slot_fired_only_moves_forward() {
        let mut last = vec![Some(at("2026-12-07T01:30:00Z")), None];
        record_fired(
            &mut last,
            vec![
                (0, at("2026-12-07T01:29:00Z")),
                (1, at("2026-12-07T01:29:00Z")),
            ],
        );
        assert_eq!(
            last,
            [
                Some(at("2026-12-07T01:30:00Z")),
                Some(at("2026-12-07T01:29:00Z"))
            ]
        );
    }
}

//! QueuePollerActor: claims due jobs and hands them to idle executors.
//!
//! # Contract
//! - Ticks every `queue.poll_interval`, and wakes at once on `Enqueued` (sent
//!   by this instance whenever it enqueues a job), on `Nudge` and whenever an
//!   executor becomes idle.
//! - A job enqueued here is claimed by its id, without a listing: listing is
//!   the queue's costliest query (on FerretDB it reads every pending job, due
//!   or not), so under steady traffic the poller lists about once a tick
//!   rather than once per job ([`crate::queue::candidates`]).
//! - Claims nothing with `queue.poller_claims = false` (a test then runs
//!   each job itself through [`crate::queue::worker`]).
//! - Claims only for idle executors — a batch of at most as many jobs as
//!   executors are idle (and `queue.claim_batch`), one batch under way at a
//!   time, so no job is claimed that nobody can run — and keeps claiming
//!   without waiting for the next tick while claimable jobs remain.
//! - A claim ([`claims`]; the queries: [`crate::queue::store::batch`]): list
//!   claimable jobs (expired leases, then due jobs by rank: [`crate::queue::priority`];
//!   refreshed every tick, so a job that became due is listed within a tick),
//!   reserve the next attempt of a batch of them (one insert of their unique
//!   attempt records), then `findOneAndUpdate` each reserved one by `_id` in
//!   the state it was listed in, a few at a time. Only the reserver runs the attempt.
//! - Jobs due here that it does not start at once are announced to the
//!   fleet, and the other instances' announcements make it list at once
//!   ([`announce`]).
//! - **The mailbox never waits on MongoDB.** Every store query of the
//!   poller — listings, claims, releases, the pauses' read, the `/metrics`
//!   recount — runs in a task the poller owns (a `JoinSet` in its state,
//!   aborted if the poller dies) and reports back with a message.
//! - Supervises its JobExecutor pool. An executor that dies (a panicking
//!   handler) has its job released at once for retry (not when the lease
//!   expires) and is replaced, within the restart budget.
//! - Only claims and dispatches. Operators' reads and writes (list, get,
//!   stats, pauses, pause, resume, cancel, retry, the release of a dead
//!   instance's jobs) never reach its mailbox: [`crate::queue::QueueHandle`]
//!   does them on the store in the caller's task, then tells the poller what
//!   it must act on — `Paused` (apply these pauses at once), `Nudge` (jobs
//!   are due again). It answers only about its own state: the pauses it
//!   applies and its executor pool.
//! - Reads the pauses ([`crate::queue::pause`]) once per tick (at most
//!   every 200 ms), before it lists, in a task ([`ticks`]); a listing leaves
//!   paused types out, a claim's update excludes them, and nothing is
//!   claimed while the whole queue is paused.
//! - Sweeps the flows' waiting jobs once per `queue.flow_sweep`, a page
//!   at a time, in a task ([`flows`]; see [`crate::queue::flow`]).
//! - Pruning is a periodic job (`queue.prune`, see [`crate::queue::scheduler`]).
//! - Keeps the queue figures of `/metrics` ([`crate::queue::snapshot`])
//!   fresh while someone reads them: at most one count per
//!   `stats_interval`, in a task it owns.
//! - Handling times on `/ops/actors` measure the poller's own work on a
//!   message: deciding what to claim and starting the tasks. One message
//!   can start several store operations (a listing and a batch claim), so
//!   their time is not folded into it: it is on `/metrics`
//!   (`troupe_job_listing_duration_seconds`, `troupe_job_claim_duration_seconds`,
//!   the latter per batch).
//!
//! # Shutdown ([`shutdown`])
//! Stops ticking and claiming, lets running jobs finish within three
//! quarters of the grace period, has the finisher write the outcomes it
//! holds ([`crate::queue::finisher`]), then kills what is still running and
//! releases those jobs, and the jobs claimed too late to run; waits for
//! these releases and the store work in flight until 95% of the grace period
//! (the root supervisor kills the poller at 100%), aborting the rest. When
//! `post_stop` returns, no task of the poller is left to write to the store.
//! Pending jobs stay claimable by any instance.
//!
//! # Failure
//! All queue state is in MongoDB. A restarted poller starts a fresh pool; jobs
//! held by the previous pool finish (the root supervisor stops its executors
//! gracefully) or come back when their leases expire.

mod announce;
mod claims;
mod flows;
mod shutdown;
mod ticks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{oid::ObjectId, DateTime};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::task::JoinSet;

use self::announce::{Announcer, Listener};
use self::claims::ClaimDone;
use self::flows::FlowSweep;
use self::shutdown::{JOBS_SHARE_OF_GRACE, WIND_DOWN_SHARE_OF_GRACE};
use self::ticks::Timers;
use crate::events::Registry;
use crate::queue::candidates::Candidates;
use crate::queue::error::QueueError;
use crate::queue::executor::{ExecutorArgs, ExecutorMsg, JobExecutor, OnFinished};
use crate::queue::finisher::{FinisherTask, StoreSink};
use crate::queue::flow::Swept;
use crate::queue::job::{Candidate, Job};
use crate::queue::pause::Pauses;
use crate::queue::pool::{Pool, PoolInfo, Slot, Work};
use crate::queue::shared::Queue;
use crate::queue::snapshot::Refresher;
use crate::supervision::budget::RestartPolicy;
use crate::supervision::health::TreeHealth;
use crate::supervision::place::{Place, Verdict};
use crate::supervision::stats::ActorStats;

pub(crate) enum PollerMsg {
    /// Periodic wake-up.
    Tick,
    /// Look for claimable jobs now (a job was put back to pending: a retry,
    /// a dead instance's jobs released).
    Nudge,
    /// This instance just enqueued the job `id` of type `kind`, due now,
    /// ranked `rank`: claim it directly, in its place in line, without
    /// listing the queue (or announce it, if it cannot start here at once).
    Enqueued {
        id: ObjectId,
        rank: DateTime,
        kind: String,
    },
    /// This instance just enqueued a job of type `kind`, due now, that only
    /// other instances run: announce it.
    DueElsewhere { kind: String },
    /// Another instance announced due jobs of these types.
    WaitingElsewhere(Vec<String>),
    /// Internal: the announcement's coalescing timer fired.
    Announce,
    /// Internal: a candidate listing finished.
    Listed(Result<Vec<Candidate>, QueueError>),
    /// Internal: a batch claim took this job for `executor` (start it now:
    /// its lease runs).
    Taken { executor: usize, job: Box<Job> },
    /// Internal: a batch claim ended; these of its executors got nothing.
    Claimed(Vec<usize>),
    /// Internal: the pauses read at a tick (`Some(None)`: the read failed;
    /// the last ones read stay), then the tick's work.
    TickPauses(Option<Option<Pauses>>),
    /// Apply these pauses now (an operator just changed them here).
    Paused(Pauses),
    /// The pauses this poller applies now (introspection, tests).
    AppliedPauses { reply: RpcReplyPort<Pauses> },
    /// An executor is idle again.
    Finished { executor: usize, job: ObjectId },
    /// The executor pool (introspection).
    Pool { reply: RpcReplyPort<PoolInfo> },
    /// Internal: a sweep of the flows' waiting jobs ended (`None`: failed).
    Swept(Option<Swept>),
}

impl PollerMsg {
    /// The message's name in its span (`tick`, `listed`, …): no payload.
    fn kind(&self) -> &'static str {
        match self {
            Self::Tick => "tick",
            Self::Nudge => "nudge",
            Self::Enqueued { .. } => "enqueued",
            Self::DueElsewhere { .. } => "due_elsewhere",
            Self::WaitingElsewhere(_) => "waiting_elsewhere",
            Self::Announce => "announce",
            Self::Listed(_) => "listed",
            Self::Taken { .. } => "taken",
            Self::Claimed(_) => "claimed",
            Self::TickPauses(_) => "tick_pauses",
            Self::Paused(_) => "paused",
            Self::AppliedPauses { .. } => "applied_pauses",
            Self::Finished { .. } => "finished",
            Self::Pool { .. } => "pool",
            Self::Swept(_) => "swept",
        }
    }
}

#[derive(Clone)]
pub(crate) struct PollerArgs {
    pub queue: Arc<Queue>,
    /// The shutdown grace period (running jobs get three quarters of it).
    pub grace: Duration,
    /// Restart budget of each executor.
    pub policy: RestartPolicy,
    pub health: TreeHealth,
    pub stats: Arc<ActorStats>,
    /// One per executor place, kept across executor restarts.
    pub executor_stats: Vec<Arc<ActorStats>>,
    /// The bus's subscriptions: the other instances' announcements.
    pub registry: Registry,
}

pub(crate) struct PollerState {
    args: PollerArgs,
    pool: Pool,
    candidates: Candidates,
    /// Store work started by messages: listings, releases, the pauses' read. Dropping the set (the poller died) aborts them; `post_stop`
    /// waits for them.
    tasks: JoinSet<()>,
    /// The batch claim under way, if any ([`Work::Claiming`] on its slots).
    claims: JoinSet<ClaimDone>,
    /// Coalesces this poller's announcements to the fleet.
    announcer: Announcer,
    /// Hands the other instances' announcements to the poller.
    listener: Listener,
    /// The `Tick` timer (ractor's `send_interval`).
    timers: Timers,
    /// What is paused, as last read (applied to listings and claims).
    pauses: Arc<Pauses>,
    /// A read of the pauses is in flight (at most one: a tick meanwhile
    /// goes on with the pauses last read).
    reading_pauses: bool,
    /// When the last read of the pauses started (`None`: never). A tick
    /// within [`PAUSES_READ_EVERY`] of it goes on with the pauses last read.
    pauses_read_at: Option<Instant>,
    /// Keeps the `/metrics` queue figures fresh while someone reads them.
    snapshot: Refresher,
    /// Writes the executors' outcomes in bulk ([`crate::queue::finisher`]).
    finisher: FinisherTask,
    /// The periodic sweep of the flows' waiting jobs.
    flow_sweep: FlowSweep,
}

/// Cast to the poller, counting the message in its mailbox backlog.
fn send(poller: &ActorRef<PollerMsg>, stats: &ActorStats, message: PollerMsg) {
    stats.sent();
    let _ = poller.cast(message);
}

async fn spawn_executor(
    myself: &ActorRef<PollerMsg>,
    (args, finisher): (&PollerArgs, &FinisherTask),
    index: usize,
) -> Result<ActorRef<ExecutorMsg>, ActorProcessingErr> {
    let (poller, stats) = (myself.clone(), Arc::clone(&args.stats));
    let on_finished: OnFinished =
        Arc::new(move |executor, job| send(&poller, &stats, PollerMsg::Finished { executor, job }));
    let args = ExecutorArgs {
        index,
        queue: Arc::clone(&args.queue),
        on_finished,
        stats: Arc::clone(&args.executor_stats[index]),
        finisher: finisher.finisher(),
    };
    let (actor, _) = Actor::spawn_linked(None, JobExecutor, args, myself.get_cell()).await?;
    Ok(actor)
}

/// The executors' supervision.
impl PollerState {
    /// Executor `index` died (`reason`): release its job at once, and start a
    /// new one within its restart budget.
    async fn on_executor_down(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        index: usize,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let slot = &mut self.pool[index];
        slot.actor = None;
        // A claim in flight for it stays `Claiming`: its `Taken` releases
        // the job (or its `Claimed` frees the slot), and no second claim
        // starts for this slot meanwhile.
        if let Work::Busy(held) = slot.work {
            slot.work = Work::Idle;
            tracing::warn!(target: "worker", job = %held.id, attempt = held.attempt, %reason, "releasing the job of a dead executor");
            self.start_release(held, reason.clone());
            self.candidates.due_again(); // it is due again now
        }
        let slot = &mut self.pool[index];
        match slot.place.failed(&reason) {
            Verdict::Restart(restarts) => {
                let executor = spawn_executor(myself, (&self.args, &self.finisher), index);
                slot.actor = Some(executor.await?);
                slot.place.started();
                let name = slot.place.name();
                self.args.health.restarted(name, &reason, restarts);
            }
            Verdict::GiveUp(why) => self.args.health.escalate(slot.place.name(), why),
        }
        self.wake(myself);
        Ok(())
    }
}

/// Jobs enqueued here.
impl PollerState {
    /// This instance enqueued `id` (of `kind`, due now, ranked `rank`):
    /// claim it in its place in line, or announce it if it cannot start
    /// here at once (a job waits in line only while this poller claims).
    fn on_enqueued(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        id: ObjectId,
        rank: DateTime,
        kind: &str,
    ) {
        if !self.starts_at_once(kind) {
            self.announce(myself, kind);
        }
        if self.args.queue.config.poller_claims {
            self.candidates.enqueued(id, rank, kind);
            self.wake(myself);
        }
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct QueuePollerActor;

impl Actor for QueuePollerActor {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PollerMsg>,
        args: PollerArgs,
    ) -> Result<PollerState, ActorProcessingErr> {
        let config = &args.queue.config;
        let sink = StoreSink {
            store: args.queue.store.clone(),
            lease: config.lease,
        };
        let finisher = FinisherTask::start(sink, config.finish_batch, config.finish_delay);
        let mut slots = Vec::with_capacity(args.queue.config.executors);
        for index in 0..args.queue.config.executors {
            slots.push(Slot {
                actor: Some(spawn_executor(&myself, (&args, &finisher), index).await?),
                work: Work::Idle,
                place: Place::new(
                    format!("executor-{index}"),
                    crate::queue::pool::EXECUTOR_KIND,
                    Arc::clone(&args.executor_stats[index]),
                    args.policy,
                ),
            });
        }
        let listener = announce::listen(&args.registry, myself.clone(), Arc::clone(&args.stats));
        let snapshot = Refresher::new(
            Arc::clone(&args.queue.snapshot),
            args.queue.store.clone(),
            args.queue.config.stats_interval,
        );
        Ok(PollerState {
            args,
            pool: Pool::new(slots),
            finisher,
            candidates: Candidates::default(),
            tasks: JoinSet::new(),
            claims: JoinSet::new(),
            announcer: Announcer::default(),
            listener,
            timers: Timers::default(),
            pauses: Arc::default(),
            reading_pauses: false,
            pauses_read_at: None,
            snapshot,
            flow_sweep: FlowSweep::default(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PollerMsg>,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let (config, stats) = (&state.args.queue.config, &state.args.stats);
        let timers = &mut state.timers;
        timers.every(&myself, stats, config.poll_interval, || PollerMsg::Tick);
        // The first tick now: it reads the pauses before anything is listed.
        state.on_tick(&myself);
        // Figures for the first scrape; after this, only on demand.
        state.snapshot.refresh();
        Ok(())
    }

    /// A span per message (`poller`, with the message's kind): local, never
    /// a trace of its own (its listing and claim spans: [`claims`]).
    #[tracing::instrument(skip_all, name = "poller", fields(message = message.kind()))]
    async fn handle(
        &self,
        myself: ActorRef<PollerMsg>,
        message: PollerMsg,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.args.stats.begin(&myself.get_cell()).await;
        state.reap();
        match message {
            PollerMsg::Tick => state.on_tick(&myself),
            PollerMsg::Enqueued { id, rank, kind } => state.on_enqueued(&myself, id, rank, &kind),
            PollerMsg::DueElsewhere { kind } => state.announce(&myself, &kind),
            PollerMsg::WaitingElsewhere(types) => state.on_waiting_elsewhere(&myself, &types),
            PollerMsg::Announce => state.on_announce(),
            PollerMsg::Nudge => {
                state.candidates.due_again();
                state.wake(&myself);
            }
            PollerMsg::Listed(found) => state.on_listed(&myself, found),
            PollerMsg::Taken { executor, job } => state.hand_over(executor, Some(job)),
            PollerMsg::Claimed(lost) => state.on_claimed(&myself, lost),
            PollerMsg::Finished { executor, job } => state.on_finished(&myself, executor, job),
            PollerMsg::TickPauses(read) => state.on_tick_pauses(&myself, read),
            PollerMsg::Paused(pauses) => {
                state.apply_pauses(pauses);
                state.wake(&myself);
            }
            PollerMsg::AppliedPauses { reply } => {
                let _ = reply.send((*state.pauses).clone());
            }
            PollerMsg::Pool { reply } => {
                let _ = reply.send(state.pool.info());
            }
            PollerMsg::Swept(swept) => state.on_swept(&myself, swept),
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "poller_supervision")]
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PollerMsg>,
        event: SupervisionEvent,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("executor crashed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("executor stopped: {}", reason.unwrap_or_default()),
            ),
            _ => return Ok(()),
        };
        match state.pool.index_of(&cell) {
            Some(index) => state.on_executor_down(&myself, index, reason).await,
            None => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        myself: ActorRef<PollerMsg>,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let (started, grace) = (tokio::time::Instant::now(), state.args.grace);
        state.timers.stop();
        state.listener.stop().await;
        // Running jobs get most of the grace period to finish; pending jobs
        // stay claimable by any instance.
        let for_jobs = grace.mul_f64(JOBS_SHARE_OF_GRACE);
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(for_jobs))
            .await;
        // The outcomes held are written before anything is given back:
        // a job whose end is written is not given back (fenced).
        let deadline = started + grace.mul_f64(WIND_DOWN_SHARE_OF_GRACE);
        state.finisher.stop(deadline).await;
        state.wind_down(deadline).await;
        Ok(())
    }
}

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
//! - Claims only for idle executors — one claim in flight per idle executor,
//!   so no job is claimed that nobody can run — and keeps claiming without
//!   waiting for the next tick while claimable jobs remain.
//! - A claim is three steps (see [`crate::queue::store`]): list a batch of claimable
//!   jobs (expired leases, then due jobs by rank: [`crate::queue::priority`];
//!   refreshed every tick, so a job that became due is listed within a tick), reserve the next attempt of
//!   one (its unique attempt record), then `findOneAndUpdate` it by `_id` in
//!   the state it was listed in. Only the reserver runs the attempt.
//! - **The mailbox never waits on MongoDB.** Every store query — listings,
//!   claims, releases, prunes, the ops queries, the `/metrics` recount — runs
//!   in a task the poller owns (a `JoinSet` in its state, aborted if the
//!   poller dies) and reports back with a message or answers its caller.
//! - Supervises its JobExecutor pool. An executor that dies (a panicking
//!   handler) has its job released at once for retry (not when the lease
//!   expires) and is replaced, within the restart budget.
//! - Answers the ops queries (list, get, retry, stats, pool) that
//!   [`crate::queue::QueueHandle`] sends, and releases the jobs of an
//!   instance the fleet found dead (`ReleaseInstance`: their leases end now,
//!   so the expired-lease reclaim runs them, fenced by the attempt record).
//! - Reads the pauses ([`crate::queue::pause`]) once per tick (at most
//!   every 200 ms), before it lists, in a task; a listing leaves paused types out, a claim's update
//!   excludes them, and nothing is claimed while the whole queue is paused.
//!   Answers the operators' pause, resume and cancel requests (store work in
//!   tasks); a cancel of a job running here fires its token at once.
//! - (Pruning is a periodic job now: `queue.prune`, see
//!   [`crate::queue::scheduler`].)
//! - Keeps the queue figures of `/metrics` ([`crate::queue::snapshot`])
//!   fresh while someone reads them: at most one count per
//!   `stats_interval`, in a task it owns.
//! - Handling times on `/ops/actors` measure the poller's own work on a
//!   message: deciding what to claim and starting the tasks. One message
//!   can start several store operations (a listing and a claim per idle
//!   executor), so their time is not folded into it: it is on `/metrics`
//!   (`troupe_job_listing_duration_seconds`, `troupe_job_claim_duration_seconds`).
//!
//! # Shutdown
//! Stops ticking and claiming, lets running jobs finish within three
//! quarters of the grace period, then kills what is still running and
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

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{oid::ObjectId, DateTime};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};
use tokio::task::{JoinHandle, JoinSet};

use crate::events::Event;
use crate::queue::candidates::{Candidates, Next};
use crate::queue::error::{chain, QueueError};
use crate::queue::executor::{ExecutorArgs, ExecutorMsg, JobExecutor, OnFinished};
use crate::queue::job::{Attempt, Candidate, Job, JobPage, JobQuery, Outcome, QueueStats};
use crate::queue::pause::{PauseTarget, Pauses};
use crate::queue::pool::{Held, Pool, PoolInfo, Slot, Work};
use crate::queue::shared::Queue;
use crate::queue::snapshot::Refresher;
use crate::queue::spec::SpecError;
use crate::queue::store::cancel::Cancel;
use crate::queue::store::JobStore;
use crate::supervision::budget::RestartPolicy;
use crate::supervision::health::TreeHealth;
use crate::supervision::place::{Place, Verdict};
use crate::supervision::stats::ActorStats;

type Reply<T> = RpcReplyPort<Result<T, QueueError>>;

/// The pauses are read at most this often (from one read's start to the
/// next's), however short the tick: on a 10 ms tick (tests' eager pollers)
/// a read per tick would add a third to the store's load. With a tick of
/// 200 ms or more (1 s by default), every tick reads them.
const PAUSES_READ_EVERY: Duration = Duration::from_millis(200);

/// Candidates listed per query (see [`crate::queue::store::JobStore::candidates`]).
const CANDIDATE_BATCH: i64 = 256;

pub(crate) enum PollerMsg {
    /// Periodic wake-up.
    Tick,
    /// Look for claimable jobs now (a job was put back to pending).
    Nudge,
    /// This instance just enqueued the job `id`, due now, ranked `rank`:
    /// claim it directly, in its place in line, without listing the queue.
    Enqueued {
        id: ObjectId,
        rank: DateTime,
    },
    /// Internal: a candidate listing finished.
    Listed(Result<Vec<Candidate>, QueueError>),
    /// Internal: a claim for `executor` finished; `None` if it got nothing.
    Claimed {
        executor: usize,
        job: Option<Box<Job>>,
    },
    /// Internal: the pauses read at a tick (`Some(None)`: the read failed;
    /// the last ones read stay), then the tick's work.
    TickPauses(Option<Option<Pauses>>),
    /// Apply these pauses now (this instance just changed them).
    Paused(Pauses),
    /// The pauses as stored.
    Pauses {
        reply: Reply<Pauses>,
    },
    /// Pause (`pause: true`) or resume `target`; the pauses as stored after.
    SetPause {
        target: PauseTarget,
        pause: bool,
        reply: Reply<Pauses>,
    },
    /// The pauses this poller applies now (introspection, tests).
    AppliedPauses {
        reply: RpcReplyPort<Pauses>,
    },
    /// Cancel the job `id`.
    Cancel {
        id: ObjectId,
        reply: Reply<Cancel>,
    },
    /// An executor is idle again.
    Finished {
        executor: usize,
        job: ObjectId,
    },
    List {
        query: JobQuery,
        reply: Reply<JobPage>,
    },
    Get {
        id: ObjectId,
        reply: Reply<Option<(Job, Vec<Attempt>)>>,
    },
    Retry {
        id: ObjectId,
        reply: Reply<Job>,
    },
    Stats {
        reply: Reply<QueueStats>,
    },
    Pool {
        reply: RpcReplyPort<PoolInfo>,
    },
    /// Make the jobs of the dead instance `instance` claimable now.
    ReleaseInstance {
        instance: String,
        reply: Reply<u64>,
    },
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
}

/// What a claim task returns (besides sending it as `Claimed`): the attempt
/// it won for `executor`, if any, so that shutdown can give back a job whose
/// `Claimed` message will never be handled.
struct ClaimDone {
    executor: usize,
    won: Option<Held>,
}

pub(crate) struct PollerState {
    args: PollerArgs,
    pool: Pool,
    candidates: Candidates,
    /// Store work started by messages: listings, releases, prunes, the ops
    /// queries. Dropping the set (the poller died) aborts them; `post_stop`
    /// waits for them.
    tasks: JoinSet<()>,
    /// Claims in flight, at most one per executor slot ([`Work::Claiming`]).
    claims: JoinSet<ClaimDone>,
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
}

/// Periodic messages; aborted when dropped (also if the poller panics).
#[derive(Default)]
struct Timers(Vec<JoinHandle<()>>);

impl Timers {
    /// Send `message()` to `poller` every `period`, counting it in its backlog.
    fn every(
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

    fn stop(&mut self) {
        self.0.drain(..).for_each(|timer| timer.abort());
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Cast to the poller, counting the message in its mailbox backlog.
fn send(poller: &ActorRef<PollerMsg>, stats: &ActorStats, message: PollerMsg) {
    stats.sent();
    let _ = poller.cast(message);
}

/// Claim `candidate` for `executor`, or `None` if someone else has it.
async fn claim(
    queue: &Queue,
    candidate: &Candidate,
    executor: usize,
    paused: &Pauses,
) -> Option<Box<Job>> {
    let name = format!("executor-{executor}");
    let started = Instant::now();
    let claimed = queue
        .store
        .claim(candidate, queue.config.lease, &name, paused)
        .await;
    queue
        .metrics
        .claim_seconds
        .observe(started.elapsed().as_secs_f64());
    match claimed {
        Ok(job) => job.map(Box::new),
        Err(err) => {
            tracing::warn!(target: "worker", job = %candidate.id, error = %err, "claim failed");
            None
        }
    }
}

/// Give `held` back to the queue for an immediate retry.
async fn release(store: &JobStore, held: Held, reason: &str) {
    let released = store
        .fail(
            held.id,
            held.attempt,
            held.max_attempts,
            Outcome::Crashed,
            reason,
            Some(Duration::ZERO),
        )
        .await;
    if let Err(err) = released {
        tracing::warn!(target: "worker", job = %held.id, error = %err, "release failed; the job is retried after its lease");
    }
}

async fn spawn_executor(
    myself: &ActorRef<PollerMsg>,
    args: &PollerArgs,
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
    };
    let (actor, _) = Actor::spawn_linked(None, JobExecutor, args, myself.get_cell()).await?;
    Ok(actor)
}

/// Wait for every task of `tasks` until `deadline`, then abort the rest.
/// Returns what the tasks that finished returned.
async fn drain<T: 'static>(
    tasks: &mut JoinSet<T>,
    deadline: tokio::time::Instant,
) -> Vec<(tokio::task::Id, T)> {
    let mut done = Vec::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await
    {
        if let Ok(finished) = joined {
            done.push(finished);
        }
    }
    tasks.shutdown().await;
    done
}

impl PollerState {
    /// Collect finished tasks (their results went out as messages or
    /// replies), so the sets hold only what still runs.
    fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            if let Err(err) = joined {
                tracing::error!(target: "worker", error = %err, "a queue task failed");
            }
        }
        while let Some(joined) = self.claims.try_join_next_with_id() {
            match joined {
                Ok((task, done)) => self.pool.claim_finished(task, done.executor, done.won),
                Err(err) => tracing::error!(target: "worker", error = %err, "a claim task failed"),
            }
        }
    }

    /// Start a claim for every idle executor, listing candidates when needed.
    fn wake(&mut self, myself: &ActorRef<PollerMsg>) {
        if self.pauses.queue {
            return;
        }
        for index in 0..self.pool.len() {
            if !self.pool[index].is_idle() {
                continue;
            }
            match self.candidates.next() {
                Next::Claim(candidate) => self.start_claim(myself, index, candidate),
                Next::List => return self.start_listing(myself),
                Next::Wait => return,
            }
        }
    }

    fn start_listing(&mut self, myself: &ActorRef<PollerMsg>) {
        let (queue, me, stats) = self.task_context(myself);
        let paused = Arc::clone(&self.pauses);
        self.tasks.spawn(async move {
            let started = Instant::now();
            let found = queue.store.candidates(CANDIDATE_BATCH, &paused).await;
            let took = started.elapsed().as_secs_f64();
            queue.metrics.listing_seconds.observe(took);
            send(&me, &stats, PollerMsg::Listed(found.map_err(Into::into)));
        });
    }

    fn start_claim(&mut self, myself: &ActorRef<PollerMsg>, index: usize, candidate: Candidate) {
        let (queue, me, stats) = self.task_context(myself);
        let paused = Arc::clone(&self.pauses);
        let task = self.claims.spawn(async move {
            let job = claim(&queue, &candidate, index, &paused).await;
            let won = job.as_deref().map(Held::of);
            send(
                &me,
                &stats,
                PollerMsg::Claimed {
                    executor: index,
                    job,
                },
            );
            ClaimDone {
                executor: index,
                won,
            }
        });
        self.pool[index].work = Work::Claiming(task.id());
    }

    /// What a task needs to do store work and report back.
    fn task_context(
        &self,
        myself: &ActorRef<PollerMsg>,
    ) -> (Arc<Queue>, ActorRef<PollerMsg>, Arc<ActorStats>) {
        (
            Arc::clone(&self.args.queue),
            myself.clone(),
            Arc::clone(&self.args.stats),
        )
    }

    /// Give `held` back to the queue, from a task.
    fn start_release(&mut self, held: Held, reason: String) {
        let store = self.args.queue.store.clone();
        self.tasks
            .spawn(async move { release(&store, held, &reason).await });
    }

    /// Answer `reply` with `work`'s result, from a task.
    fn answer<T: Send + 'static>(
        &mut self,
        reply: Reply<T>,
        work: impl Future<Output = Result<T, QueueError>> + Send + 'static,
    ) {
        self.tasks.spawn(async move {
            let _ = reply.send(work.await);
        });
    }

    fn store(&self) -> JobStore {
        self.args.queue.store.clone()
    }
}

/// Handlers of each message.
impl PollerState {
    /// A tick: read the pauses (in a task), then [`on_tick_pauses`](Self::on_tick_pauses).
    fn on_tick(&mut self, myself: &ActorRef<PollerMsg>) {
        self.snapshot.tick();
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
                .inspect_err(|err| tracing::warn!(target: "worker", error = %crate::store::brief_mongo(err), "reading the pauses failed; the last ones read stay"))
                .ok();
            send(&me, &stats, PollerMsg::TickPauses(Some(read)));
        });
    }

    /// The tick's work, with the pauses it read (`None`: it read none;
    /// `Some(None)`: the read failed).
    fn on_tick_pauses(&mut self, myself: &ActorRef<PollerMsg>, read: Option<Option<Pauses>>) {
        if let Some(read) = read {
            self.reading_pauses = false;
            if let Some(pauses) = read {
                self.apply_pauses(pauses);
            }
        }
        self.candidates.tick();
        self.wake(myself);
    }

    fn apply_pauses(&mut self, pauses: Pauses) {
        if *self.pauses != pauses {
            tracing::info!(target: "worker", queue = pauses.queue, types = ?pauses.types, "pauses changed");
            self.pauses = Arc::new(pauses);
            // Candidates listed under the old pauses may be paused now.
            self.candidates.tick();
        }
    }

    /// Pause or resume `target`, from a task; applied here at once.
    fn on_set_pause(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        (target, pause): (PauseTarget, bool),
        reply: Reply<Pauses>,
    ) {
        if let PauseTarget::Type(kind) = &target {
            let types = &self.args.queue.types;
            if !types.is_registered(kind) {
                let refused = SpecError::unknown_type(kind, types);
                let _ = reply.send(Err(refused.into()));
                return;
            }
        }
        let (queue, me, stats) = self.task_context(myself);
        self.tasks.spawn(async move {
            let store = &queue.pauses;
            let written = match pause {
                true => store.pause(&target).await,
                false => store.resume(&target).await,
            };
            let result = match written {
                Ok(()) => store.read().await.map_err(QueueError::from),
                Err(err) => Err(err.into()),
            };
            if let Ok(pauses) = &result {
                tracing::info!(target: "worker", ?target, pause, "pause changed by an operator");
                send(&me, &stats, PollerMsg::Paused(pauses.clone()));
            }
            let _ = reply.send(result);
        });
    }

    /// Cancel the job `id`, from a task: fire its token if it runs here.
    fn on_cancel(&mut self, myself: &ActorRef<PollerMsg>, id: ObjectId, reply: Reply<Cancel>) {
        let (queue, _, _) = self.task_context(myself);
        self.tasks.spawn(async move {
            let result = queue.store.cancel(id).await;
            match &result {
                Ok(Cancel::Cancelled(job)) => {
                    tracing::info!(target: "worker", job = %id, "pending job cancelled");
                    queue.events.publish(Event::JobCancelled {
                        job_id: id.to_hex(),
                        job_type: job.kind.clone(),
                        attempt: job.attempts,
                    });
                }
                Ok(Cancel::Requested(_)) => {
                    let here = queue.cancellations.cancel(id);
                    tracing::info!(target: "worker", job = %id, here, "running job asked to stop");
                }
                Err(_) => {}
            }
            let _ = reply.send(result);
        });
    }

    fn on_listed(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        found: Result<Vec<Candidate>, QueueError>,
    ) {
        let found = found
            .inspect_err(|err| {
                tracing::warn!(target: "worker", error = %chain(err), "listing claimable jobs failed; retrying on the next tick")
            })
            .ok();
        self.candidates.listed(found);
        self.wake(myself);
    }

    fn on_claimed(&mut self, myself: &ActorRef<PollerMsg>, executor: usize, job: Option<Box<Job>>) {
        let slot = &mut self.pool[executor];
        slot.work = Work::Idle;
        if let Some(job) = job {
            let held = Held::of(&job);
            self.args.executor_stats[executor].sent();
            match slot.actor.as_ref().map(|a| a.cast(ExecutorMsg::Run(job))) {
                Some(Ok(())) => slot.work = Work::Busy(held),
                // The executor died while we claimed for it.
                _ => {
                    self.start_release(held, "executor unavailable".into());
                    self.candidates.due_again(); // it is due again now
                }
            }
        }
        self.wake(myself);
    }

    fn on_finished(&mut self, myself: &ActorRef<PollerMsg>, executor: usize, job: ObjectId) {
        if executor < self.pool.len() {
            let slot = &mut self.pool[executor];
            if matches!(&slot.work, Work::Busy(held) if held.id == job) {
                slot.work = Work::Idle;
            }
        }
        // Candidates stay exhausted: a finished job makes no other job due
        // (a failed one is retried after its backoff, at a tick).
        self.wake(myself);
    }

    fn on_retry(&mut self, myself: &ActorRef<PollerMsg>, id: ObjectId, reply: Reply<Job>) {
        let (queue, me, stats) = self.task_context(myself);
        self.tasks.spawn(async move {
            let result = queue.store.retry(id, queue.config.hold).await;
            if result.is_ok() {
                tracing::info!(target: "worker", job = %id, "failed job put back to pending");
                send(&me, &stats, PollerMsg::Nudge);
            }
            let _ = reply.send(result);
        });
    }

    /// Release the jobs of the dead instance `instance`, from a task, then
    /// look for claimable jobs (they are, now).
    fn on_release_instance(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        instance: String,
        reply: Reply<u64>,
    ) {
        let (queue, me, stats) = self.task_context(myself);
        self.tasks.spawn(async move {
            let released = queue.store.release_instance(&instance).await;
            match &released {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(target: "worker", %instance, released = n, "jobs of a dead instance released");
                    send(&me, &stats, PollerMsg::Nudge);
                }
                Err(err) => {
                    tracing::warn!(target: "worker", %instance, error = %err, "could not release a dead instance's jobs")
                }
            }
            let _ = reply.send(released.map_err(Into::into));
        });
    }

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
        // A claim in flight for it stays `Claiming`: its `Claimed` releases
        // the job, and no second claim starts for this slot meanwhile.
        if let Work::Busy(held) = slot.work {
            slot.work = Work::Idle;
            tracing::warn!(target: "worker", job = %held.id, attempt = held.attempt, %reason, "releasing the job of a dead executor");
            self.start_release(held, reason.clone());
            self.candidates.due_again(); // it is due again now
        }
        let slot = &mut self.pool[index];
        match slot.place.failed(&reason) {
            Verdict::Restart(restarts) => {
                slot.actor = Some(spawn_executor(myself, &self.args, index).await?);
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

/// Of the shutdown grace period, the share running jobs get to finish. The
/// root supervisor kills the poller once the whole period is over (and a
/// killed actor's `post_stop` stops where it is), so the rest is kept for
/// what shutdown must still write: giving back the jobs still running or
/// claimed too late to run.
const JOBS_SHARE_OF_GRACE: f64 = 0.75;
/// By this share of the grace period, shutdown aborts what is still in flight.
const WIND_DOWN_SHARE_OF_GRACE: f64 = 0.95;

/// What a job still running at shutdown is recorded as.
const SHUT_DOWN: &str = "the instance shut down before the job finished";

/// Shutdown.
impl PollerState {
    /// After the executors had their share of the grace period: kill those
    /// still running and give their jobs back, give back the jobs claims won
    /// too late, and wait for the store work in flight until `deadline`,
    /// aborting the rest. Nothing of the poller runs after this.
    async fn wind_down(&mut self, deadline: tokio::time::Instant) {
        for held in self.kill_the_busy() {
            self.start_release(held, SHUT_DOWN.into());
        }
        for (task, done) in drain(&mut self.claims, deadline).await {
            self.pool.claim_finished(task, done.executor, done.won);
        }
        for held in self.pool.claimed_too_late() {
            self.start_release(held, SHUT_DOWN.into());
        }
        drain(&mut self.tasks, deadline).await;
        self.snapshot.stop().await;
    }

    /// Kill the executors still running; the attempts they held.
    fn kill_the_busy(&mut self) -> Vec<Held> {
        let mut held = Vec::new();
        for slot in self.pool.slots_mut() {
            let (Some(actor), Work::Busy(job)) = (slot.actor.take(), &slot.work) else {
                continue;
            };
            if actor.get_status() != ActorStatus::Stopped {
                actor.kill();
                held.push(*job);
            }
            slot.work = Work::Idle;
        }
        held
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
        let mut slots = Vec::with_capacity(args.queue.config.executors);
        for index in 0..args.queue.config.executors {
            slots.push(Slot {
                actor: Some(spawn_executor(&myself, &args, index).await?),
                work: Work::Idle,
                place: Place::new(
                    format!("executor-{index}"),
                    "JobExecutor",
                    Arc::clone(&args.executor_stats[index]),
                    args.policy,
                ),
            });
        }
        let snapshot = Refresher::new(
            Arc::clone(&args.queue.snapshot),
            args.queue.store.clone(),
            args.queue.config.stats_interval,
        );
        Ok(PollerState {
            args,
            pool: Pool::new(slots),
            candidates: Candidates::default(),
            tasks: JoinSet::new(),
            claims: JoinSet::new(),
            timers: Timers::default(),
            pauses: Arc::default(),
            reading_pauses: false,
            pauses_read_at: None,
            snapshot,
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

    #[tracing::instrument(skip_all, name = "poller")]
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
            PollerMsg::Enqueued { id, rank } => {
                state.candidates.enqueued(id, rank);
                state.wake(&myself);
            }
            PollerMsg::Nudge => {
                state.candidates.due_again();
                state.wake(&myself);
            }
            PollerMsg::Listed(found) => state.on_listed(&myself, found),
            PollerMsg::Claimed { executor, job } => state.on_claimed(&myself, executor, job),
            PollerMsg::Finished { executor, job } => state.on_finished(&myself, executor, job),
            PollerMsg::TickPauses(read) => state.on_tick_pauses(&myself, read),
            PollerMsg::Paused(pauses) => {
                state.apply_pauses(pauses);
                state.wake(&myself);
            }
            PollerMsg::Pauses { reply } => {
                let queue = Arc::clone(&state.args.queue);
                state.answer(reply, async move { Ok(queue.pauses.read().await?) })
            }
            PollerMsg::SetPause {
                target,
                pause,
                reply,
            } => state.on_set_pause(&myself, (target, pause), reply),
            PollerMsg::AppliedPauses { reply } => {
                let _ = reply.send((*state.pauses).clone());
            }
            PollerMsg::Cancel { id, reply } => state.on_cancel(&myself, id, reply),
            PollerMsg::List { query, reply } => {
                let store = state.store();
                state.answer(reply, async move { Ok(store.list(&query).await?) })
            }
            PollerMsg::Get { id, reply } => {
                let store = state.store();
                state.answer(reply, async move { store.get(id).await })
            }
            PollerMsg::Stats { reply } => {
                let (store, queue) = (state.store(), Arc::clone(&state.args.queue));
                state.answer(reply, async move {
                    Ok(store.stats().await?.with_types(&queue.types))
                })
            }
            PollerMsg::Retry { id, reply } => state.on_retry(&myself, id, reply),
            PollerMsg::ReleaseInstance { instance, reply } => {
                state.on_release_instance(&myself, instance, reply)
            }
            PollerMsg::Pool { reply } => {
                let _ = reply.send(state.pool.info());
            }
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
        // Running jobs get most of the grace period to finish; pending jobs
        // stay claimable by any instance.
        let for_jobs = grace.mul_f64(JOBS_SHARE_OF_GRACE);
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(for_jobs))
            .await;
        state
            .wind_down(started + grace.mul_f64(WIND_DOWN_SHARE_OF_GRACE))
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;
    use tokio::time::{sleep, Instant};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn draining_waits_for_tasks_until_the_deadline_then_aborts_the_rest() {
        let mut tasks = JoinSet::new();
        let (alive, aborted) = oneshot::channel::<()>();
        tasks.spawn(async {
            sleep(Duration::from_secs(1)).await;
            1
        });
        tasks.spawn(async move {
            let _alive = alive; // dropped when the task ends, or is aborted
            sleep(Duration::from_secs(60)).await;
            2
        });
        let started = Instant::now();
        let done = drain(&mut tasks, started + Duration::from_secs(5)).await;
        assert_eq!(done.into_iter().map(|(_, n)| n).collect::<Vec<_>>(), [1]);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(tasks.is_empty());
        assert!(aborted.await.is_err(), "the slow task is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_returns_as_soon_as_every_task_is_done() {
        let mut tasks = JoinSet::new();
        for n in 1..=3 {
            tasks.spawn(async move {
                sleep(Duration::from_millis(n * 100)).await;
                n
            });
        }
        let started = Instant::now();
        let mut done: Vec<u64> = drain(&mut tasks, started + Duration::from_secs(5))
            .await
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        done.sort();
        assert_eq!(done, [1, 2, 3]);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }
}

//! QueuePollerActor: claims due jobs and hands them to idle executors.
//!
//! # Contract
//! - Ticks every `queue.poll_interval`, and wakes at once on `Enqueued` (sent
//!   by this instance whenever it enqueues a job), on `Nudge` and whenever an
//!   executor becomes idle.
//! - A job enqueued here is claimed by its id, without a listing: listing is
//!   the queue's costliest query (on FerretDB it reads every pending job, due
//!   or not), so under steady traffic the poller lists about once a tick
//!   rather than once per job.
//! - Claims only for idle executors — one claim in flight per idle executor,
//!   so no job is claimed that nobody can run — and keeps claiming without
//!   waiting for the next tick while claimable jobs remain.
//! - A claim is three steps (see [`crate::queue::store`]): list a batch of claimable
//!   jobs (oldest first; refreshed every tick), reserve the next attempt of
//!   one (its unique attempt record), then `findOneAndUpdate` it by `_id` in
//!   the state it was listed in. Only the reserver runs the attempt. Claims run in
//!   tasks of their own, concurrently, and report back with `Claimed`: the
//!   mailbox never waits on MongoDB.
//! - Supervises its JobExecutor pool. An executor that dies (a panicking
//!   handler) has its job released at once for retry (not when the lease
//!   expires) and is replaced, within the restart budget.
//! - Offers the ops queries (list, get, retry, stats, pool) as messages,
//!   answered from tasks of their own.
//! - Prunes completed jobs past their retention every `prune_interval`.
//! - Keeps the queue figures of `/metrics` ([`crate::queue::snapshot`])
//!   fresh while someone reads them: at most one count per
//!   `stats_interval`, in a task it owns.
//!
//! # Shutdown
//! Stops claiming, lets running jobs finish within the grace period, then
//! kills what is still running and releases those jobs; pending jobs stay
//! claimable by any instance.
//!
//! # Failure
//! All queue state is in MongoDB. A restarted poller starts a fresh pool; jobs
//! held by the previous pool finish (the root supervisor stops its executors
//! gracefully) or come back when their leases expire.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;

use crate::queue::executor::{ExecutorArgs, ExecutorMsg, JobExecutor, Queue};
use crate::queue::snapshot::Refresher;
use crate::queue::store::{
    Attempt, Candidate, Job, JobPage, JobQuery, Outcome, QueueStats, RetryError,
};
use crate::supervision::budget::RestartPolicy;
use crate::supervision::health::TreeHealth;
use crate::supervision::place::{ActorSnapshot, Place, Verdict};
use crate::supervision::stats::ActorStats;

type Reply<T> = RpcReplyPort<Result<T, String>>;

/// Candidates listed per query (see [`crate::queue::store::JobStore::candidates`]).
const CANDIDATE_BATCH: i64 = 256;

pub enum PollerMsg {
    /// Periodic wake-up.
    Tick,
    /// Look for claimable jobs now (a job was put back to pending).
    Nudge,
    /// This instance just enqueued the job `id`, due now: claim it directly,
    /// without listing the queue.
    Enqueued(ObjectId),
    /// Internal: a candidate listing finished.
    Listed(Result<Vec<Candidate>, String>),
    /// Internal: a claim for `executor` finished; `None` if it got nothing.
    Claimed {
        executor: usize,
        job: Option<Box<Job>>,
    },
    /// Internal: delete old completed jobs.
    Prune,
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
        reply: RpcReplyPort<Result<Job, RetryError>>,
    },
    Stats {
        reply: Reply<QueueStats>,
    },
    Pool {
        reply: RpcReplyPort<PoolInfo>,
    },
}

/// The executor pool, for introspection.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    pub size: usize,
    pub busy: usize,
    pub idle: usize,
    pub executors: Vec<ExecutorInfo>,
}

/// One executor of the pool: the actor, and the job it holds if busy.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorInfo {
    #[serde(flatten)]
    pub actor: ActorSnapshot,
    pub job: Option<String>,
}

#[derive(Clone)]
pub struct PollerArgs {
    pub queue: Arc<Queue>,
    /// How long shutdown waits for running jobs.
    pub grace: Duration,
    /// Restart budget of each executor.
    pub policy: RestartPolicy,
    pub health: TreeHealth,
    pub stats: Arc<ActorStats>,
    /// One per executor place, kept across executor restarts.
    pub executor_stats: Vec<Arc<ActorStats>>,
}

/// The job an executor holds.
struct Held {
    id: ObjectId,
    attempt: i32,
    max_attempts: i32,
}

/// What one executor slot is doing.
enum Work {
    Idle,
    /// A claim for it is in flight.
    Claiming,
    Busy(Held),
}

struct Executor {
    actor: Option<ActorRef<ExecutorMsg>>,
    work: Work,
    /// Its stats, restart budget and last failure, kept across restarts.
    place: Place,
}

pub struct PollerState {
    args: PollerArgs,
    executors: Vec<Executor>,
    /// Jobs listed as claimable, not yet tried.
    candidates: VecDeque<Candidate>,
    /// A listing is in flight.
    listing: bool,
    /// The last listing found nothing: wait for a tick or a nudge.
    exhausted: bool,
    /// Keeps the `/metrics` queue figures fresh while someone reads them.
    snapshot: Refresher,
}

impl PollerState {
    /// The pool as introspection shows it.
    fn pool(&self) -> PoolInfo {
        let executors: Vec<ExecutorInfo> = self
            .executors
            .iter()
            .map(|e| ExecutorInfo {
                actor: e
                    .place
                    .snapshot(e.actor.as_ref().map(|a| a.get_id().to_string())),
                job: match &e.work {
                    Work::Busy(held) => Some(held.id.to_hex()),
                    _ => None,
                },
            })
            .collect();
        let busy = executors.iter().filter(|e| e.job.is_some()).count();
        let running = executors.iter().filter(|e| e.actor.running).count();
        PoolInfo {
            size: executors.len(),
            busy,
            idle: running - busy,
            executors,
        }
    }

    /// Start a claim for every idle executor, listing candidates when needed.
    fn wake(&mut self, myself: &ActorRef<PollerMsg>) {
        let (queue, stats) = (&self.args.queue, &self.args.stats);
        for (index, slot) in self.executors.iter_mut().enumerate() {
            if slot.actor.is_none() || !matches!(slot.work, Work::Idle) {
                continue;
            }
            let Some(candidate) = self.candidates.pop_front() else {
                if !self.listing && !self.exhausted {
                    self.listing = true;
                    let (queue, me, stats) = (Arc::clone(queue), myself.clone(), Arc::clone(stats));
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let found = queue
                            .store
                            .candidates(CANDIDATE_BATCH)
                            .await
                            .map_err(|e| e.to_string());
                        let took = started.elapsed().as_secs_f64();
                        queue.metrics.listing_seconds.observe(took);
                        send(&me, &stats, PollerMsg::Listed(found));
                    });
                }
                return;
            };
            slot.work = Work::Claiming;
            let (queue, me, stats) = (Arc::clone(queue), myself.clone(), Arc::clone(stats));
            tokio::spawn(async move {
                let job = claim(&queue, &candidate, index).await;
                send(
                    &me,
                    &stats,
                    PollerMsg::Claimed {
                        executor: index,
                        job,
                    },
                );
            });
        }
    }

    fn executor_of(&self, cell: &ActorCell) -> Option<usize> {
        self.executors.iter().position(|e| {
            e.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
        })
    }
}

/// Claim `candidate` for `executor`, or `None` if someone else has it.
async fn claim(queue: &Queue, candidate: &Candidate, executor: usize) -> Option<Box<Job>> {
    let name = format!("executor-{executor}");
    match queue
        .store
        .claim(candidate, queue.config.lease, &name)
        .await
    {
        Ok(job) => job.map(Box::new),
        Err(err) => {
            tracing::warn!(target: "worker", job = %candidate.id, error = %err, "claim failed");
            None
        }
    }
}

/// Cast to the poller, counting the message in its mailbox backlog.
fn send(poller: &ActorRef<PollerMsg>, stats: &ActorStats, message: PollerMsg) {
    stats.sent();
    let _ = poller.cast(message);
}

/// Send `message()` to the poller every `period`, until it stops.
fn every(
    poller: &ActorRef<PollerMsg>,
    stats: &Arc<ActorStats>,
    period: Duration,
    message: fn() -> PollerMsg,
) {
    let (poller, stats) = (poller.clone(), Arc::clone(stats));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            stats.sent();
            if poller.cast(message()).is_err() {
                return; // the poller stopped
            }
        }
    });
}

async fn spawn_executor(
    myself: &ActorRef<PollerMsg>,
    args: &PollerArgs,
    index: usize,
) -> Result<ActorRef<ExecutorMsg>, ActorProcessingErr> {
    let args = ExecutorArgs {
        index,
        queue: Arc::clone(&args.queue),
        poller: myself.clone(),
        poller_stats: Arc::clone(&args.stats),
        stats: Arc::clone(&args.executor_stats[index]),
    };
    let (actor, _) = Actor::spawn_linked(None, JobExecutor, args, myself.get_cell()).await?;
    Ok(actor)
}

/// Give `held` back to the queue for an immediate retry.
async fn release(queue: &Queue, held: &Held, reason: &str) {
    if let Err(err) = queue
        .store
        .fail(
            held.id,
            held.attempt,
            held.max_attempts,
            Outcome::Crashed,
            reason,
            Some(Duration::ZERO),
        )
        .await
    {
        tracing::warn!(target: "worker", job = %held.id, error = %err, "release failed; the job is retried after its lease");
    }
}

/// Answer `reply` with `work`'s result, from a task of its own.
fn answer<T: Send + 'static, E: ToString>(
    reply: Reply<T>,
    work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) {
    tokio::spawn(async move {
        let _ = reply.send(work.await.map_err(|e| e.to_string()));
    });
}

#[derive(Clone, Copy, Default)]
pub struct QueuePollerActor;

impl Actor for QueuePollerActor {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PollerMsg>,
        args: PollerArgs,
    ) -> Result<PollerState, ActorProcessingErr> {
        let mut executors = Vec::with_capacity(args.queue.config.executors);
        for index in 0..args.queue.config.executors {
            executors.push(Executor {
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
            executors,
            candidates: VecDeque::new(),
            listing: false,
            exhausted: false,
            snapshot,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PollerMsg>,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let config = &state.args.queue.config;
        every(&myself, &state.args.stats, config.poll_interval, || {
            PollerMsg::Tick
        });
        every(&myself, &state.args.stats, config.prune_interval, || {
            PollerMsg::Prune
        });
        state.wake(&myself);
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
        let queue = Arc::clone(&state.args.queue);
        match message {
            PollerMsg::Tick => {
                // Drop candidates older than a tick: others may have taken them.
                state.candidates.clear();
                state.exhausted = false;
                state.wake(&myself);
                state.snapshot.tick();
            }
            PollerMsg::Enqueued(id) => {
                // The job is known: no listing needed, so `exhausted` stays.
                // If a listing lists it too, the second claim loses the
                // attempt reservation and is dropped.
                if !state.candidates.iter().any(|c| c.id == id) {
                    state.candidates.push_back(Candidate::enqueued(id));
                }
                state.wake(&myself);
            }
            PollerMsg::Nudge => {
                state.exhausted = false;
                state.wake(&myself);
            }
            PollerMsg::Listed(found) => {
                state.listing = false;
                match found {
                    Ok(found) => {
                        state.exhausted = found.is_empty();
                        state.candidates.extend(found);
                    }
                    Err(err) => {
                        tracing::warn!(target: "worker", error = %err, "listing claimable jobs failed; retrying on the next tick");
                        state.exhausted = true;
                    }
                }
                state.wake(&myself);
            }
            PollerMsg::Claimed { executor, job } => {
                let slot = &mut state.executors[executor];
                slot.work = Work::Idle;
                if let Some(job) = job {
                    let held = Held {
                        id: job.id,
                        attempt: job.attempts,
                        max_attempts: job.max_attempts,
                    };
                    state.args.executor_stats[executor].sent();
                    match slot.actor.as_ref().map(|a| a.cast(ExecutorMsg::Run(job))) {
                        Some(Ok(())) => slot.work = Work::Busy(held),
                        // The executor died while we claimed for it.
                        _ => {
                            release(&queue, &held, "executor unavailable").await;
                            state.exhausted = false; // it is due again now
                        }
                    }
                }
                state.wake(&myself);
            }
            PollerMsg::Finished { executor, job } => {
                if let Some(slot) = state.executors.get_mut(executor) {
                    if matches!(&slot.work, Work::Busy(held) if held.id == job) {
                        slot.work = Work::Idle;
                    }
                }
                // `exhausted` stays: a finished job makes no other job due
                // (a failed one is retried after its backoff, at a tick).
                state.wake(&myself);
            }
            PollerMsg::Prune => {
                let retention = queue.config.retention;
                tokio::spawn(async move {
                    match queue.store.prune(retention).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(target: "worker", pruned = n, "old completed jobs deleted")
                        }
                        Err(err) => {
                            tracing::warn!(target: "worker", error = %err, "pruning failed")
                        }
                    }
                });
            }
            PollerMsg::List { query, reply } => {
                answer(reply, async move { queue.store.list(&query).await })
            }
            PollerMsg::Get { id, reply } => answer(reply, async move { queue.store.get(id).await }),
            PollerMsg::Stats { reply } => answer(reply, async move { queue.store.stats().await }),
            PollerMsg::Retry { id, reply } => {
                let stats = Arc::clone(&state.args.stats);
                tokio::spawn(async move {
                    let result = queue.store.retry(id).await;
                    if result.is_ok() {
                        tracing::info!(target: "worker", job = %id, "failed job put back to pending");
                        send(&myself, &stats, PollerMsg::Nudge);
                    }
                    let _ = reply.send(result);
                });
            }
            PollerMsg::Pool { reply } => {
                let _ = reply.send(state.pool());
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
        let Some(index) = state.executor_of(&cell) else {
            return Ok(());
        };
        let queue = Arc::clone(&state.args.queue);
        let slot = &mut state.executors[index];
        slot.actor = None;
        // Release the job it held at once, not when its lease runs out.
        if let Work::Busy(held) = std::mem::replace(&mut slot.work, Work::Idle) {
            tracing::warn!(target: "worker", job = %held.id, attempt = held.attempt, %reason, "releasing the job of a dead executor");
            release(&queue, &held, &reason).await;
            state.exhausted = false; // it is due again now
        }
        let slot = &mut state.executors[index];
        match slot.place.failed(&reason) {
            Verdict::Restart(restarts) => {
                slot.actor = Some(spawn_executor(&myself, &state.args, index).await?);
                slot.place.started();
                state
                    .args
                    .health
                    .restarted(slot.place.name(), &reason, restarts);
            }
            Verdict::GiveUp(why) => state.args.health.escalate(slot.place.name(), why),
        }
        state.wake(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<PollerMsg>,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        // Running jobs get the grace period to finish; the rest stay claimable.
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(state.args.grace))
            .await;
        for slot in &mut state.executors {
            let (Some(actor), Work::Busy(held)) = (
                slot.actor.take(),
                std::mem::replace(&mut slot.work, Work::Idle),
            ) else {
                continue;
            };
            if actor.get_status() != ActorStatus::Stopped {
                actor.kill();
                release(
                    &state.args.queue,
                    &held,
                    "the instance shut down before the job finished",
                )
                .await;
            }
        }
        Ok(())
    }
}

//! Claiming: listing candidates and claiming one per idle executor, each
//! in a task the poller owns, and handing what a claim won to its executor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use ractor::ActorRef;

use super::{send, PollerMsg, PollerState};
use crate::queue::candidates::Next;
use crate::queue::error::QueueError;
use crate::queue::executor::ExecutorMsg;
use crate::queue::job::{Candidate, Job, Outcome};
use crate::queue::pause::Pauses;
use crate::queue::pool::{Held, Work};
use crate::queue::shared::Queue;
use crate::queue::store::JobStore;
use crate::store::error_chain;
use crate::supervision::stats::ActorStats;

/// Candidates listed per query (see [`crate::queue::store::JobStore::candidates`]).
const CANDIDATE_BATCH: i64 = 256;

/// What a claim task returns (besides sending it as `Claimed`): the attempt
/// it won for `executor`, if any, so that shutdown can give back a job whose
/// `Claimed` message will never be handled.
pub(super) struct ClaimDone {
    pub(super) executor: usize,
    pub(super) won: Option<Held>,
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

impl PollerState {
    /// Collect finished tasks (their results went out as messages or
    /// replies), so the sets hold only what still runs.
    pub(super) fn reap(&mut self) {
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
    pub(super) fn wake(&mut self, myself: &ActorRef<PollerMsg>) {
        // `queue.poller_claims = false`: a test runs the jobs (`queue::worker`).
        if self.pauses.queue || !self.args.queue.config.poller_claims {
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
            send(&me, &stats, PollerMsg::Listed(found));
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
    pub(super) fn task_context(
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
    pub(super) fn start_release(&mut self, held: Held, reason: String) {
        let store = self.args.queue.store.clone();
        self.tasks
            .spawn(async move { release(&store, held, &reason).await });
    }

    pub(super) fn on_listed(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        found: Result<Vec<Candidate>, QueueError>,
    ) {
        let found = found
            .inspect_err(|err| {
                tracing::warn!(target: "worker", error = %error_chain(err), "listing claimable jobs failed; retrying on the next tick")
            })
            .ok();
        self.candidates.listed(found);
        self.wake(myself);
    }

    pub(super) fn on_claimed(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        executor: usize,
        job: Option<Box<Job>>,
    ) {
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

    pub(super) fn on_finished(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        executor: usize,
        job: ObjectId,
    ) {
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
}

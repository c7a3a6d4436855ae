//! Claiming: listing candidates and claiming a batch of them for the idle
//! executors, in a task the poller owns, and handing what the batch won to
//! its executors.
//!
//! One batch is under way at a time: executors that free up meanwhile wait
//! for it to end, then the next batch claims for all of them. So under load
//! claims group themselves (one insert and a few rounds of takes for many
//! jobs), and an idle queue still claims a lone job at once. A batch that
//! ends while executors are idle and candidates are left starts the next at
//! once, from its `Claimed` message: between rounds the poller handles its
//! mailbox (ticks, pauses, shutdown), never looping on the store.
//!
//! # Spans
//! A listing runs in a `job.listing` span (`limit`, `found`), a child of the
//! poller's message span that started it: local, with its store commands
//! as children, never exported (an idle instance lists every tick). A claim
//! runs in a `job.claim` span (`jobs`, `won`): a trace of its own, exported
//! like a request's, whose one insert and per-job takes get no span each
//! ([`crate::store::BATCH_SPAN`]): one span per batch, none per job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use ractor::ActorRef;
use tracing::field::Empty;
use tracing::Instrument;

use super::{send, PollerMsg, PollerState};
use crate::queue::candidates::Next;
use crate::queue::error::QueueError;
use crate::queue::executor::ExecutorMsg;
use crate::queue::job::{Candidate, Job, Outcome};
use crate::queue::pause::Pauses;
use crate::queue::pool::{Held, Work};
use crate::queue::shared::Queue;
use crate::queue::store::JobStore;
use crate::store::{error_chain, BATCH_SPAN};
use crate::supervision::stats::ActorStats;

/// What a claim task returns (besides sending each as `Taken`): the
/// attempts it won, by executor, so that shutdown can give back a job whose
/// `Taken` message will never be handled.
pub(super) struct ClaimDone {
    pub(super) won: Vec<(usize, Held)>,
}

/// Claim `batch` (executor, candidate): each job won goes to the poller as
/// [`PollerMsg::Taken`] as soon as it is taken (its lease runs from then),
/// then the executors that got nothing as [`PollerMsg::Claimed`].
async fn claim(
    queue: &Queue,
    batch: Vec<(usize, Candidate)>,
    paused: &Pauses,
    (me, stats): (&ActorRef<PollerMsg>, &ActorStats),
) -> ClaimDone {
    let started = Instant::now();
    let (executors, named): (Vec<usize>, Vec<(Candidate, String)>) = batch
        .into_iter()
        .map(|(index, candidate)| (index, (candidate, format!("executor-{index}"))))
        .unzip();
    let won = Mutex::new(Vec::new());
    let hand = |i: usize, job: Job| {
        let executor = executors[i];
        won.lock().expect("won").push((executor, Held::of(&job)));
        let job = Box::new(job);
        send(me, stats, PollerMsg::Taken { executor, job });
    };
    let (lease, store) = (queue.config.lease, &queue.store);
    let claimed = store.claim_batch_each(&named, lease, paused, hand).await;
    let took = started.elapsed().as_secs_f64();
    queue.metrics.claim_seconds.observe(took);
    if let Err(err) = claimed {
        tracing::warn!(target: "worker", jobs = named.len(), error = %error_chain(&err), "claiming a batch failed");
    }
    let won = won.into_inner().expect("won");
    tracing::Span::current().record("won", won.len());
    let lost = (executors.into_iter())
        .filter(|executor| !won.iter().any(|(index, _)| index == executor))
        .collect();
    send(me, stats, PollerMsg::Claimed(lost));
    ClaimDone { won }
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
                Ok((task, done)) => self.pool.claim_finished(task, &done.won),
                Err(err) => {
                    tracing::error!(target: "worker", error = %err, "a claim task failed");
                    self.pool.claim_failed(err.id());
                }
            }
        }
    }

    /// Claim a batch for the idle executors (at most `queue.claim_batch`),
    /// listing candidates when needed (a stale line's candidates are claimed
    /// meanwhile, see [`crate::queue::candidates`]); nothing while a batch
    /// is under way (its `Claimed` wakes the poller again).
    pub(super) fn wake(&mut self, myself: &ActorRef<PollerMsg>) {
        // `queue.poller_claims = false`: a test runs the jobs (`queue::worker`).
        if self.pauses.queue || !self.args.queue.config.poller_claims || self.pool.claiming() {
            return;
        }
        let limit = self.args.queue.config.claim_batch;
        let mut batch = Vec::new();
        'executors: for index in 0..self.pool.len() {
            if batch.len() == limit {
                break;
            }
            if !self.pool[index].is_idle() {
                continue;
            }
            // A listing starts at most once here (one at a time), and a
            // stale line is still claimed from while it runs.
            loop {
                match self.candidates.next() {
                    Next::Claim(candidate) => break batch.push((index, candidate)),
                    Next::List => self.start_listing(myself),
                    Next::Wait => break 'executors,
                }
            }
        }
        if !batch.is_empty() {
            self.start_claim(myself, batch);
        }
    }

    fn start_listing(&mut self, myself: &ActorRef<PollerMsg>) {
        let (queue, me, stats) = self.task_context(myself);
        let paused = Arc::clone(&self.pauses);
        let limit = queue.config.claim_batch as i64;
        let span = tracing::info_span!("job.listing", limit, found = Empty);
        let listing = async move {
            let started = Instant::now();
            let found = queue.store.candidates(limit, &paused).await;
            let took = started.elapsed().as_secs_f64();
            queue.metrics.listing_seconds.observe(took);
            if let Ok(found) = &found {
                tracing::Span::current().record("found", found.len());
            }
            send(&me, &stats, PollerMsg::Listed(found));
        };
        self.tasks.spawn(listing.instrument(span));
    }

    fn start_claim(&mut self, myself: &ActorRef<PollerMsg>, batch: Vec<(usize, Candidate)>) {
        let (queue, me, stats) = self.task_context(myself);
        let paused = Arc::clone(&self.pauses);
        let executors: Vec<usize> = batch.iter().map(|(index, _)| *index).collect();
        // A root: a trace of its own (see the module docs).
        let span = tracing::info_span!(parent: None, BATCH_SPAN, jobs = batch.len(), won = Empty);
        let claiming = async move { claim(&queue, batch, &paused, (&me, stats.as_ref())).await };
        let task = self.claims.spawn(claiming.instrument(span));
        for index in executors {
            self.pool[index].work = Work::Claiming(task.id());
        }
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

    /// A batch claim ended; `lost` are its executors that got nothing.
    pub(super) fn on_claimed(&mut self, myself: &ActorRef<PollerMsg>, lost: Vec<usize>) {
        for executor in lost {
            self.pool[executor].work = Work::Idle;
        }
        self.wake(myself);
    }

    /// What a claim won for `executor`, to that executor.
    pub(super) fn hand_over(&mut self, executor: usize, job: Option<Box<Job>>) {
        let slot = &mut self.pool[executor];
        slot.work = Work::Idle;
        let Some(job) = job else {
            return;
        };
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

    pub(super) fn on_finished(
        &mut self,
        myself: &ActorRef<PollerMsg>,
        executor: usize,
        job: ObjectId,
    ) {
        let mut limited = false;
        if executor < self.pool.len() {
            let slot = &mut self.pool[executor];
            if let Work::Busy(held) = &slot.work {
                if held.id == job {
                    limited = held.limited;
                    slot.work = Work::Idle;
                }
            }
        }
        // Candidates stay exhausted: a finished job makes no other job due
        // (a failed one is retried after its backoff, at a tick) — unless
        // it gave back a limit token: the jobs of its group the listing
        // left out may run now.
        if limited {
            self.candidates.due_again();
        }
        self.wake(myself);
    }
}

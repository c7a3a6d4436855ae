//! JobExecutor: runs one job at a time for the QueuePollerActor.
//!
//! # Contract
//! - Receives `Run(job)` only when the poller has claimed the job *and* won
//!   its attempt record, so it is the only runner of that attempt.
//! - Runs the job's handler with `queue.job_timeout`, renewing the lease every
//!   third of it while the handler runs, then writes the outcome itself:
//!   `completed` with the result; or, on error or timeout, `pending` again
//!   with exponential backoff until `maxAttempts`, then `failed`. An unknown
//!   job type fails at once, without retry.
//! - Tells the poller it is idle again (`Finished`), whatever happened.
//!
//! # Failure
//! If a handler panics, the executor dies with it; its supervisor (the
//! poller) releases the job for an immediate retry and starts a new executor.
//! If writing the outcome fails (MongoDB down), the job stays `processing`
//! and is claimed again when its lease expires: at-least-once delivery, which
//! is why handlers are idempotent by job id.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;

use crate::events::{Event, Events};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::queue::handlers::JobHandlers;
use crate::queue::poller::PollerMsg;
use crate::queue::snapshot::QueueSnapshot;
use crate::queue::store::{Job, JobStatus, JobStore, Outcome, QueueConfig};
use crate::supervision::stats::ActorStats;

/// Claim and execution durations, in seconds (exported on `/metrics`).
#[derive(Clone)]
pub struct QueueMetrics {
    /// One observation per listing of claimable jobs (its count is the
    /// number of listings: the queue's costliest query).
    pub listing_seconds: Histogram,
    pub claim_seconds: Histogram,
    pub execution_seconds: Histogram,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        let buckets = || exponential_buckets(0.0005, 2.0, 16);
        Self {
            listing_seconds: Histogram::new(buckets()),
            claim_seconds: Histogram::new(buckets()),
            execution_seconds: Histogram::new(buckets()),
        }
    }
}

/// What the poller and its executors share.
pub struct Queue {
    pub metrics: QueueMetrics,
    pub store: JobStore,
    /// JobCompleted / JobFailed / executor restarts are published here.
    pub events: Events,
    pub handlers: JobHandlers,
    pub config: QueueConfig,
    /// The queue's figures for `/metrics`, refreshed by the poller.
    pub snapshot: Arc<QueueSnapshot>,
}

pub enum ExecutorMsg {
    Run(Box<Job>),
}

#[derive(Clone)]
pub struct ExecutorArgs {
    pub index: usize,
    pub queue: Arc<Queue>,
    pub poller: ActorRef<PollerMsg>,
    /// The poller's stats (to count the `Finished` sent to it).
    pub poller_stats: Arc<ActorStats>,
    pub stats: Arc<ActorStats>,
}

pub struct ExecutorState {
    index: usize,
    name: String,
    queue: Arc<Queue>,
    poller: ActorRef<PollerMsg>,
    poller_stats: Arc<ActorStats>,
    stats: Arc<ActorStats>,
}

#[derive(Clone, Copy, Default)]
pub struct JobExecutor;

impl Actor for JobExecutor {
    type Msg = ExecutorMsg;
    type State = ExecutorState;
    type Arguments = ExecutorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ExecutorMsg>,
        args: ExecutorArgs,
    ) -> Result<ExecutorState, ActorProcessingErr> {
        Ok(ExecutorState {
            index: args.index,
            name: format!("{}/executor-{}", args.queue.store.instance(), args.index),
            queue: args.queue,
            poller: args.poller,
            poller_stats: args.poller_stats,
            stats: args.stats,
        })
    }

    #[tracing::instrument(skip_all, name = "executor", fields(executor = state.index))]
    async fn handle(
        &self,
        myself: ActorRef<ExecutorMsg>,
        message: ExecutorMsg,
        state: &mut ExecutorState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.stats.begin(&myself.get_cell()).await;
        let ExecutorMsg::Run(job) = message;
        let id = job.id;
        run(&state.queue, &state.name, *job).await;
        state.poller_stats.sent();
        let _ = state.poller.cast(PollerMsg::Finished {
            executor: state.index,
            job: id,
        });
        Ok(())
    }
}

async fn run(queue: &Queue, executor: &str, job: Job) {
    let (store, config) = (&queue.store, &queue.config);
    let (id, attempt, max_attempts) = (job.id, job.attempts, job.max_attempts);
    let started = std::time::Instant::now();
    tracing::info!(target: "worker", job = %id, kind = %job.kind, attempt, executor, "job started");

    let kind = job.kind.clone();
    let publish = |status: JobStatus, error: Option<String>| {
        let (job_id, job_type) = (id.to_hex(), kind.clone());
        match (status, error) {
            (JobStatus::Completed, _) => queue.events.publish(Event::JobCompleted {
                job_id,
                job_type,
                attempt,
            }),
            (JobStatus::Failed, Some(error)) => queue.events.publish(Event::JobFailed {
                job_id,
                job_type,
                attempt,
                error,
            }),
            _ => {}
        }
    };
    let Some(handler) = queue.handlers.get(&job.kind) else {
        let error = format!("unknown job type {:?}", job.kind);
        tracing::error!(target: "worker", job = %id, %error, "job failed without retry");
        match store
            .fail(id, attempt, max_attempts, Outcome::Failed, &error, None)
            .await
        {
            Ok(status) => publish(status, Some(error)),
            Err(err) => {
                tracing::warn!(target: "worker", job = %id, error = %err, "could not record the failure")
            }
        }
        return;
    };

    // Renew the lease while the handler runs. The renewer is stopped, and
    // waited for, before the outcome is written: FerretDB writes whole
    // documents, so a renewal landing after the completion would undo it.
    // (If the handler panics, dropping the JoinSet aborts the renewer.)
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let mut renewals = JoinSet::new();
    {
        let (store, lease) = (store.clone(), config.lease);
        renewals.spawn(async move {
            let mut every = tokio::time::interval(lease / 3);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = every.tick() => {}
                }
                if let Err(err) = store.renew(id, attempt, lease).await {
                    tracing::warn!(target: "worker", job = %id, error = %err, "lease renewal failed");
                }
            }
        });
    }
    let outcome = tokio::time::timeout(config.job_timeout, handler(job)).await;
    let _ = stop.send(());
    while renewals.join_next().await.is_some() {}

    queue
        .metrics
        .execution_seconds
        .observe(started.elapsed().as_secs_f64());
    let ms = started.elapsed().as_millis() as u64;
    let (outcome, error) = match outcome {
        Ok(Ok(result)) => {
            tracing::info!(target: "worker", job = %id, attempt, duration_ms = ms, "job completed");
            match store.complete(id, attempt, result).await {
                Ok(()) => publish(JobStatus::Completed, None),
                Err(err) => tracing::warn!(target: "worker", job = %id, error = %err,
                    "could not record the completion; the job is retried after its lease"),
            }
            return;
        }
        Ok(Err(error)) => (Outcome::Failed, error),
        Err(_) => (
            Outcome::TimedOut,
            format!(
                "timed out after {}",
                humantime::format_duration(config.job_timeout)
            ),
        ),
    };
    let retry_in = Some(config.backoff(attempt));
    match store
        .fail(id, attempt, max_attempts, outcome, &error, retry_in)
        .await
    {
        Ok(status) => {
            tracing::warn!(target: "worker", job = %id, attempt, duration_ms = ms, %error, next = status.as_str(), "job attempt failed");
            publish(status, Some(error));
        }
        Err(err) => tracing::warn!(target: "worker", job = %id, error = %err,
            "could not record the failure; the job is retried after its lease"),
    }
}

//! JobExecutor: runs one job at a time for the QueuePollerActor.
//!
//! # Contract
//! - Receives `Run(job)` only when the poller has claimed the job *and* won
//!   its attempt record, so it is the only runner of that attempt.
//! - Runs the job's handler with its timeout (its own, or `queue.job_timeout`),
//!   renewing the lease every third of it and writing the handler's progress
//!   reports (at most one per `queue.progress_interval`, then `JobProgress`)
//!   while the handler runs (in a task it owns), then has the
//!   outcome written through the [`Finisher`] (in bulk with other
//!   executors' outcomes) and waits until it is: `completed` with the
//!   result; or, on error or timeout,
//!   `pending` again with exponential backoff until `maxAttempts`, then
//!   `failed`; a [`HandlerError::Permanent`](crate::queue::handlers::HandlerError::Permanent)
//!   error (or a result too large to keep) fails the job at once, without
//!   retry; a snooze ([`Job::snooze`]) makes it `pending` again after its
//!   delay without spending an attempt. A job that
//!   ended for good (completed, failed, cancelled) then has its unique key
//!   released.
//! - Cancellation: the job's token ([`Job::cancelled`]) fires when an
//!   operator cancels the job — at once if the cancel came through this
//!   instance, else at the next lease renewal, which also looks for the
//!   cancellation's marker (one read by `_id`; see [`crate::queue::cancel`]).
//!   The handler then gets [`CANCEL_GRACE`] to return; one that ignores it
//!   is dropped (stopped at its next await point). Either way the attempt
//!   and the job end `cancelled` (never retried) and `JobCancelled` is
//!   published, whatever the handler returned after the token fired. An
//!   attempt that fails while its job's marker is in ends `cancelled` too.
//! - Publishes the job's event, releases its unique key, settles the
//!   jobs waiting for it ([`crate::queue::flow`]'s fast path) and reports that it
//!   is idle again (through the [`OnFinished`] hook its owner gave it,
//!   whatever happened) only once the outcome is written: no one sees the
//!   job done, nor its slot free, before its end is durable. It knows
//!   nothing else of its owner.
//! - Its mailbox holds one job at a time by design: `handle` awaits the job
//!   and the writes of its outcome (that is the executor's work; the poller
//!   never sends a second `Run` before `Finished`).
//!
//! # Failure
//! If a handler panics, the executor dies with it; its supervisor (the
//! poller) releases the job for an immediate retry and starts a new executor.
//! If writing the outcome fails (MongoDB down), the job stays `processing`
//! and is claimed again when its lease expires: at-least-once delivery, which
//! is why handlers are idempotent by job id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mongodb::bson::oid::ObjectId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::error::Elapsed;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events::Event;
use crate::queue::controls::{Controls, ProgressReports, MAX_SNOOZE};
use crate::queue::finisher::Finisher;
use crate::queue::handlers::{HandlerError, HandlerResult};
use crate::queue::job::{Job, JobStatus, Outcome};
use crate::queue::renewer::Renewer;
use crate::queue::result::StoredResult;
use crate::queue::shared::Queue;
use crate::queue::store::finish::Ending;
use crate::supervision::stats::ActorStats;

/// How long a cancelled job's handler gets to return before it is dropped.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

pub(crate) enum ExecutorMsg {
    Run(Box<Job>),
}

/// Called with `(executor index, job id)` when an executor is done with a
/// job, whatever its outcome.
pub(crate) type OnFinished = Arc<dyn Fn(usize, ObjectId) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct ExecutorArgs {
    pub index: usize,
    pub queue: Arc<Queue>,
    pub on_finished: OnFinished,
    pub stats: Arc<ActorStats>,
    /// Where its outcomes are written (the poller's finisher).
    pub finisher: Finisher,
}

pub(crate) struct ExecutorState {
    index: usize,
    name: String,
    queue: Arc<Queue>,
    on_finished: OnFinished,
    stats: Arc<ActorStats>,
    finisher: Finisher,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct JobExecutor;

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
            on_finished: args.on_finished,
            stats: args.stats,
            finisher: args.finisher,
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
        run((&state.queue, &state.finisher), &state.name, *job).await;
        (state.on_finished)(state.index, id);
        Ok(())
    }
}

/// One attempt being run.
struct Running {
    id: ObjectId,
    kind: String,
    /// Released once the job ends for good ([`crate::queue::unique`]).
    unique_key: Option<String>,
    attempt: i32,
    max_attempts: i32,
    /// The job's own timeout, or the queue's.
    timeout: Duration,
    started: Instant,
}

impl Running {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Run `job`'s attempt (claimed, its attempt record won) and record how
/// it ended, through `finisher`: the job's status as written (`None`: the
/// write failed, and the job settles when its lease expires). The one copy
/// of the attempt's logic: the executors run it, and so does
/// [`crate::queue::worker`].
pub(crate) async fn run(
    (queue, finisher): (&Queue, &Finisher),
    executor: &str,
    job: Job,
) -> Option<JobStatus> {
    let span = attempt_span(&job);
    attempt((queue, finisher), executor, job)
        .instrument(span)
        .await
}

/// The span of one attempt: a *child* of the span that enqueued the job
/// (its stored `traceparent`), not a root linked to it. The welcome job of a
/// sign-up then shows in the sign-up's trace, whichever instance runs it and
/// however late, which is what an operator following one request wants; a
/// span link would leave it in a trace of its own, one click away. The
/// parent's sampling decision carries over too (parent-based sampling), so a
/// sampled request's jobs are sampled. A job with no context (cron jobs,
/// adopted or older jobs) starts its own trace: the executor's span is
/// never the parent (`parent: None`).
fn attempt_span(job: &Job) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "job.attempt",
        job.id = %job.id,
        job.kind = %job.kind,
        job.attempt = job.attempts,
    );
    crate::trace::adopt(&span, job.trace.as_deref());
    span
}

async fn attempt(
    (queue, finisher): (&Queue, &Finisher),
    executor: &str,
    mut job: Job,
) -> Option<JobStatus> {
    let running = Running {
        id: job.id,
        kind: job.kind.clone(),
        unique_key: job.unique_key.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        timeout: job.timeout(queue.config.job_timeout),
        started: Instant::now(),
    };
    let (id, attempt) = (running.id, running.attempt);
    tracing::info!(target: "worker", job = %id, kind = %running.kind, attempt, executor, "job started");
    let Some(handler) = queue.handlers.get(&job.kind) else {
        return give_back_unhandled((queue, finisher), &running).await;
    };
    let cancellation = job.cancellation();
    let _registered = queue.cancellations.register(id, cancellation.clone());
    let (controls, reports) = Controls::new(queue.store.clock().clone());
    job.controls = controls;
    let token = job.token.clone();
    let work = handler(job);
    let leased = (&running, token.clone());
    let outcome = run_leased(queue, leased, work, (&cancellation, reports)).await;
    if let Some(token) = token {
        give_back_token(queue, id, &token).await;
    }
    queue
        .metrics
        .execution_seconds
        .observe(running.started.elapsed().as_secs_f64());
    let ends = (queue, finisher);
    match outcome {
        _ if cancellation.is_cancelled() => record_cancellation(ends, &running).await,
        Ok(Ok(result)) => match StoredResult::of(result) {
            Ok(result) => record_completion(ends, &running, result).await,
            // No retry mends it: the handler would return the same again.
            Err(refused) => {
                let failure = (Outcome::Failed, refused.to_string());
                record_failure(ends, &running, failure, false).await
            }
        },
        Ok(Err(HandlerError::Snoozed(delay))) => record_snooze(ends, &running, delay).await,
        Ok(Err(error)) => {
            let retry = !error.is_permanent();
            let failure = (Outcome::Failed, error.report());
            record_failure(ends, &running, failure, retry).await
        }
        Err(_elapsed) => {
            let limit = humantime::format_duration(running.timeout);
            let failure = (Outcome::TimedOut, format!("timed out after {limit}"));
            record_failure(ends, &running, failure, true).await
        }
    }
}

/// Run `work` within its timeout (the job's, or `queue.job_timeout`),
/// renewing the attempt's lease and writing its progess `reports`
/// meanwhile; once `cancellation` fires, `work` gets [`CANCEL_GRACE`] more,
/// then is dropped (its result, if any, is then of no account).
///
/// The renewer is stopped, and waited for, before the outcome is written:
/// FerretDB writes whole documents, so a renewal (or a progress report)
/// landing after the completion would undo it. (If the handler panics,
/// dropping the JoinSet aborts the renewer.)
async fn run_leased(
    queue: &Queue,
    (running, token): (&Running, Option<String>),
    work: BoxFuture<'static, HandlerResult>,
    (cancellation, reports): (&CancellationToken, ProgressReports),
) -> Result<HandlerResult, Elapsed> {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut renewals = JoinSet::new();
    let renewer = Renewer {
        store: queue.store.clone(),
        events: queue.events.clone(),
        job: (running.id, running.attempt, running.kind.clone()),
        token,
        lease: queue.config.lease,
        progress_interval: queue.config.progress_interval,
    };
    renewals.spawn(renewer.run((stopped, cancellation.clone()), reports));
    let work = tokio::time::timeout(running.timeout, work);
    tokio::pin!(work);
    let outcome = tokio::select! {
        outcome = &mut work => outcome,
        () = cancellation.cancelled() => {
            // The handler may wind down; one that ignores it is dropped.
            let grace = tokio::time::timeout(CANCEL_GRACE, &mut work).await;
            grace.unwrap_or_else(|_| Ok(Err("cancelled".into())))
        }
    };
    let _ = stop.send(());
    while renewals.join_next().await.is_some() {}
    outcome
}

/// The job was cancelled while it ran: the attempt and the job are
/// `cancelled`, for good.
async fn record_cancellation(
    (queue, finisher): (&Queue, &Finisher),
    running: &Running,
) -> Option<JobStatus> {
    let (id, attempt, ms) = (running.id, running.attempt, running.elapsed_ms());
    match finisher.finish(Ending::cancelled(id, attempt)).await {
        Ok(()) => {
            tracing::info!(target: "worker", job = %id, attempt, duration_ms = ms, "job cancelled");
            let event = Event::JobCancelled {
                job_id: id.to_hex(),
                job_type: running.kind.clone(),
                attempt,
            };
            after_final_end(queue, running, event).await;
            Some(JobStatus::Cancelled)
        }
        Err(err) => {
            tracing::warn!(target: "worker", job = %id, error = %err,
                "could not record the cancellation; the job settles when its lease expires");
            None
        }
    }
}

/// No handler here for the job's type. Claims take only the types this
/// instance runs ([`crate::queue::types`]), so this does not happen; should
/// it, the job goes back to pending after its backoff, for an instance
/// that runs it — never failed for want of a handler here.
async fn give_back_unhandled(
    (queue, finisher): (&Queue, &Finisher),
    running: &Running,
) -> Option<JobStatus> {
    let id = running.id;
    let error = format!(
        "no handler for job type {:?} on this instance",
        running.kind
    );
    tracing::error!(target: "worker", job = %id, %error, "claimed a job of a type this instance does not run; giving it back");
    let retry_in = Some(queue.config.backoff(running.attempt));
    let attempts = (id, running.attempt, running.max_attempts.saturating_add(1));
    let ending = Ending::failed(attempts, Outcome::Crashed, &error, retry_in);
    let status = ending.status();
    let given_back = finisher.finish(ending).await;
    given_back
        .inspect_err(|err| tracing::warn!(target: "worker", job = %id, error = %err, "could not give the job back; it comes back when its lease expires"))
        .ok()
        .map(|()| status)
}

/// The handler returned `result`: the attempt and the job are `completed`.
async fn record_completion(
    (queue, finisher): (&Queue, &Finisher),
    running: &Running,
    result: StoredResult,
) -> Option<JobStatus> {
    let (id, attempt, ms) = (running.id, running.attempt, running.elapsed_ms());
    match finisher
        .finish(Ending::completed_with(id, attempt, result))
        .await
    {
        Ok(()) => {
            // Logged once written, as everything that says it is done.
            tracing::info!(target: "worker", job = %id, attempt, duration_ms = ms, "job completed");
            let event = Event::JobCompleted {
                job_id: id.to_hex(),
                job_type: running.kind.clone(),
                attempt,
            };
            after_final_end(queue, running, event).await;
            Some(JobStatus::Completed)
        }
        Err(err) => {
            tracing::warn!(target: "worker", job = %id, error = %err,
                "could not record the completion; the job is retried after its lease");
            None
        }
    }
}

/// The attempt failed (`outcome`) with `error`: with `retry`, the job is
/// retried after its backoff while it has attempts left, `failed` after
/// that; without (a permanent error), `failed` now.
async fn record_failure(
    (queue, finisher): (&Queue, &Finisher),
    running: &Running,
    (outcome, error): (Outcome, String),
    retry: bool,
) -> Option<JobStatus> {
    let (id, attempt, ms) = (running.id, running.attempt, running.elapsed_ms());
    // Cancelled before the renewal noticed: no retry (the marker would
    // block it anyway, but the job would read `pending` until then).
    if queue
        .store
        .cancel_requested(id, attempt)
        .await
        .unwrap_or(false)
    {
        return record_cancellation((queue, finisher), running).await;
    }
    let retry_in = retry.then(|| queue.config.backoff(attempt));
    let ending = Ending::failed(
        (id, attempt, running.max_attempts),
        outcome,
        &error,
        retry_in,
    );
    let status = ending.status();
    match finisher.finish(ending).await {
        Ok(()) => {
            tracing::warn!(target: "worker", job = %id, attempt, duration_ms = ms, %error, next = status.as_str(), "job attempt failed");
            if status == JobStatus::Failed {
                let event = Event::JobFailed {
                    job_id: id.to_hex(),
                    job_type: running.kind.clone(),
                    attempt,
                    error,
                };
                after_final_end(queue, running, event).await;
            }
            Some(status)
        }
        Err(err) => {
            tracing::warn!(target: "worker", job = %id, error = %err,
                "could not record the failure; the job is retried after its lease");
            None
        }
    }
}

/// The handler snoozed the job for `delay`: pending again then, the
/// attempt recorded `snoozed` and not counted (see [`Ending::snoozed`]). A
/// delay over [`MAX_SNOOZE`] fails the attempt for good instead.
async fn record_snooze(
    (queue, finisher): (&Queue, &Finisher),
    running: &Running,
    delay: Duration,
) -> Option<JobStatus> {
    let (id, attempt) = (running.id, running.attempt);
    let asked = humantime::format_duration(delay);
    if delay > MAX_SNOOZE {
        let most = humantime::format_duration(MAX_SNOOZE);
        let refused = format!("the handler snoozed for {asked}; a snooze is at most {most}");
        let failure = (Outcome::Failed, refused);
        return record_failure((queue, finisher), running, failure, false).await;
    }
    // Cancelled before the renewal noticed: no snooze (as for a retry).
    if queue
        .store
        .cancel_requested(id, attempt)
        .await
        .unwrap_or(false)
    {
        return record_cancellation((queue, finisher), running).await;
    }
    let ending = Ending::snoozed(id, attempt, delay, format!("snoozed for {asked}"));
    match finisher.finish(ending).await {
        Ok(()) => {
            tracing::info!(target: "worker", job = %id, attempt, snooze = %asked, "job snoozed");
            Some(JobStatus::Pending)
        }
        Err(err) => {
            tracing::warn!(target: "worker", job = %id, error = %err,
                "could not record the snooze; the job is retried after its lease");
            None
        }
    }
}

/// The handler returned: the job's limit token goes back at once (the
/// limit counts work running, not ends being written). One that cannot be
/// given back frees when its lease runs out.
async fn give_back_token(queue: &Queue, id: ObjectId, token: &str) {
    if let Err(err) = queue.store.limit_store().give_back(token, id).await {
        tracing::warn!(target: "worker", job = %id, error = %err, "could not give back the limit token; it frees when its lease runs out");
    }
}

/// What a job's final end does once it is durable, in this order: its
/// unique key given back (a new job may take it), the event published, the
/// jobs that wait on it told.
async fn after_final_end(queue: &Queue, running: &Running, event: Event) {
    release_key(queue, running).await;
    queue.events.publish(event);
    queue.flows().after_end_logged(running.id).await;
}

/// The job ended for good, and that end is written: release its unique key
/// (after the end, see [`crate::queue::unique`]). A release that fails is
/// taken over by the next duplicate once `queue.hold` old.
async fn release_key(queue: &Queue, running: &Running) {
    let Some(key) = &running.unique_key else {
        return;
    };
    if let Err(err) = queue
        .store
        .release_key(running.id, &running.kind, key)
        .await
    {
        tracing::warn!(target: "worker", job = %running.id, error = %err, "could not release the unique key");
    }
}

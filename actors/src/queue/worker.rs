//! [`Worker`]: run the queue's due jobs one at a time, on demand — the
//! deterministic seam for tests.
//!
//! A test builds its app with `queue.poller_claims = false` (the poller
//! then claims nothing: no job runs behind the test's back) and a manual
//! [`Clock`]; it enqueues, then calls [`Worker::run_until_idle`] (or
//! [`Worker::try_execute_job`] for one job) and [`Clock::advance`] to make
//! retries, delays and holds due. Nothing sleeps.
//!
//! # Contract
//! - A job is claimed through the store's claim, as the poller claims it:
//!   listed among the claimable (expired leases, then due jobs in rank
//!   order: [`crate::queue::priority`]), its attempt record reserved, then
//!   taken; paused types are left alone.
//! - It is run by the executors' own attempt code
//!   ([`crate::queue::executor::run`]): the attempt record, the handler
//!   with its job (and cancellation token), `queue.job_timeout`, the lease
//!   renewed meanwhile, then completion, failure with backoff (or for
//!   good after `maxAttempts`), or cancellation; events are published and
//!   unique keys released as in production.
//! - It runs on the caller's task: [`Worker::try_execute_job`] returns once
//!   the attempt's end is written.

use std::sync::Arc;

use crate::queue::clock::Clock;
use crate::queue::error::QueueError;
use crate::queue::executor;
use crate::queue::finisher::Finisher;
use crate::queue::job::{JobId, JobStatus};
use crate::queue::shared::Queue;

/// Candidates listed per try (a claim lost to a concurrent claimer moves
/// on to the next).
const BATCH: i64 = 16;

/// The name attempts run by the worker carry (`executor` in their record).
const NAME: &str = "worker";

/// What one [`Worker::try_execute_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// It ran an attempt of job `id`, which then had `status` (`None`: the
    /// attempt's end could not be written; the job settles when its lease
    /// expires).
    Executed {
        id: JobId,
        status: Option<JobStatus>,
    },
    /// No job was due (or every due one was claimed by someone else).
    Empty,
}

/// Runs due jobs on demand (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    /// The queue the poller runs (the same store, handlers and settings).
    queue: Arc<Queue>,
}

impl Worker {
    pub(crate) fn new(queue: Arc<Queue>) -> Self {
        Self { queue }
    }

    fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// The queue's clock.
    pub fn clock(&self) -> &Clock {
        self.queue().store.clock()
    }

    /// Claim one due job and run its attempt to its end (see the module
    /// doc); [`Polled::Empty`] if none is due.
    pub async fn try_execute_job(&self) -> Result<Polled, QueueError> {
        let queue = self.queue();
        let paused = queue.pauses.read().await?;
        if paused.queue {
            return Ok(Polled::Empty);
        }
        for candidate in queue.store.candidates(BATCH, &paused).await? {
            let claimed = queue
                .store
                .claim(&candidate, queue.config.lease, NAME, &paused)
                .await?;
            if let Some(job) = claimed {
                let id = JobId::from(job.id);
                // Written at once, alone: the test sees each end as it is written.
                let finisher = Finisher::Direct(queue.store.clone());
                let status = executor::run((queue, &finisher), NAME, job).await;
                return Ok(Polled::Executed { id, status });
            }
        }
        Ok(Polled::Empty)
    }

    /// Sweep every waiting job once, as the pollers' periodic sweep does
    /// ([`crate::queue::flow`]): what it released and failed.
    pub async fn sweep_flows(&self) -> Result<crate::queue::flow::Settled, QueueError> {
        self.queue().flows().sweep_all().await
    }

    /// Run due jobs until none is: what each run came to, in order. At
    /// most `limit` attempts, so that a handler that keeps enqueueing due
    /// jobs cannot keep a test busy for ever (then `limit` runs are
    /// returned, and the queue may not be idle).
    pub async fn run_until_idle(&self, limit: usize) -> Result<Vec<Polled>, QueueError> {
        let mut ran = Vec::new();
        while ran.len() < limit {
            match self.try_execute_job().await? {
                Polled::Empty => break,
                executed => ran.push(executed),
            }
        }
        Ok(ran)
    }
}

//! [`QueueHandle`]: how the HTTP layer (and operators' tools) query the
//! queue: typed results, no BSON, no message types.
//!
//! Each query is a message to the QueuePollerActor, which answers it from a
//! task of its own (its mailbox never waits on MongoDB); the BSON → JSON
//! conversion ([`crate::queue::report`]) runs here, in the caller's task.

use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;

use crate::queue::error::QueueError;
use crate::queue::job::{JobId, JobQuery, QueueStats};
use crate::queue::poller::PollerMsg;
use crate::queue::pool::PoolInfo;
use crate::queue::report::{JobHistory, JobReport, JobsPage};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;

/// The queue, for its operators. Cheap to clone.
#[derive(Clone)]
pub struct QueueHandle {
    poller: ActorSlot<PollerMsg>,
    /// How long a query waits for the poller's answer.
    timeout: Duration,
}

impl QueueHandle {
    pub(crate) fn new(poller: ActorSlot<PollerMsg>, timeout: Duration) -> Self {
        Self { poller, timeout }
    }

    /// Jobs, newest first, as `query` filters and pages them.
    pub async fn list(&self, query: JobQuery) -> Result<JobsPage, QueueError> {
        let page = self.ask(|reply| PollerMsg::List { query, reply }).await?;
        Ok(page.into())
    }

    /// The job `id` with its attempts; [`QueueError::NotFound`] if there is
    /// no such job.
    pub async fn get(&self, id: JobId) -> Result<JobHistory, QueueError> {
        let id = id.object_id();
        let (job, attempts) = self
            .ask(|reply| PollerMsg::Get { id, reply })
            .await?
            .ok_or(QueueError::NotFound)?;
        Ok(JobHistory::new(job, attempts))
    }

    /// Put the `failed` job `id` back to `pending` with a fresh attempt
    /// budget; the job as it is now.
    pub async fn retry(&self, id: JobId) -> Result<JobReport, QueueError> {
        let id = id.object_id();
        let job = self.ask(|reply| PollerMsg::Retry { id, reply }).await?;
        Ok(job.into())
    }

    /// Counts by status, the oldest pending job's age, and the completions
    /// of the last minute.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.ask(|reply| PollerMsg::Stats { reply }).await
    }

    /// The executor pool: each executor, and the job it runs (introspection).
    pub async fn pool(&self) -> Result<PoolInfo, QueueError> {
        let pool = self
            .poller
            .call(|reply| PollerMsg::Pool { reply }, self.timeout)
            .await?;
        Ok(pool)
    }

    /// Release every job `instance` holds, at once, for any instance to
    /// reclaim (fenced by the attempt record): `instance` is dead. The store
    /// work runs in a task of the poller, which then looks for claimable
    /// jobs itself. Returns how many jobs were released.
    pub async fn release_instance(&self, instance: &str) -> Result<u64, QueueError> {
        let instance = instance.to_owned();
        self.ask(|reply| PollerMsg::ReleaseInstance { instance, reply })
            .await
    }

    /// Ask the poller to look for claimable jobs now (as if a job had just
    /// been put back to pending), e.g. after writing jobs to the store
    /// directly. Nothing happens if the poller is down.
    pub fn nudge(&self) {
        let _ = self.poller.cast(PollerMsg::Nudge);
    }

    /// The poller's name in the actor tree.
    pub fn poller_name(&self) -> &'static str {
        self.poller.name()
    }

    /// The poller's mailbox and handling figures.
    pub fn poller_stats(&self) -> Arc<ActorStats> {
        self.poller.stats()
    }

    /// Send the query `build` makes, and wait for its answer.
    async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T, QueueError>>) -> PollerMsg,
    ) -> Result<T, QueueError> {
        self.poller.call(build, self.timeout).await?
    }
}

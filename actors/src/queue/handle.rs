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
use crate::queue::pause::{PauseTarget, Pauses};
use crate::queue::poller::PollerMsg;
use crate::queue::pool::PoolInfo;
use crate::queue::report::{JobHistory, JobReport, JobsPage};
use crate::queue::store::cancel::Cancel;
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

    /// Cancel the job `id`: a pending job is `cancelled` at once (it never
    /// runs); a running one is asked to stop (`cancelRequested`) and ends
    /// `cancelled` when its handler stops. [`QueueError::Finished`] if it
    /// has ended already. The job as it is now.
    pub async fn cancel(&self, id: JobId) -> Result<JobReport, QueueError> {
        let id = id.object_id();
        let job = match self.ask(|reply| PollerMsg::Cancel { id, reply }).await? {
            Cancel::Cancelled(job) | Cancel::Requested(job) => job,
        };
        Ok(job.into())
    }

    /// What is paused, as stored (what every instance applies within a tick).
    pub async fn pauses(&self) -> Result<Pauses, QueueError> {
        self.ask(|reply| PollerMsg::Pauses { reply }).await
    }

    /// Pause `target` on every instance; the pauses after.
    /// [`SpecError::UnknownType`](crate::queue::SpecError::UnknownType)
    /// for a type no live instance handles.
    pub async fn pause(&self, target: PauseTarget) -> Result<Pauses, QueueError> {
        self.set_pause(target, true).await
    }

    /// Resume `target` on every instance; the pauses after.
    pub async fn resume(&self, target: PauseTarget) -> Result<Pauses, QueueError> {
        self.set_pause(target, false).await
    }

    async fn set_pause(&self, target: PauseTarget, pause: bool) -> Result<Pauses, QueueError> {
        self.ask(|reply| PollerMsg::SetPause {
            target,
            pause,
            reply,
        })
        .await
    }

    /// The pauses this instance's poller applies now (its last read).
    pub async fn applied_pauses(&self) -> Result<Pauses, QueueError> {
        let pauses = self
            .poller
            .call(|reply| PollerMsg::AppliedPauses { reply }, self.timeout)
            .await?;
        Ok(pauses)
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

//! [`QueueHandle`]: how the HTTP layer (and operators' tools) query and
//! steer the queue: typed results, no BSON, no message types.
//!
//! Reads and operator writes (list, get, stats, pauses, pause, resume,
//! cancel, retry, release of a dead instance) go to the store
//! ([`crate::queue::store`]) directly, in the caller's task, each bounded by
//! the call timeout: no actor's mailbox carries them. The poller is told only
//! what it must act on: new pauses to apply at once (`Paused`), jobs due again
//! after a retry or a release (`Nudge`). A cancel of a job running here fires
//! its token through the cancellation registry the executors share
//! ([`crate::queue::cancel`]). Only the poller's own state (the pauses it
//! applies, its executor pool) is asked of the poller.
//!
//! A caller that gives up (a timeout, a client gone) drops a multi-step
//! write between two steps; each is built to survive a crash there (see
//! the store's rooms), so this is no worse.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use mongodb::bson::oid::ObjectId;

use crate::events::Event;
use crate::queue::bulk::{BulkAction, BulkOutcome, BulkQuery};
use crate::queue::error::QueueError;
use crate::queue::flow_tree::{self, FlowTree};
use crate::queue::job::{JobId, JobQuery, JobStatus, QueueStats};
use crate::queue::limit::Limit;
use crate::queue::pause::{PauseTarget, Pauses};
use crate::queue::poller::PollerMsg;
use crate::queue::pool::PoolInfo;
use crate::queue::report::{JobHistory, JobReport, JobsPage};
use crate::queue::shared::Queue;
use crate::queue::spec::SpecError;
use crate::queue::store::cancel::Cancel;
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;

/// How many jobs of a bulk retry or cancel are in flight at once: enough to
/// hide the store's round trips, few enough to leave it to everyone else.
pub const BULK_WIDTH: usize = 8;

/// The queue, for its operators. Cheap to clone.
#[derive(Clone)]
pub struct QueueHandle {
    poller: ActorSlot<PollerMsg>,
    /// The store, pauses, types and cancellations the poller shares.
    queue: Arc<Queue>,
    /// How long a query waits for the store (or the poller).
    timeout: Duration,
}

impl QueueHandle {
    pub(crate) fn new(poller: ActorSlot<PollerMsg>, queue: Arc<Queue>, timeout: Duration) -> Self {
        Self {
            poller,
            queue,
            timeout,
        }
    }

    /// Jobs, newest first, as `query` filters and pages them.
    pub async fn list(&self, query: JobQuery) -> Result<JobsPage, QueueError> {
        let page = self.bounded(self.queue.store.list(&query)).await?;
        Ok(page.into())
    }

    /// The job `id` with its attempts; [`QueueError::NotFound`] if there is
    /// no such job.
    pub async fn get(&self, id: JobId) -> Result<JobHistory, QueueError> {
        let found = self.bounded(self.queue.store.get(id.object_id())).await?;
        let (job, attempts) = found.ok_or(QueueError::NotFound)?;
        Ok(JobHistory::new(job, attempts))
    }

    /// The flow of job `id` as a tree ([`crate::queue::flow_tree`]);
    /// [`QueueError::NotFound`] if there is no such job.
    pub async fn flow(&self, id: JobId) -> Result<FlowTree, QueueError> {
        let tree = self
            .bounded(flow_tree::flow_tree(&self.queue.store, id))
            .await?;
        tree.ok_or(QueueError::NotFound)
    }

    /// Put the `failed` job `id` back to `pending` (`waiting`, if it
    /// depends on other jobs: they decide anew) with a fresh attempt
    /// budget; the job as it is now. The poller looks for it at once.
    pub async fn retry(&self, id: JobId) -> Result<JobReport, QueueError> {
        let retry = self
            .queue
            .store
            .retry(id.object_id(), self.queue.config.hold);
        let mut job = self.bounded(retry).await?;
        tracing::info!(target: "worker", job = %id, status = job.status.as_str(), "failed job retried");
        if job.status == JobStatus::Waiting {
            // Its dependencies decide anew.
            self.queue.store.flows_seen().set(true);
            let flows = self.queue.flows();
            self.bounded(flows.settle(std::slice::from_ref(&job)))
                .await?;
            let reread = self.bounded(self.queue.store.get(id.object_id())).await?;
            job = reread.ok_or(QueueError::NotFound)?.0;
        }
        self.nudge();
        Ok(job.into())
    }

    /// Cancel the job `id`: a pending job is `cancelled` at once (it never
    /// runs); a running one is asked to stop (`cancelRequested`) and ends
    /// `cancelled` when its handler stops (at once if it runs here: its
    /// token fires). [`QueueError::Finished`] if it has ended already. The
    /// job as it is now.
    pub async fn cancel(&self, id: JobId) -> Result<JobReport, QueueError> {
        let oid = id.object_id();
        let job = match self.bounded(self.queue.store.cancel(oid)).await? {
            Cancel::Cancelled(job) => {
                tracing::info!(target: "worker", job = %id, "pending job cancelled");
                self.queue.events.publish(Event::JobCancelled {
                    job_id: oid.to_hex(),
                    job_type: job.kind.clone(),
                    attempt: job.attempts,
                });
                // Its dependents settle now (a failed one's, in turn).
                self.queue.flows().after_end_logged(oid).await;
                job
            }
            Cancel::Requested(job) => {
                let here = self.queue.cancellations.cancel(oid);
                tracing::info!(target: "worker", job = %id, here, "running job asked to stop");
                job
            }
        };
        Ok(job.into())
    }

    /// Apply `query`'s action to the jobs it matches, at most `limit` of
    /// them, oldest first (see [`crate::queue::bulk`]); with `dry_run`, only
    /// count them. Each job goes through the single-job operation
    /// ([`retry`](Self::retry), [`cancel`](Self::cancel)), [`BULK_WIDTH`] at
    /// a time; a job that changed meanwhile is skipped. Deletes go in one
    /// batch. Each store call is bounded by the call timeout, not the whole.
    pub async fn bulk(
        &self,
        query: &BulkQuery,
        limit: u32,
        dry_run: bool,
    ) -> Result<BulkOutcome, QueueError> {
        let (action, query) = (query.action(), query.document());
        let store = &self.queue.store;
        let matched = self.bounded(store.count_matching(query.clone())).await?;
        if dry_run || matched == 0 {
            let more = matched > u64::from(limit);
            return Ok(BulkOutcome {
                matched,
                applied: 0,
                more,
            });
        }
        let ids = self
            .bounded(store.matching_ids(query.clone(), limit))
            .await?;
        let taken = ids.len() as u64;
        let applied = match action {
            BulkAction::Delete => self.bounded(store.delete_finished(&ids)).await?,
            BulkAction::Retry | BulkAction::Cancel => self.each(action, ids).await?,
        };
        tracing::info!(target: "worker", action = action.as_str(), matched, applied, "bulk operation by an operator");
        Ok(BulkOutcome {
            matched,
            applied,
            more: matched > taken,
        })
    }

    /// Retry or cancel each of `ids`; how many it was applied to.
    async fn each(&self, action: BulkAction, ids: Vec<ObjectId>) -> Result<u64, QueueError> {
        let results: Vec<Result<bool, QueueError>> = stream::iter(ids)
            .map(|oid| async move {
                let id = JobId::from(oid);
                let done = match action {
                    BulkAction::Cancel => self.cancel(id).await.map(drop),
                    _ => self.retry(id).await.map(drop),
                };
                match done {
                    Ok(()) => Ok(true),
                    // Changed under the call: someone else took it.
                    Err(QueueError::NotFound | QueueError::NotFailed(_))
                    | Err(QueueError::Finished(_) | QueueError::UniqueKeyHeld(_)) => Ok(false),
                    Err(err) => Err(err),
                }
            })
            .buffer_unordered(BULK_WIDTH)
            .collect()
            .await;
        let mut applied = 0;
        for result in results {
            applied += u64::from(result?);
        }
        Ok(applied)
    }

    /// What is paused, as stored (what every instance applies within a tick).
    pub async fn pauses(&self) -> Result<Pauses, QueueError> {
        self.bounded(self.queue.pauses.read()).await
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

    /// The fleet-wide concurrency limits in force, read from the store now
    /// (this instance applies what it read at once), each with whether an
    /// operator stored it (else it is the configuration's).
    pub async fn limits(&self) -> Result<Vec<(String, Limit, bool)>, QueueError> {
        let book = self.queue.store.limits();
        let stored = self.bounded(self.queue.store.limit_store().read()).await?;
        book.stored(stored);
        let limits = book.current();
        Ok((limits.into_iter())
            .map(|(kind, limit)| {
                let stored = book.is_stored(&kind);
                (kind, limit, stored)
            })
            .collect())
    }

    /// Limit how many jobs of `kind` run at once across the fleet (stored:
    /// every instance applies it within [`crate::queue::limit::READ_EVERY`],
    /// this one at once). Refused for an unregistered type or a limit out
    /// of range.
    pub async fn set_limit(&self, kind: &str, limit: Limit) -> Result<(), QueueError> {
        let types = &self.queue.types;
        if !types.is_registered(kind) {
            return Err(SpecError::unknown_type(kind, types).into());
        }
        limit.validate()?;
        let store = self.queue.store.limit_store();
        self.bounded(store.set(kind, &limit)).await?;
        self.queue.store.limits().changed(kind, Some(limit));
        Ok(())
    }

    /// Remove the limit an operator stored for `kind` (its configured one,
    /// if any, applies again); whether there was one.
    pub async fn remove_limit(&self, kind: &str) -> Result<bool, QueueError> {
        let store = self.queue.store.limit_store();
        let removed = self.bounded(store.remove(kind)).await?;
        self.queue.store.limits().changed(kind, None);
        Ok(removed)
    }

    /// Store the pause (or its end), read the pauses back, and have this
    /// instance's poller apply them at once (the others do within a tick).
    async fn set_pause(&self, target: PauseTarget, pause: bool) -> Result<Pauses, QueueError> {
        if let PauseTarget::Type(kind) = &target {
            let types = &self.queue.types;
            if !types.is_registered(kind) {
                return Err(SpecError::unknown_type(kind, types).into());
            }
        }
        let store = &self.queue.pauses;
        let pauses = self
            .bounded(async {
                match pause {
                    true => store.pause(&target).await?,
                    false => store.resume(&target).await?,
                }
                store.read().await
            })
            .await?;
        tracing::info!(target: "worker", ?target, pause, "pause changed by an operator");
        // A poller that is down reads them at its first tick.
        let _ = self.poller.cast(PollerMsg::Paused(pauses.clone()));
        Ok(pauses)
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
        let stats = self.bounded(self.queue.store.stats()).await?;
        Ok(stats.with_types(&self.queue.types))
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
    /// reclaim (fenced by the attempt record): `instance` is dead. This
    /// instance's poller then looks for claimable jobs. Returns how many
    /// jobs were released.
    pub async fn release_instance(&self, instance: &str) -> Result<u64, QueueError> {
        let release = self.queue.store.release_instance(instance);
        let released = self
            .bounded(release)
            .await
            .inspect_err(|err| tracing::warn!(target: "worker", %instance, error = %err, "could not release a dead instance's jobs"))?;
        if released > 0 {
            tracing::warn!(target: "worker", %instance, released, "jobs of a dead instance released");
            self.nudge();
        }
        Ok(released)
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

    /// `work`, or [`QueueError::StoreTimeout`] once the call timeout is over.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| QueueError::StoreTimeout(self.timeout))?
    }
}

//! Cancelling a job (`POST /jobs/{id}/cancel`): the store's side (the
//! running jobs' cancellation tokens are [`crate::queue::cancel`]).
//!
//! # The marker, and why no cancelled job runs
//! Every run of attempt `k` of a job needs its claimer to have inserted the
//! attempt record `"<jobId>:<k>"` first (a unique `_id`, atomic on MongoDB
//! and FerretDB alike), and its `take` then needs the job still at
//! `attempts == k - 1` ([`super::claim`]). A cancel of a job read
//! at `attempts == n` inserts that same record for `k = n + 1`, with the
//! outcome `cancelled`: the *marker*. Of the marker and any claim of attempt
//! `n + 1`, exactly one insert wins. If the marker wins, no claimer ever
//! holds attempt `n + 1`, so no `take` moves the job past `attempts == n`,
//! so no attempt after `n` ever runs, on any instance; a claimer that finds
//! the marker settles the job as `cancelled` itself (so a canceller that
//! crashed after its insert loses nothing). If a claimer wins, the job has
//! moved on: the cancel reads it again and marks the next attempt.
//! A pending (or waiting) job has no attempt running (its last ended before it went
//! back to pending), so once its marker is in, it never runs again.
//! A processing job's running attempt `n` is asked to stop: its executor
//! looks for the marker at each lease renewal (and is told at once when
//! the cancel came through its own instance), fires the job's
//! cancellation and records the attempt and the job `cancelled`; if the
//! attempt ends otherwise first, a retry is blocked by the same marker.
//!
//! The marker stays in the history as the attempt that never ran (outcome
//! `cancelled`, executor `cancel`), and is pruned with the other records.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime};

use super::finish::Ending;
use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Candidate, Job, JobStatus, Outcome};

/// The executor name on a cancellation's marker.
const MARKER_EXECUTOR: &str = "cancel";

/// How often a cancel tries again while a claim of the job is under way.
const TRIES: u32 = 5;

/// What a cancel did.
#[derive(Debug)]
pub enum Cancel {
    /// The job was pending: it is `cancelled` now and never runs.
    Cancelled(Job),
    /// The job is running: it was asked to stop (`cancelRequested`) and
    /// ends `cancelled` once its handler stops.
    Requested(Job),
}

impl JobStore {
    /// Cancel the job `id` (see the module's doc). [`QueueError::NotFound`]
    /// if there is none; [`QueueError::Finished`] if it has ended already.
    pub async fn cancel(&self, id: ObjectId) -> Result<Cancel, QueueError> {
        for _ in 0..TRIES {
            let job = self.jobs.find_one(doc! { "_id": id }).await?;
            let job = job.ok_or(QueueError::NotFound)?;
            if matches!(
                job.status,
                JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
            ) {
                return Err(QueueError::Finished(job.status.as_str()));
            }
            if !self.mark_cancelled(id, job.attempts + 1).await? {
                // A claimer holds the next attempt: the job moved on.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let candidate = Candidate {
                id,
                status: job.status,
                attempts: job.attempts,
                rank: job.rank,
                kind: Some(job.kind.clone()),
                payload: None,
            };
            return match job.status {
                JobStatus::Pending | JobStatus::Waiting => {
                    self.settle_cancelled(&candidate).await?;
                    Ok(Cancel::Cancelled(self.reread(id).await?))
                }
                _ => {
                    self.request_stop(&candidate).await?;
                    Ok(Cancel::Requested(self.reread(id).await?))
                }
            };
        }
        Err(QueueError::Busy)
    }

    /// Insert the marker of attempt `attempt`; `true` if it is there now
    /// (this call's, or an earlier cancel's), `false` if a claimer holds it.
    async fn mark_cancelled(&self, id: ObjectId, attempt: i32) -> Result<bool, QueueError> {
        let now = self.clock.now();
        let marker = Attempt {
            id: format!("{id}:{attempt}"),
            job_id: id,
            attempt,
            instance: self.instance().to_owned(),
            executor: MARKER_EXECUTOR.into(),
            started_at: now,
            finished_at: Some(now),
            outcome: Outcome::Cancelled,
            error: Some("cancelled by an operator before it ran".into()),
        };
        if self.insert_attempt(&marker).await? {
            return Ok(true);
        }
        let existing = self.attempts.find_one(doc! { "_id": &marker.id }).await?;
        Ok(existing.is_some_and(|record| record.outcome == Outcome::Cancelled))
    }

    /// Whether attempt `attempt` of job `id` (running) was cancelled: the
    /// next attempt's record is a cancellation's marker. One read by `_id`.
    pub async fn cancel_requested(&self, id: ObjectId, attempt: i32) -> Result<bool, QueueError> {
        let marker = format!("{id}:{}", attempt + 1);
        let found = self
            .attempts
            .count_documents(doc! { "_id": marker, "outcome": Outcome::Cancelled.as_str() })
            .await?;
        Ok(found > 0)
    }

    /// The job, as `candidate` saw it, is `cancelled` (its marker is in): a
    /// pending job, or a processing one whose runner is gone (its lease
    /// expired; its attempt is recorded `crashed`).
    pub(crate) async fn settle_cancelled(&self, candidate: &Candidate) -> Result<(), QueueError> {
        let now = self.clock.now();
        let mut filter = doc! {
            "_id": candidate.id, "status": candidate.status.as_str(), "attempts": candidate.attempts,
        };
        if candidate.status == JobStatus::Processing {
            filter.insert("lockedUntil", doc! { "$lt": now });
        }
        if candidate.status == JobStatus::Waiting {
            // Released meanwhile, it is pending behind the same marker.
            filter.insert("status", doc! { "$in": ["waiting", "pending"] });
        }
        let settled = self.jobs.update_one(filter, cancelled_update(now)).await?;
        if settled.modified_count != 1 {
            return Ok(());
        }
        if candidate.status == JobStatus::Processing {
            self.close_abandoned_attempt(candidate.id, candidate.attempts)
                .await;
        }
        // The end is written: its unique key (if any) is free again (after
        // the end, as every end releases it; see `crate::queue::unique`).
        if let Some(job) = self.jobs.find_one(doc! { "_id": candidate.id }).await? {
            self.release_unique(&job).await?;
        }
        Ok(())
    }

    /// Flag the running job (what the API shows; the executor goes by the
    /// marker, which no concurrent write of the job can undo).
    async fn request_stop(&self, candidate: &Candidate) -> Result<(), QueueError> {
        self.jobs
            .update_one(
                doc! { "_id": candidate.id, "status": "processing", "attempts": candidate.attempts },
                doc! { "$set": { "cancelRequested": true, "updatedAt": self.clock.now() } },
            )
            .await?;
        Ok(())
    }

    /// Attempt `attempt` stopped because the job was cancelled: the attempt
    /// and the job are `cancelled` (never retried).
    pub async fn record_cancelled(&self, id: ObjectId, attempt: i32) -> Result<(), QueueError> {
        self.finish_one(&Ending::cancelled(id, attempt)).await
    }

    async fn reread(&self, id: ObjectId) -> Result<Job, QueueError> {
        let job = self.jobs.find_one(doc! { "_id": id }).await?;
        job.ok_or(QueueError::NotFound)
    }
}

/// The update that makes a job `cancelled`.
fn cancelled_update(now: DateTime) -> mongodb::bson::Document {
    doc! { "$set": {
        "status": JobStatus::Cancelled.as_str(), "cancelRequested": true, "cancelledAt": now,
        "updatedAt": now, "lockedBy": Bson::Null, "lockedUntil": Bson::Null,
    } }
}

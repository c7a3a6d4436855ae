//! The end of an attempt: lease renewal while it runs, then its outcome
//! (the attempt record first, then the job, each guarded by the attempt
//! number and `processing`, so a stale runner's write changes nothing).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{JobStatus, Outcome};

impl JobStore {
    /// Extend the lease of a running attempt.
    pub async fn renew(
        &self,
        id: ObjectId,
        attempt: i32,
        lease: Duration,
    ) -> Result<(), QueueError> {
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": { "lockedUntil": self.clock.after(lease), "updatedAt": self.clock.now() } },
            )
            .await?;
        Ok(())
    }

    /// Record how attempt `attempt` of job `id` ended.
    pub(crate) async fn finish_attempt(
        &self,
        id: ObjectId,
        attempt: i32,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), QueueError> {
        self.attempts
            .update_one(
                doc! { "_id": format!("{id}:{attempt}") },
                doc! { "$set": {
                    "finishedAt": self.clock.now(), "outcome": outcome.as_str(), "error": error,
                } },
            )
            .await?;
        Ok(())
    }

    /// Attempt `attempt` succeeded.
    pub async fn complete(
        &self,
        id: ObjectId,
        attempt: i32,
        result: Document,
    ) -> Result<(), QueueError> {
        // The attempt record first: once the job reads final, so does its history.
        self.finish_attempt(id, attempt, Outcome::Completed, None)
            .await?;
        let now = self.clock.now();
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": {
                    "status": "completed", "result": result, "completedAt": now, "updatedAt": now,
                    "lockedBy": Bson::Null, "lockedUntil": Bson::Null, "lastError": Bson::Null,
                } },
            )
            .await?;
        Ok(())
    }

    /// Attempt `attempt` failed with `error`. With `retry_in`, and attempts
    /// left, the job is pending again at now + `retry_in`; otherwise `failed`.
    pub async fn fail(
        &self,
        id: ObjectId,
        attempt: i32,
        max_attempts: i32,
        outcome: Outcome,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<JobStatus, QueueError> {
        let now = self.clock.now();
        let (status, run_at) = match retry_in {
            Some(delay) if attempt < max_attempts => (JobStatus::Pending, self.clock.after(delay)),
            _ => (JobStatus::Failed, now),
        };
        self.finish_attempt(id, attempt, outcome, Some(error))
            .await?;
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": {
                    "status": status.as_str(), "runAt": run_at, "lastError": error, "updatedAt": now,
                    "lockedBy": Bson::Null, "lockedUntil": Bson::Null,
                } },
            )
            .await?;
        Ok(status)
    }
}

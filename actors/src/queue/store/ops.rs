//! What operators read and do through `/jobs`: pages of jobs, one job and
//! its history, retries, and the counts of `/metrics` and `GET /jobs/stats`.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::unique::Taken;
use super::{JobStore, JOBS};
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Job, JobPage, JobQuery, JobStatus, QueueStats, StatusCounts};
use crate::store::readable;

impl JobStore {
    /// A page of jobs, newest first, filtered as `query` says.
    pub async fn list(&self, query: &JobQuery) -> Result<JobPage, QueueError> {
        let mut filter = Document::new();
        if let Some(status) = query.status {
            filter.insert("status", status.as_str());
        }
        if let Some(kind) = &query.kind {
            filter.insert("type", kind);
        }
        if let Some(cursor) = query.cursor {
            filter.insert("_id", doc! { "$lt": cursor.object_id() });
        }
        // Read as documents: one this service cannot read (a foreign shape)
        // is skipped and counted, never an error for the whole page. The
        // cursor follows the documents read, readable or not.
        let mut raw: Vec<Document> = self
            .jobs
            .clone_with_type::<Document>()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(query.limit + 1)
            .await?
            .try_collect()
            .await?;
        let next_cursor = if raw.len() as i64 > query.limit {
            raw.truncate(query.limit as usize);
            raw.last().and_then(|d| d.get_object_id("_id").ok())
        } else {
            None
        };
        let jobs = raw
            .into_iter()
            .filter_map(|d| readable::<Job>(JOBS, d))
            .collect();
        Ok(JobPage { jobs, next_cursor })
    }

    /// The job `id` and its attempts, oldest first; `None` if there is no
    /// such job.
    /// [`QueueError::Unreadable`] if it is stored in a shape this service
    /// cannot read.
    pub async fn get(&self, id: ObjectId) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
        let raw = self.jobs.clone_with_type::<Document>();
        let Some(job) = raw.find_one(doc! { "_id": id }).await? else {
            return Ok(None);
        };
        let job = readable::<Job>(JOBS, job).ok_or(QueueError::Unreadable(id.into()))?;
        let attempts = self
            .attempts
            .find(doc! { "jobId": id })
            .sort(doc! { "attempt": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(Some((job, attempts)))
    }

    /// Put a `failed` job back to `pending` (one with dependencies:
    /// `waiting`, see [`crate::queue::flow`]), due now, with a fresh attempt
    /// budget: the attempts it was given at enqueue. (`attempts` keeps
    /// counting, so attempt records never collide.)
    /// A job with a unique key takes its key back first (`grace`:
    /// `queue.hold`); if another live job holds it, the job stays failed.
    /// It keeps its rank: retried, it goes to the head of its line.
    pub async fn retry(&self, id: ObjectId, grace: Duration) -> Result<Job, QueueError> {
        let job = self
            .jobs
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(QueueError::NotFound)?;
        if job.status != JobStatus::Failed {
            return Err(QueueError::NotFailed(job.status.as_str()));
        }
        if let Some(key) = &job.unique_key {
            if let Taken::HeldBy(other) = self.take_unique(&job, key, grace).await? {
                return Err(QueueError::UniqueKeyHeld(other.into()));
            }
        }
        let now = self.clock.now();
        // A job of a flow waits for its dependencies again.
        let status = match job.depends_on.is_empty() {
            true => JobStatus::Pending,
            false => JobStatus::Waiting,
        };
        // Guarded by status and attempt count: of two concurrent retries, one wins.
        let updated = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "failed", "attempts": job.attempts },
                doc! { "$set": {
                    "status": status.as_str(), "runAt": now, "updatedAt": now,
                    "maxAttempts": job.attempts + job.attempt_budget.unwrap_or(self.max_attempts),
                } },
            )
            .await?;
        if updated.matched_count == 0 {
            return Err(QueueError::NotFailed("being retried"));
        }
        self.jobs
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(QueueError::NotFound)
    }

    /// Jobs by status, in one `aggregate`: what `/metrics` shows of the
    /// queue. (On FerretDB every read scans the collection; v1.24 has no
    /// `$min` accumulator, or the oldest pending job would come along.)
    pub async fn counts(&self) -> Result<StatusCounts, QueueError> {
        let mut counts = StatusCounts::default();
        let mut groups = self
            .jobs
            .aggregate([doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } }])
            .await?;
        while let Some(group) = groups.try_next().await? {
            if let Some((status, n)) = status_count(&group) {
                counts.set(status, n);
            }
        }
        Ok(counts)
    }

    /// The figures of `GET /jobs/stats` (operators only): [`counts`](Self::counts),
    /// the oldest pending job's age and the completions of the last minute.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stats = self.grouped_counts().await?;
        stats.oldest_pending_age_seconds = self.oldest_pending_age().await?;
        stats.completed_last_minute = self.completed_since(Duration::from_secs(60)).await?;
        Ok(stats)
    }

    /// Counts by status, in all and by type and priority, from one
    /// `aggregate` grouping by all three.
    async fn grouped_counts(&self) -> Result<QueueStats, QueueError> {
        let group = doc! { "$group": {
            "_id": { "status": "$status", "type": "$type", "priority": "$priority" },
            "n": { "$sum": 1 },
        } };
        let (mut stats, mut total) = (QueueStats::default(), StatusCounts::default());
        let mut groups = self.jobs.aggregate([group]).await?;
        while let Some(group) = groups.try_next().await? {
            let Some((by, n)) = grouped_count(&group) else {
                continue;
            };
            total.add(by.status, n);
            stats.by_type.entry(by.kind).or_default().add(by.status, n);
            stats
                .by_priority
                .entry(by.priority)
                .or_default()
                .add(by.status, n);
        }
        (stats.pending, stats.processing) = (total.pending, total.processing);
        (stats.completed, stats.failed) = (total.completed, total.failed);
        (stats.cancelled, stats.waiting) = (total.cancelled, total.waiting);
        Ok(stats)
    }

    /// How late the longest-waiting due job is: seconds since its `runAt`
    /// (a job scheduled for later is not late); `None` if no pending job is due.
    async fn oldest_pending_age(&self) -> Result<Option<f64>, QueueError> {
        let now = self.clock.now();
        let oldest = self
            .jobs
            .find_one(doc! { "status": "pending", "runAt": { "$lte": now } })
            .sort(doc! { "runAt": 1 })
            .await?;
        Ok(oldest
            .map(|job| (now.timestamp_millis() - job.run_at.timestamp_millis()) as f64 / 1000.0))
    }

    /// Jobs completed within the last `window`.
    async fn completed_since(&self, window: Duration) -> Result<u64, QueueError> {
        let since = self.clock.before(window);
        self.jobs
            .count_documents(doc! { "status": "completed", "completedAt": { "$gte": since } })
            .await
            .map_err(Into::into)
    }
}

/// One group of the `counts` aggregate, `{_id: status, n: count}`, as a
/// status and its count; `None` for a status the queue does not know.
fn status_count(group: &Document) -> Option<(JobStatus, u64)> {
    let status = JobStatus::parse(group.get_str("_id").ok()?)?;
    Some((status, count(group.get("n"))))
}

/// A count as the server sends it: int32, int64, or (FerretDB) double.
fn count(n: Option<&Bson>) -> u64 {
    match n {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

/// What one group of the stats aggregate counts.
#[derive(Debug, PartialEq)]
struct Group {
    status: JobStatus,
    kind: String,
    priority: i32,
}

/// One group of the stats aggregate, `{_id: {status, type, priority}, n}`;
/// `None` for a status the queue does not know. A job without a priority
/// (from before priorities) counts as priority 0.
fn grouped_count(found: &Document) -> Option<(Group, u64)> {
    let by = found.get_document("_id").ok()?;
    let status = JobStatus::parse(by.get_str("status").ok()?)?;
    let priority = match by.get("priority") {
        Some(Bson::Int32(p)) => *p,
        Some(Bson::Int64(p)) => i32::try_from(*p).unwrap_or_default(),
        Some(Bson::Double(p)) => *p as i32,
        _ => 0,
    };
    let kind = by.get_str("type").unwrap_or_default().to_owned();
    let group = Group {
        status,
        kind,
        priority,
    };
    Some((group, count(found.get("n"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_group_reads_whatever_number_type_the_server_sends() {
        for n in [Bson::Int32(7), Bson::Int64(7), Bson::Double(7.0)] {
            let group = doc! { "_id": "pending", "n": n };
            assert_eq!(status_count(&group), Some((JobStatus::Pending, 7)));
        }
        let missing = doc! { "_id": "failed" };
        assert_eq!(status_count(&missing), Some((JobStatus::Failed, 0)));
    }

    #[test]
    fn a_stats_group_reads_its_status_type_and_priority_missing_priority_as_zero() {
        let found = doc! { "_id": { "status": "pending", "type": "t", "priority": -5 }, "n": 2.0 };
        let group = Group {
            status: JobStatus::Pending,
            kind: "t".into(),
            priority: -5,
        };
        assert_eq!(grouped_count(&found), Some((group, 2)));
        let old = doc! { "_id": { "status": "failed", "type": "t" }, "n": 1 };
        assert_eq!(grouped_count(&old).map(|(g, _)| g.priority), Some(0));
        let unknown = doc! { "_id": { "status": "archived", "type": "t" }, "n": 1 };
        assert_eq!(grouped_count(&unknown), None);
    }

    #[test]
    fn a_group_of_an_unknown_status_is_ignored() {
        assert_eq!(status_count(&doc! { "_id": "archived", "n": 3 }), None);
        assert_eq!(status_count(&doc! { "_id": Bson::Null, "n": 3 }), None);
    }
}

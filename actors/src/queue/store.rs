//! The persistent job queue's documents and every query on them.
//!
//! A job is a document in `jobs`; producers insert it `pending`, the
//! QueuePollerActor claims it, a JobExecutor runs it. Each attempt also gets a
//! document in `job_attempts`, whose `_id` is `"<jobId>:<attempt>"`.
//!
//! # Why the attempt record
//! The claim is a `findOneAndUpdate`, atomic on MongoDB. FerretDB v1's is not:
//! it reads, then writes by `_id`, so two pollers could both "claim" one job
//! for the same attempt number, and a late write could undo a newer state.
//! So a claimer first *reserves* the attempt by inserting its record
//! `"<jobId>:<n>"` — a unique-key insert, atomic on both servers — and only
//! the reserver updates the job and runs attempt `n`. At most one executor
//! ever runs a given attempt, on either server. The records double as the
//! job's history (who held it, when, and how it ended).

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};
use mongodb::{Collection, Database};

use crate::store::{ensure_indexes, index};
use serde::{Deserialize, Serialize};

use crate::store::is_duplicate_key;

pub const COLLECTION: &str = "jobs";
pub const ATTEMPTS: &str = "job_attempts";

/// `[queue]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    /// How often the poller looks for due jobs (it also wakes on enqueue).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Executors in the pool: jobs run at once by this instance.
    pub executors: usize,
    /// How long a claim holds a job; renewed while the job runs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Longest run of one attempt.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Attempts before a job is `failed`.
    pub max_attempts: i32,
    /// Retry delay after attempt n: `backoff_base * 2^(n-1)`, at most `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Completed jobs (and all attempt records) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// The queue figures on `/metrics` are recounted at most this often, on
    /// the poller's tick after a scrape asked for them (see
    /// [`crate::queue::snapshot`]).
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
}

impl QueueConfig {
    /// The delay before the attempt after attempt `n` (1-based).
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 30) as u32 - 1;
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Processing,
            Self::Completed,
            Self::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A job document, field names as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Document,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime>,
    pub last_error: Option<String>,
    pub result: Option<Document>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub completed_at: Option<DateTime>,
}

impl Job {
    /// A new pending job, due now.
    pub fn new(kind: &str, payload: Document, max_attempts: i32) -> Self {
        let now = DateTime::now();
        Self {
            id: ObjectId::new(),
            kind: kind.into(),
            payload,
            status: JobStatus::Pending,
            attempts: 0,
            max_attempts,
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            result: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }
}

/// A job that looked claimable when listed.
#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub status: JobStatus,
    pub attempts: i32,
}

impl Candidate {
    /// A job just enqueued: pending, never attempted.
    pub fn enqueued(id: ObjectId) -> Self {
        Self {
            id,
            status: JobStatus::Pending,
            attempts: 0,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Completed,
    Failed,
    TimedOut,
    /// The executor died mid-job and the job was released for retry, or its
    /// runner vanished and the job was reclaimed when its lease expired.
    Crashed,
}

/// One attempt at one job: who held it, when, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// `"<jobId>:<attempt>"`: unique, so only one claimer can run an attempt.
    #[serde(rename = "_id")]
    pub id: String,
    pub job_id: ObjectId,
    pub attempt: i32,
    pub instance: String,
    pub executor: String,
    pub started_at: DateTime,
    pub finished_at: Option<DateTime>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Counts for `GET /jobs/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    /// Age of the oldest pending job, in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: u64,
}

/// Jobs by status, as one `aggregate` finds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
}

/// A page of jobs, newest first.
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<ObjectId>,
}

/// Filters for a listing.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    pub limit: i64,
    /// Only jobs older (smaller id) than this.
    pub cursor: Option<ObjectId>,
}

/// A `retry` that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such job")]
    NotFound,
    #[error("only a failed job can be retried; this one is {0}")]
    NotFailed(&'static str),
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
}

/// The queue's collections, as seen by one instance.
#[derive(Clone)]
pub struct JobStore {
    jobs: Collection<Job>,
    attempts: Collection<Attempt>,
    instance: String,
    max_attempts: i32,
}

fn after(duration: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + duration.as_millis() as i64)
}

impl JobStore {
    pub fn new(db: &Database, instance: impl Into<String>, max_attempts: i32) -> Self {
        Self {
            jobs: db.collection(COLLECTION),
            attempts: db.collection(ATTEMPTS),
            instance: instance.into(),
            max_attempts,
        }
    }

    /// This instance's id, as written to `lockedBy`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Indexes for the claim query (due pending jobs in FIFO order, expired
    /// leases), listings, history and pruning.
    pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
        ensure_indexes(
            &db.collection(COLLECTION),
            vec![
                index(doc! { "status": 1, "runAt": 1, "createdAt": 1 }, false),
                index(doc! { "status": 1, "lockedUntil": 1 }, false),
                index(doc! { "type": 1 }, false),
                index(doc! { "status": 1, "completedAt": 1 }, false),
            ],
        )
        .await?;
        ensure_indexes(
            &db.collection(ATTEMPTS),
            vec![
                index(doc! { "jobId": 1, "attempt": 1 }, false),
                index(doc! { "finishedAt": 1 }, false),
            ],
        )
        .await
    }

    /// Insert a pending job; returns its id once the write is acknowledged.
    pub async fn enqueue(&self, kind: &str, payload: Document) -> mongodb::error::Result<ObjectId> {
        let job = Job::new(kind, payload, self.max_attempts);
        self.jobs.insert_one(&job).await?;
        Ok(job.id)
    }

    /// Delete a job that should never run (its producer gave up on it).
    pub async fn delete(&self, id: ObjectId) -> mongodb::error::Result<()> {
        self.jobs.delete_one(doc! { "_id": id }).await?;
        Ok(())
    }

    /// Up to `limit` claimable jobs, oldest first: those whose lease expired,
    /// then pending ones that are due. A read only; [`claim`](Self::claim)
    /// takes them one by one.
    ///
    /// Why not one `findOneAndUpdate` over the whole queue: the query
    /// `{$or: [pending and due, processing and expired]}` sorted by age is
    /// cheap on MongoDB (indexes) but FerretDB v1 evaluates it in memory over
    /// every pending document, per claim. Listing a batch once and claiming
    /// each by `_id` (an equality FerretDB pushes down to PostgreSQL) keeps
    /// claims fast on both.
    pub async fn candidates(&self, limit: i64) -> mongodb::error::Result<Vec<Candidate>> {
        let now = DateTime::now();
        let projection = doc! { "_id": 1, "status": 1, "attempts": 1 };
        let mut found: Vec<Candidate> = self
            .jobs
            .clone_with_type::<Candidate>()
            .find(doc! { "status": "processing", "lockedUntil": { "$lt": now } })
            .projection(projection.clone())
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        let pending: Vec<Candidate> = self
            .jobs
            .clone_with_type::<Candidate>()
            .find(doc! { "status": "pending", "runAt": { "$lte": now } })
            .projection(projection)
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(limit - found.len() as i64)
            .await?
            .try_collect()
            .await?;
        found.extend(pending);
        Ok(found)
    }

    /// Claim `candidate` for `executor`. `None`: someone else took it first.
    ///
    /// 1. Reserve the attempt: insert its record `"<jobId>:<attempts+1>"`.
    ///    A unique-key insert is atomic on MongoDB and FerretDB alike, so
    ///    exactly one claimer gets each attempt, and only that one writes
    ///    the job: on FerretDB, whose `findAndModify` reads and then writes
    ///    the whole document, a losing claimer's write could otherwise undo a
    ///    newer state (a completion, say).
    /// 2. `findOneAndUpdate` the job by `_id`, if it is still as listed (same
    ///    status and attempt count, still due or still expired): `processing`,
    ///    the lease, `attempts + 1`. If it is not, drop the reservation.
    pub async fn claim(
        &self,
        candidate: &Candidate,
        lease: Duration,
        executor: &str,
    ) -> mongodb::error::Result<Option<Job>> {
        let attempt = Attempt {
            id: format!("{}:{}", candidate.id, candidate.attempts + 1),
            job_id: candidate.id,
            attempt: candidate.attempts + 1,
            instance: self.instance.clone(),
            executor: executor.into(),
            started_at: DateTime::now(),
            finished_at: None,
            outcome: Outcome::Running,
            error: None,
        };
        if !self.reserve(&attempt, candidate, lease).await? {
            return Ok(None);
        }
        let now = DateTime::now();
        let filter = match candidate.status {
            JobStatus::Processing => doc! {
                "_id": candidate.id, "status": "processing", "attempts": candidate.attempts,
                "lockedUntil": { "$lt": now },
            },
            _ => doc! {
                "_id": candidate.id, "status": "pending", "attempts": candidate.attempts,
                "runAt": { "$lte": now },
            },
        };
        let update = doc! {
            "$set": {
                "status": "processing",
                "lockedBy": &self.instance,
                "lockedUntil": after(lease),
                "updatedAt": now,
            },
            "$inc": { "attempts": 1 },
        };
        let options = FindOneAndUpdateOptions::builder()
            .return_document(ReturnDocument::After)
            .build();
        let claimed = self
            .jobs
            .find_one_and_update(filter, update)
            .with_options(options)
            .await?;
        match &claimed {
            None => {
                // The job moved on since it was listed: give the attempt back.
                self.attempts
                    .delete_one(doc! { "_id": &attempt.id, "instance": &self.instance, "startedAt": attempt.started_at })
                    .await?;
            }
            Some(job) if candidate.status == JobStatus::Processing => {
                self.close_abandoned_attempt(job.id, candidate.attempts)
                    .await;
            }
            Some(_) => {}
        }
        Ok(claimed)
    }

    /// A job reclaimed after its lease expired: its previous attempt's runner
    /// died or lost touch (SIGKILL, a partition) and never wrote an outcome.
    /// Record it as `crashed`, so the history does not say `running` forever.
    /// Only a record still `running` is touched: a runner that wrote its
    /// outcome but not the job's keeps the outcome it wrote. Best effort: the
    /// claim stands even if this write fails.
    async fn close_abandoned_attempt(&self, id: ObjectId, attempt: i32) {
        let crashed = mongodb::bson::to_bson(&Outcome::Crashed).expect("outcome serialises");
        let error = format!("lease expired; reclaimed by {}", self.instance);
        let closed = self
            .attempts
            .update_one(
                doc! { "_id": format!("{id}:{attempt}"), "outcome": "running" },
                doc! { "$set": { "finishedAt": DateTime::now(), "outcome": crashed, "error": &error } },
            )
            .await;
        if let Err(err) = closed {
            tracing::warn!(target: "worker", job = %id, attempt, error = %err, "could not mark the abandoned attempt crashed");
        }
    }

    /// Insert the attempt record; `false` if another claimer holds it.
    ///
    /// A claimer that died between reserving and claiming leaves a record
    /// that would block the job forever. So when the record exists, is older
    /// than a lease, still `running`, and the job still has the attempt
    /// count it had before that reservation, the record is stale: delete it
    /// (guarded by its start time, so only one claimer does) and try again.
    async fn reserve(
        &self,
        attempt: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> mongodb::error::Result<bool> {
        match self.attempts.insert_one(attempt).await {
            Ok(_) => return Ok(true),
            Err(err) if is_duplicate_key(&err) => {}
            Err(err) => return Err(err),
        }
        let Some(existing) = self.attempts.find_one(doc! { "_id": &attempt.id }).await? else {
            return Ok(false);
        };
        let stale_before = DateTime::now().timestamp_millis() - lease.as_millis() as i64;
        if existing.outcome != Outcome::Running
            || existing.started_at.timestamp_millis() > stale_before
        {
            return Ok(false);
        }
        let job = self.jobs.find_one(doc! { "_id": candidate.id }).await?;
        if job.is_none_or(|job| job.attempts != candidate.attempts) {
            return Ok(false);
        }
        tracing::warn!(target: "worker", job = %candidate.id, attempt = attempt.attempt, "removing a reservation its claimer abandoned");
        self.attempts
            .delete_one(doc! { "_id": &attempt.id, "startedAt": existing.started_at })
            .await?;
        match self.attempts.insert_one(attempt).await {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Extend the lease of a running attempt.
    pub async fn renew(
        &self,
        id: ObjectId,
        attempt: i32,
        lease: Duration,
    ) -> mongodb::error::Result<()> {
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": { "lockedUntil": after(lease), "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    async fn finish_attempt(
        &self,
        id: ObjectId,
        attempt: i32,
        outcome: Outcome,
        error: Option<&str>,
    ) -> mongodb::error::Result<()> {
        let outcome = mongodb::bson::to_bson(&outcome).expect("outcome serialises");
        self.attempts
            .update_one(
                doc! { "_id": format!("{id}:{attempt}") },
                doc! { "$set": { "finishedAt": DateTime::now(), "outcome": outcome, "error": error } },
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
    ) -> mongodb::error::Result<()> {
        // The attempt record first: once the job reads final, so does its history.
        self.finish_attempt(id, attempt, Outcome::Completed, None)
            .await?;
        let now = DateTime::now();
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
    ) -> mongodb::error::Result<JobStatus> {
        let now = DateTime::now();
        let (status, run_at) = match retry_in {
            Some(delay) if attempt < max_attempts => (JobStatus::Pending, after(delay)),
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

    /// Delete completed jobs and finished attempt records older than `retention`.
    /// (FerretDB has no TTL indexes, so this is a periodic delete.)
    pub async fn prune(&self, retention: Duration) -> mongodb::error::Result<u64> {
        let cutoff = DateTime::from_millis(
            DateTime::now().timestamp_millis() - retention.as_millis() as i64,
        );
        let jobs = self
            .jobs
            .delete_many(doc! { "status": "completed", "completedAt": { "$lt": cutoff } })
            .await?;
        self.attempts
            .delete_many(doc! { "finishedAt": { "$lt": cutoff } })
            .await?;
        Ok(jobs.deleted_count)
    }

    pub async fn list(&self, query: &JobQuery) -> mongodb::error::Result<JobPage> {
        let mut filter = Document::new();
        if let Some(status) = query.status {
            filter.insert("status", status.as_str());
        }
        if let Some(kind) = &query.kind {
            filter.insert("type", kind);
        }
        if let Some(cursor) = query.cursor {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        let mut jobs: Vec<Job> = self
            .jobs
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(query.limit + 1)
            .await?
            .try_collect()
            .await?;
        let next_cursor = if jobs.len() as i64 > query.limit {
            jobs.truncate(query.limit as usize);
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next_cursor })
    }

    pub async fn get(&self, id: ObjectId) -> mongodb::error::Result<Option<(Job, Vec<Attempt>)>> {
        let Some(job) = self.jobs.find_one(doc! { "_id": id }).await? else {
            return Ok(None);
        };
        let attempts = self
            .attempts
            .find(doc! { "jobId": id })
            .sort(doc! { "attempt": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(Some((job, attempts)))
    }

    /// Put a `failed` job back to `pending`, due now, with a fresh attempt
    /// budget. (`attempts` keeps counting, so attempt records never collide.)
    pub async fn retry(&self, id: ObjectId) -> Result<Job, RetryError> {
        let job = self
            .jobs
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(RetryError::NotFound)?;
        if job.status != JobStatus::Failed {
            return Err(RetryError::NotFailed(job.status.as_str()));
        }
        let now = DateTime::now();
        // Guarded by status and attempt count: of two concurrent retries, one wins.
        let updated = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "failed", "attempts": job.attempts },
                doc! { "$set": {
                    "status": "pending", "runAt": now, "updatedAt": now,
                    "maxAttempts": job.attempts + self.max_attempts,
                } },
            )
            .await?;
        if updated.matched_count == 0 {
            return Err(RetryError::NotFailed("being retried"));
        }
        self.jobs
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(RetryError::NotFound)
    }

    /// Jobs by status, in one `aggregate`: what `/metrics` shows of the
    /// queue. (On FerretDB every read scans the collection; v1.24 has no
    /// `$min` accumulator, or the oldest pending job would come along.)
    pub async fn counts(&self) -> mongodb::error::Result<StatusCounts> {
        let mut counts = StatusCounts::default();
        let mut groups = self
            .jobs
            .aggregate([doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } }])
            .await?;
        while let Some(group) = groups.try_next().await? {
            let n = match group.get("n") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                Some(Bson::Double(n)) => *n as u64,
                _ => 0,
            };
            match group.get_str("_id").ok().and_then(JobStatus::parse) {
                Some(JobStatus::Pending) => counts.pending = n,
                Some(JobStatus::Processing) => counts.processing = n,
                Some(JobStatus::Completed) => counts.completed = n,
                Some(JobStatus::Failed) => counts.failed = n,
                None => {}
            }
        }
        Ok(counts)
    }

    /// The figures of `GET /jobs/stats` (operators only): [`counts`](Self::counts),
    /// the oldest pending job's age and the completions of the last minute.
    pub async fn stats(&self) -> mongodb::error::Result<QueueStats> {
        let counts = self.counts().await?;
        let oldest = self
            .jobs
            .find_one(doc! { "status": "pending" })
            .sort(doc! { "createdAt": 1 })
            .await?;
        let oldest_pending_age_seconds = oldest.map(|job| {
            (DateTime::now().timestamp_millis() - job.created_at.timestamp_millis()) as f64 / 1000.0
        });
        let minute_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 60_000);
        let completed_last_minute = self
            .jobs
            .count_documents(doc! { "status": "completed", "completedAt": { "$gte": minute_ago } })
            .await?;
        Ok(QueueStats {
            pending: counts.pending,
            processing: counts.processing,
            completed: counts.completed,
            failed: counts.failed,
            oldest_pending_age_seconds,
            completed_last_minute,
        })
    }
}

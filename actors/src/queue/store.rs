//! [`JobStore`]: every query on the queue's two collections, `jobs` and
//! `job_attempts` (the types are in [`crate::queue::job`]).
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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};
use mongodb::{Collection, Database};

use crate::queue::error::QueueError;
use crate::queue::job::{
    Attempt, Candidate, Job, JobPage, JobQuery, JobStatus, Outcome, QueueStats, StatusCounts,
};
use crate::queue::pause::Pauses;
use crate::queue::unique::{Taken, UniqueKeys};
use crate::store::{ensure_indexes, index, is_duplicate_key, readable};

pub const COLLECTION: &str = "jobs";
pub const ATTEMPTS: &str = "job_attempts";

/// The queue's collections, as seen by one instance.
#[derive(Clone)]
pub struct JobStore {
    pub(crate) jobs: Collection<Job>,
    pub(crate) attempts: Collection<Attempt>,
    /// `job_keys`: the unique keys held by live jobs.
    keys: UniqueKeys,
    instance: String,
    pub(crate) max_attempts: i32,
    /// The only types this store's claims take (an instance's handlers,
    /// see [`crate::queue::types`]); `None`: any type (tools and tests).
    handled: Option<Arc<BTreeSet<String>>>,
}

/// Now + `duration`.
pub(crate) fn after(duration: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + duration.as_millis() as i64)
}

/// Now - `duration`.
pub(crate) fn before(duration: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - duration.as_millis() as i64)
}

impl JobStore {
    pub fn new(db: &Database, instance: impl Into<String>, max_attempts: i32) -> Self {
        let jobs = db.collection(COLLECTION);
        Self {
            keys: UniqueKeys::new(db, jobs.clone()),
            jobs,
            attempts: db.collection(ATTEMPTS),
            instance: instance.into(),
            max_attempts,
            handled: None,
        }
    }

    /// This store, listing and claiming only jobs of the types `handled`:
    /// a job of another type is never listed, and a claim of one by id
    /// takes nothing (it waits for an instance that handles it).
    pub fn handling(mut self, handled: BTreeSet<String>) -> Self {
        self.handled = Some(Arc::new(handled));
        self
    }

    /// Attempts a new job gets (`queue.max_attempts`).
    pub fn max_attempts(&self) -> i32 {
        self.max_attempts
    }

    /// This instance's id, as written to `lockedBy`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Indexes for the claim query (due pending jobs in rank order, expired
    /// leases), listings, history and pruning. (`job_keys` needs only its `_id`.)
    pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
        ensure_indexes(
            &db.collection(COLLECTION),
            vec![
                index(doc! { "status": 1, "runAt": 1, "createdAt": 1 }, false),
                index(doc! { "status": 1, "rank": 1 }, false),
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

    /// Insert `job` as it is; `false` if a job with its id exists already.
    pub(crate) async fn insert(&self, job: &Job) -> mongodb::error::Result<()> {
        self.jobs.insert_one(job).await?;
        Ok(())
    }

    /// Take `job`'s unique key for it (see [`crate::queue::unique`]); `grace`
    /// is `queue.hold`.
    pub(crate) async fn take_unique(
        &self,
        job: &Job,
        key: &str,
        grace: Duration,
    ) -> Result<Taken, QueueError> {
        self.keys.take(&job.kind, key, job.id, grace).await
    }

    /// Release `job`'s unique key, if it has one and still holds it. Call
    /// it once the job has ended for good (completed, failed for good,
    /// cancelled), *after* writing that end: a duplicate enqueued in
    /// between then sees the ended job and waits for the release. A release
    /// lost to a crash is taken over by the next duplicate after `queue.hold`.
    pub async fn release_unique(&self, job: &Job) -> mongodb::error::Result<()> {
        match &job.unique_key {
            Some(key) => self.release_key(job.id, &job.kind, key).await,
            None => Ok(()),
        }
    }

    /// [`release_unique`](Self::release_unique) for the job `id` of type
    /// `kind` holding `key`.
    pub async fn release_key(
        &self,
        id: ObjectId,
        kind: &str,
        key: &str,
    ) -> mongodb::error::Result<()> {
        self.keys.release(kind, key, id).await
    }

    /// Insert a pending job that no instance may claim for `hold` (its
    /// `runAt` is that far ahead) unless [`release`](Self::release)d first.
    pub async fn enqueue_held(
        &self,
        kind: &str,
        payload: Document,
        hold: Duration,
    ) -> mongodb::error::Result<ObjectId> {
        let mut job = Job::new(kind, payload, self.max_attempts);
        job.run_at = after(hold);
        self.jobs.insert_one(&job).await?;
        Ok(job.id)
    }

    /// Make a held job due now: one update, guarded so that it only touches
    /// a job still pending, never attempted and not yet due (a job that ran
    /// meanwhile, or one due already, is left as it is). `false`: nothing
    /// was held under `id`.
    pub async fn release(&self, id: ObjectId) -> mongodb::error::Result<bool> {
        let now = DateTime::now();
        let released = self
            .jobs
            .update_one(
                doc! { "_id": id, "status": "pending", "attempts": 0, "runAt": { "$gt": now } },
                doc! { "$set": { "runAt": now, "updatedAt": now } },
            )
            .await?;
        Ok(released.matched_count == 1)
    }

    /// Delete a job that should never run (its producer gave up on it).
    pub async fn delete(&self, id: ObjectId) -> mongodb::error::Result<()> {
        self.jobs.delete_one(doc! { "_id": id }).await?;
        Ok(())
    }

    /// Up to `limit` claimable jobs: those whose lease expired, oldest first,
    /// then pending ones that are due, in rank order (priority with aging,
    /// see [`crate::queue::priority`]; jobs without a rank, from before
    /// ranks, sort first). A read only; [`claim`](Self::claim) takes them
    /// one by one.
    ///
    /// Why not one `findOneAndUpdate` over the whole queue: the query
    /// `{$or: [pending and due, processing and expired]}` sorted by age is
    /// cheap on MongoDB (indexes) but FerretDB v1 evaluates it in memory over
    /// every pending document, per claim. Listing a batch once and claiming
    /// each by `_id` (an equality FerretDB pushes down to PostgreSQL) keeps
    /// claims fast on both.
    ///
    /// Only jobs of a type this store handles ([`handling`](Self::handling))
    /// are listed; jobs of a type in `paused` are left out (the caller lists
    /// nothing while the whole queue is paused).
    pub async fn candidates(
        &self,
        limit: i64,
        paused: &Pauses,
    ) -> mongodb::error::Result<Vec<Candidate>> {
        let now = DateTime::now();
        let projection = doc! { "_id": 1, "status": 1, "attempts": 1, "rank": 1 };
        let mut expired = doc! { "status": "processing", "lockedUntil": { "$lt": now } };
        let mut due = doc! { "status": "pending", "runAt": { "$lte": now } };
        let handled = self.handled.as_deref();
        paused.restrict(handled, &mut expired);
        paused.restrict(handled, &mut due);
        let mut found: Vec<Candidate> = self
            .jobs
            .clone_with_type::<Candidate>()
            .find(expired)
            .projection(projection.clone())
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        let pending: Vec<Candidate> = self
            .jobs
            .clone_with_type::<Candidate>()
            .find(due)
            .projection(projection)
            .sort(doc! { "rank": 1, "_id": 1 })
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
    ///    status and attempt count, still due or still expired, of a type
    ///    this store handles and not in `paused`): `processing`, the lease,
    ///    `attempts + 1`. If it is not, drop the reservation.
    pub async fn claim(
        &self,
        candidate: &Candidate,
        lease: Duration,
        executor: &str,
        paused: &Pauses,
    ) -> mongodb::error::Result<Option<Job>> {
        let attempt = self.next_attempt(candidate, executor);
        if !self.reserve(&attempt, candidate, lease).await? {
            return Ok(None);
        }
        let claimed = self.take(candidate, lease, paused).await?;
        match &claimed {
            // The job moved on since it was listed: give the attempt back.
            None => self.unreserve(&attempt).await?,
            Some(job) if candidate.status == JobStatus::Processing => {
                self.close_abandoned_attempt(job.id, candidate.attempts)
                    .await;
            }
            Some(_) => {}
        }
        Ok(claimed)
    }

    /// The record of the attempt after the candidate's last, run by `executor`.
    fn next_attempt(&self, candidate: &Candidate, executor: &str) -> Attempt {
        let number = candidate.attempts + 1;
        Attempt {
            id: format!("{}:{number}", candidate.id),
            job_id: candidate.id,
            attempt: number,
            instance: self.instance.clone(),
            executor: executor.into(),
            started_at: DateTime::now(),
            finished_at: None,
            outcome: Outcome::Running,
            error: None,
        }
    }

    /// Step 2 of a claim: the job, `processing` under a fresh lease, if it
    /// is still as `candidate` saw it (still due, or its lease still expired).
    async fn take(
        &self,
        candidate: &Candidate,
        lease: Duration,
        paused: &Pauses,
    ) -> mongodb::error::Result<Option<Job>> {
        let now = DateTime::now();
        let mut filter = match candidate.status {
            JobStatus::Processing => doc! {
                "_id": candidate.id, "status": "processing", "attempts": candidate.attempts,
                "lockedUntil": { "$lt": now },
            },
            _ => doc! {
                "_id": candidate.id, "status": "pending", "attempts": candidate.attempts,
                "runAt": { "$lte": now },
            },
        };
        paused.restrict(self.handled.as_deref(), &mut filter);
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
        self.jobs
            .find_one_and_update(filter, update)
            .with_options(options)
            .await
    }

    /// Delete this claimer's reservation of `attempt` (and no later one).
    async fn unreserve(&self, attempt: &Attempt) -> mongodb::error::Result<()> {
        self.attempts
            .delete_one(doc! { "_id": &attempt.id, "instance": &self.instance, "startedAt": attempt.started_at })
            .await?;
        Ok(())
    }

    /// A job reclaimed after its lease expired: its previous attempt's runner
    /// died or lost touch (SIGKILL, a partition) and never wrote an outcome.
    /// Record it as `crashed`, so the history does not say `running` forever.
    /// Only a record still `running` is touched: a runner that wrote its
    /// outcome but not the job's keeps the outcome it wrote. Best effort: the
    /// claim stands even if this write fails.
    pub(crate) async fn close_abandoned_attempt(&self, id: ObjectId, attempt: i32) {
        let error = format!("lease expired; reclaimed by {}", self.instance);
        let closed = self
            .attempts
            .update_one(
                doc! { "_id": format!("{id}:{attempt}"), "outcome": Outcome::Running.as_str() },
                doc! { "$set": {
                    "finishedAt": DateTime::now(), "outcome": Outcome::Crashed.as_str(), "error": &error,
                } },
            )
            .await;
        if let Err(err) = closed {
            tracing::warn!(target: "worker", job = %id, attempt, error = %err, "could not mark the abandoned attempt crashed");
        }
    }

    /// Step 1 of a claim: insert the attempt record; `false` if another
    /// claimer holds it.
    ///
    /// A claimer that died between reserving and claiming leaves a record
    /// that would block the job forever. So when the record exists but was
    /// abandoned ([`is_abandoned`](Self::is_abandoned)), delete it (guarded
    /// by its start time, so only one claimer does) and try again, once.
    async fn reserve(
        &self,
        attempt: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> mongodb::error::Result<bool> {
        if self.insert_attempt(attempt).await? {
            return Ok(true);
        }
        let Some(existing) = self.attempts.find_one(doc! { "_id": &attempt.id }).await? else {
            return Ok(false);
        };
        if existing.outcome == Outcome::Cancelled {
            // An operator cancelled the job: the record is its marker (see
            // `crate::queue::cancel`). Make sure the job reads so.
            self.settle_cancelled(candidate).await?;
            return Ok(false);
        }
        if !self.is_abandoned(&existing, candidate, lease).await? {
            return Ok(false);
        }
        tracing::warn!(target: "worker", job = %candidate.id, attempt = attempt.attempt, "removing a reservation its claimer abandoned");
        self.attempts
            .delete_one(doc! { "_id": &attempt.id, "startedAt": existing.started_at })
            .await?;
        self.insert_attempt(attempt).await
    }

    /// Insert `attempt`'s record; `false` if it exists already.
    pub(crate) async fn insert_attempt(&self, attempt: &Attempt) -> mongodb::error::Result<bool> {
        match self.attempts.insert_one(attempt).await {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Whether `existing`, a reservation of the attempt `candidate` is
    /// after, was abandoned: older than a lease, still `running`, and the job
    /// still has the attempt count it had before that reservation (so its
    /// claimer never took the job).
    async fn is_abandoned(
        &self,
        existing: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> mongodb::error::Result<bool> {
        let stale_before = DateTime::now().timestamp_millis() - lease.as_millis() as i64;
        if existing.outcome != Outcome::Running
            || existing.started_at.timestamp_millis() > stale_before
        {
            return Ok(false);
        }
        let job = self.jobs.find_one(doc! { "_id": candidate.id }).await?;
        Ok(job.is_some_and(|job| job.attempts == candidate.attempts))
    }

    /// Make every job `instance` holds (`processing`, `lockedBy: instance`)
    /// claimable now: its lease ends now, so the expired-lease reclaim path
    /// (fenced by the attempt record) takes it. For an instance the fleet
    /// found dead ([`crate::queue::QueueHandle::release_instance`]). Returns
    /// how many jobs it released.
    pub async fn release_instance(&self, instance: &str) -> mongodb::error::Result<u64> {
        let expired = before(Duration::from_millis(1));
        let released = self
            .jobs
            .update_many(
                doc! { "status": "processing", "lockedBy": instance, "lockedUntil": { "$gt": expired } },
                doc! { "$set": { "lockedUntil": expired, "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(released.modified_count)
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

    /// Record how attempt `attempt` of job `id` ended.
    pub(crate) async fn finish_attempt(
        &self,
        id: ObjectId,
        attempt: i32,
        outcome: Outcome,
        error: Option<&str>,
    ) -> mongodb::error::Result<()> {
        self.attempts
            .update_one(
                doc! { "_id": format!("{id}:{attempt}") },
                doc! { "$set": {
                    "finishedAt": DateTime::now(), "outcome": outcome.as_str(), "error": error,
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

    /// Delete completed (and cancelled) jobs and finished attempt records
    /// older than `retention`. (FerretDB has no TTL indexes, so this is a
    /// periodic delete: the `queue.prune` job, see [`crate::queue::scheduler`].)
    pub async fn prune(&self, retention: Duration) -> mongodb::error::Result<u64> {
        let cutoff = before(retention);
        let jobs = self
            .jobs
            .delete_many(doc! { "$or": [
                { "status": "completed", "completedAt": { "$lt": cutoff } },
                { "status": "cancelled", "cancelledAt": { "$lt": cutoff } },
            ] })
            .await?;
        self.attempts
            .delete_many(doc! { "finishedAt": { "$lt": cutoff } })
            .await?;
        Ok(jobs.deleted_count)
    }

    /// A page of jobs, newest first, filtered as `query` says.
    pub async fn list(&self, query: &JobQuery) -> mongodb::error::Result<JobPage> {
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
            .filter_map(|d| readable::<Job>(COLLECTION, d))
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
        let job = readable::<Job>(COLLECTION, job).ok_or(QueueError::Unreadable(id.into()))?;
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
    pub async fn counts(&self) -> mongodb::error::Result<StatusCounts> {
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
    pub async fn stats(&self) -> mongodb::error::Result<QueueStats> {
        let mut stats = self.grouped_counts().await?;
        stats.oldest_pending_age_seconds = self.oldest_pending_age().await?;
        stats.completed_last_minute = self.completed_since(Duration::from_secs(60)).await?;
        Ok(stats)
    }

    /// Counts by status, in all and by type and priority, from one
    /// `aggregate` grouping by all three.
    async fn grouped_counts(&self) -> mongodb::error::Result<QueueStats> {
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
        Ok(stats)
    }

    /// Seconds since the oldest pending job was enqueued; `None` if none is.
    async fn oldest_pending_age(&self) -> mongodb::error::Result<Option<f64>> {
        let oldest = self
            .jobs
            .find_one(doc! { "status": "pending" })
            .sort(doc! { "createdAt": 1 })
            .await?;
        Ok(oldest.map(|job| {
            (DateTime::now().timestamp_millis() - job.created_at.timestamp_millis()) as f64 / 1000.0
        }))
    }

    /// Jobs completed within the last `window`.
    async fn completed_since(&self, window: Duration) -> mongodb::error::Result<u64> {
        let since = before(window);
        self.jobs
            .count_documents(doc! { "status": "completed", "completedAt": { "$gte": since } })
            .await
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

//! Claiming: listing the candidates, and the fenced claim of one.
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
use mongodb::bson::{doc, oid::ObjectId};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};

use super::tokens::Gate;
use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Candidate, Job, JobStatus, Outcome};
use crate::queue::pause::Pauses;
use crate::store::is_duplicate_key;

/// A reservation still `running` this many leases after it was made, whose
/// job never moved, was abandoned by its claimer (see
/// [`JobStore::take_reserved`] for why more than one).
pub const ABANDONED_AFTER: u32 = 2;

impl JobStore {
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
    ) -> Result<Vec<Candidate>, QueueError> {
        let now = self.clock.now();
        let mut projection = doc! { "_id": 1, "status": 1, "attempts": 1, "rank": 1, "type": 1 };
        let mut expired = doc! { "status": "processing", "lockedUntil": { "$lt": now } };
        let mut due = doc! { "status": "pending", "runAt": { "$lte": now } };
        let handled = self.handled.as_deref();
        paused.restrict(handled, &mut expired);
        paused.restrict(handled, &mut due);
        // Groups at their concurrency limit are left out, so that jobs
        // behind them in line are listed (and claimed) meanwhile.
        let full = self.full_groups().await?;
        if !full.is_empty() {
            expired.insert("$nor", full.clone());
            due.insert("$nor", full);
        }
        for field in self.partition_fields() {
            projection.insert(format!("payload.{field}"), 1);
        }
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
    ///
    /// A job of a type with a concurrency limit is claimed only with a
    /// token of its group, taken first ([`crate::queue::limit`]).
    pub async fn claim(
        &self,
        candidate: &Candidate,
        lease: Duration,
        executor: &str,
        paused: &Pauses,
    ) -> Result<Option<Job>, QueueError> {
        let gate = self.gates(&[candidate], lease).await?.remove(0);
        let Gate::Go { token, .. } = &gate else {
            return Ok(None);
        };
        match self.claim_open(candidate, lease, executor, paused).await {
            Ok(Some(mut job)) => {
                job.token = token.clone();
                Ok(Some(job))
            }
            other => {
                self.give_back_unused(gate.unused(candidate.id)).await;
                other
            }
        }
    }

    /// [`claim`](Self::claim) once the limits let the job run.
    async fn claim_open(
        &self,
        candidate: &Candidate,
        lease: Duration,
        executor: &str,
        paused: &Pauses,
    ) -> Result<Option<Job>, QueueError> {
        let attempt = self.next_attempt(candidate, executor);
        if !self.reserve(&attempt, candidate, lease).await? {
            return Ok(None);
        }
        self.take_reserved(candidate, &attempt, lease, paused).await
    }

    /// Step 2 for `attempt`, whose record this claimer inserted: take the
    /// job if it is still as listed; if it is not, or if the reservation is
    /// older than `lease`, give the attempt back instead.
    ///
    /// Why the age limit: a reservation older than [`ABANDONED_AFTER`]
    /// leases whose job never moved counts as abandoned, and another
    /// claimer deletes it and reserves the attempt anew
    /// ([`reserve_taken`](Self::reserve_taken)). Were this claimer to take
    /// the job after that, two claimers would each hold attempt `n` (on
    /// FerretDB both takes can pass their filter). A batch takes its jobs a
    /// few at a time, so on a slow store its last take may come late: it
    /// never starts past one lease, which leaves a whole lease for it to
    /// land before anyone may call the reservation abandoned.
    pub(super) async fn take_reserved(
        &self,
        candidate: &Candidate,
        attempt: &Attempt,
        lease: Duration,
        paused: &Pauses,
    ) -> Result<Option<Job>, QueueError> {
        let age = self.clock.now().timestamp_millis() - attempt.started_at.timestamp_millis();
        if age > lease.as_millis() as i64 {
            tracing::warn!(target: "worker", job = %candidate.id, attempt = attempt.attempt, age_ms = age, "a reservation too old to take; giving it back");
            self.unreserve(attempt).await?;
            return Ok(None);
        }
        let claimed = self.take(candidate, lease, paused).await?;
        match &claimed {
            // The job moved on since it was listed: give the attempt back.
            None => self.unreserve(attempt).await?,
            Some(job) if candidate.status == JobStatus::Processing => {
                self.close_abandoned_attempt(job.id, candidate.attempts)
                    .await;
            }
            Some(_) => {}
        }
        Ok(claimed)
    }

    /// The record of the attempt after the candidate's last, run by `executor`.
    pub(super) fn next_attempt(&self, candidate: &Candidate, executor: &str) -> Attempt {
        let number = candidate.attempts + 1;
        Attempt {
            id: format!("{}:{number}", candidate.id),
            job_id: candidate.id,
            attempt: number,
            instance: self.instance.clone(),
            executor: executor.into(),
            started_at: self.clock.now(),
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
    ) -> Result<Option<Job>, QueueError> {
        let now = self.clock.now();
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
                "lockedUntil": self.clock.after(lease),
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
            .map_err(Into::into)
    }

    /// Delete this claimer's reservation of `attempt` (and no later one).
    pub(super) async fn unreserve(&self, attempt: &Attempt) -> Result<(), QueueError> {
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
                    "finishedAt": self.clock.now(), "outcome": Outcome::Crashed.as_str(), "error": &error,
                } },
            )
            .await;
        if let Err(err) = closed {
            tracing::warn!(target: "worker", job = %id, attempt, error = %err, "could not mark the abandoned attempt crashed");
        }
    }

    /// Step 1 of a claim: insert the attempt record; `false` if another
    /// claimer holds it.
    async fn reserve(
        &self,
        attempt: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        if self.insert_attempt(attempt).await? {
            return Ok(true);
        }
        self.reserve_taken(attempt, candidate, lease).await
    }

    /// The record of `attempt` exists already: `true` if this claimer holds
    /// it after all.
    ///
    /// A claimer that died between reserving and claiming leaves a record
    /// that would block the job forever. So when the record exists but was
    /// abandoned ([`is_abandoned`](Self::is_abandoned)), delete it (guarded
    /// by its start time, so only one claimer does) and try again, once. A
    /// cancellation's marker settles the job `cancelled` (see
    /// [`crate::queue::cancel`]).
    pub(super) async fn reserve_taken(
        &self,
        attempt: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> Result<bool, QueueError> {
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
    pub(crate) async fn insert_attempt(&self, attempt: &Attempt) -> Result<bool, QueueError> {
        match self.attempts.insert_one(attempt).await {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether `existing`, a reservation of the attempt `candidate` is
    /// after, was abandoned: older than [`ABANDONED_AFTER`] leases, still `running`, and the job
    /// still has the attempt count it had before that reservation (so its
    /// claimer never took the job).
    async fn is_abandoned(
        &self,
        existing: &Attempt,
        candidate: &Candidate,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let stale_before =
            self.clock.now().timestamp_millis() - (lease * ABANDONED_AFTER).as_millis() as i64;
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
    pub async fn release_instance(&self, instance: &str) -> Result<u64, QueueError> {
        let expired = self.clock.before(Duration::from_millis(1));
        let released = self
            .jobs
            .update_many(
                doc! { "status": "processing", "lockedBy": instance, "lockedUntil": { "$gt": expired } },
                doc! { "$set": { "lockedUntil": expired, "updatedAt": self.clock.now() } },
            )
            .await?;
        Ok(released.modified_count)
    }
}

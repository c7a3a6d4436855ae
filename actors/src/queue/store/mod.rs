//! [`JobStore`] and its rooms: the one home of every query on the queue's
//! collections. No other module opens them (`tests/architecture.rs`).
//!
//! | room | collection | what |
//! |---|---|---|
//! | [`claim`] | `jobs`, `job_attempts` | listing candidates, the fenced claim, releasing a dead instance's jobs |
//! | [`batch`] | `jobs`, `job_attempts` | the poller's claim of a batch: one insert of its reservations, then the fenced takes |
//! | [`lot`] | `jobs` | a batch's reserved jobs taken together: one `updateMany` per shape, one read back |
//! | [`finish`] | `jobs`, `job_attempts` | lease renewal, completion, failure |
//! | [`grouped`] | (any) | fenced writes by `_id`, alike ones grouped into one statement |
//! | [`cancel`] | `jobs`, `job_attempts` | the cancellation marker and its settlement |
//! | [`ops`] | `jobs`, `job_attempts` | what operators read and do: list, get, retry, counts, stats |
//! | [`unique`] | `job_keys` | unique keys |
//! | [`slots`] | `queue_slots` | the periodic jobs' slots |
//! | [`pauses`] | `queue_pauses` | what is paused |
//! | [`bulk`] | `jobs`, `job_attempts` | what bulk operations list and delete |
//! | [`flows`] | `jobs` | dependencies' states, waiting jobs, their release |
//! | [`prune`] | all but `job_keys` | deleting old history |
//! | [`adopt`] | `jobs`, `job_attempts` | what the NestJS adoption migration reads and writes |
//!
//! This file: the store itself, its indexes and the plain writes of a job
//! (enqueue, hold, release, delete). The types are in [`crate::queue::job`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use mongodb::{Collection, Database};

use crate::queue::clock::Clock;
use crate::queue::config::QueueConfig;
use crate::queue::dependency::FlowsSeen;
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Job};
use crate::queue::limit::{LimitBook, Limits};
use crate::store::{ensure_indexes, index, StoreError};

pub mod adopt;
pub mod batch;
pub mod bulk;
pub mod cancel;
pub mod claim;
pub mod finish;
pub mod flows;
mod grouped;
pub mod lot;
pub mod ops;
pub mod pauses;
pub mod prune;
pub mod slots;
pub mod tokens;
pub mod unique;

pub use pauses::PauseStore;
pub use slots::SlotStore;
pub use tokens::LimitStore;

/// The jobs.
pub const JOBS: &str = "jobs";
/// Each job's attempts (and cancellation markers): its history.
pub const ATTEMPTS: &str = "job_attempts";
/// The unique keys held by live jobs.
pub const KEYS: &str = "job_keys";
/// The periodic jobs' fired slots.
pub const SLOTS: &str = "queue_slots";
/// What is paused.
pub const PAUSES: &str = "queue_pauses";

/// The queue's collections, as seen by one instance.
#[derive(Clone)]
pub struct JobStore {
    jobs: Collection<Job>,
    attempts: Collection<Attempt>,
    /// `job_keys`: the unique keys held by live jobs.
    keys: unique::UniqueKeys,
    instance: String,
    max_attempts: i32,
    /// The only types this store's claims take (an instance's handlers,
    /// see [`crate::queue::types`]); `None`: any type (tools and tests).
    handled: Option<Arc<BTreeSet<String>>>,
    /// The queue's "now": every time this store writes or compares.
    clock: Clock,
    /// The fleet-wide concurrency limits in force ([`crate::queue::limit`]).
    limits: LimitBook,
    /// Where they and their tokens are stored.
    limit_store: LimitStore,
    /// Whether this instance knows of waiting jobs ([`crate::queue::flow`]).
    flows_seen: FlowsSeen,
    /// A batch with at least this many reserved jobs is taken as one lot
    /// ([`lot`]; `queue.lot_min`); 0: every job on its own.
    lot_min: usize,
}

impl JobStore {
    pub fn new(db: &Database, instance: impl Into<String>, max_attempts: i32) -> Self {
        let jobs = db.collection(JOBS);
        Self {
            keys: unique::UniqueKeys::new(db, jobs.clone()),
            jobs,
            attempts: db.collection(ATTEMPTS),
            instance: instance.into(),
            max_attempts,
            handled: None,
            clock: Clock::system(),
            limits: LimitBook::default(),
            limit_store: LimitStore::new(db),
            flows_seen: FlowsSeen::default(),
            lot_min: 0,
        }
    }

    /// Whether this instance knows of waiting jobs (the flows' fast path
    /// runs only then).
    pub fn flows_seen(&self) -> &FlowsSeen {
        &self.flows_seen
    }

    /// This store as `config` says: its clock, limits and
    /// [`lot_min`](Self::with_lot_min).
    pub fn configured(self, config: &QueueConfig) -> Self {
        (self.with_clock(config.clock.clone()))
            .with_limits(config.limits.clone())
            .with_lot_min(config.lot_min)
    }

    /// This store, taking a batch of at least `lot_min` reserved jobs as
    /// one lot ([`lot`]; 0: never, the default).
    pub fn with_lot_min(mut self, lot_min: usize) -> Self {
        self.lot_min = lot_min;
        self
    }

    /// This store, applying the configured `limits` (and those operators
    /// store, as it reads them).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = LimitBook::configured(limits);
        self
    }

    /// The limits in force, as this instance last read them.
    pub fn limits(&self) -> &LimitBook {
        &self.limits
    }

    /// This store, reading "now" from `clock` (a test's manual clock; see
    /// [`crate::queue::clock`]).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.keys.clock = clock.clone();
        self.clock = clock;
        self
    }

    /// The queue's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
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
    pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
        ensure_indexes(
            &db.collection(JOBS),
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
        .map_err(StoreError::from)
    }

    /// Insert a pending job; returns its id once the write is acknowledged.
    pub async fn enqueue(&self, kind: &str, payload: Document) -> Result<ObjectId, QueueError> {
        let job = Job::new_at(kind, payload, self.max_attempts, self.clock.now());
        self.jobs.insert_one(&job).await?;
        Ok(job.id)
    }

    /// Insert `job` as it is; `false` if a job with its id exists already.
    pub(crate) async fn insert(&self, job: &Job) -> Result<(), QueueError> {
        self.jobs.insert_one(job).await?;
        Ok(())
    }

    /// Insert a pending job that no instance may claim for `hold` (its
    /// `runAt` is that far ahead) unless [`release`](Self::release)d first.
    pub async fn enqueue_held(
        &self,
        kind: &str,
        payload: Document,
        hold: Duration,
    ) -> Result<ObjectId, QueueError> {
        let mut job = Job::new_at(kind, payload, self.max_attempts, self.clock.now());
        job.run_at = self.clock.after(hold);
        self.jobs.insert_one(&job).await?;
        Ok(job.id)
    }

    /// Make a held job due now: one update, guarded so that it only touches
    /// a job still pending, never attempted and not yet due (a job that ran
    /// meanwhile, or one due already, is left as it is). `false`: nothing
    /// was held under `id`.
    pub async fn release(&self, id: ObjectId) -> Result<bool, QueueError> {
        let now = self.clock.now();
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
    pub async fn delete(&self, id: ObjectId) -> Result<(), QueueError> {
        self.jobs.delete_one(doc! { "_id": id }).await?;
        Ok(())
    }
}

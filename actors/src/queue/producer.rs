//! [`JobQueue`]: how other capabilities, and applications embedding Troupe,
//! put jobs in the queue.
//!
//! # Enqueueing a job
//! [`JobQueue::enqueue_spec`] takes a [`JobSpec`]: a registered type, a
//! payload, and optionally when it is due, its priority and a unique key.
//! It writes the job (durably, before it returns) and has this instance
//! claim it at once if it is due.
//!
//! ```ignore
//! use std::time::Duration;
//! use mongodb::bson::doc;
//! use troupe_actors::queue::{Enqueued, JobSpec};
//!
//! let jobs = system.handles().jobs.clone();
//! let spec = JobSpec::new("report.build", doc! { "account": "a-17" })
//!     .delay(Duration::from_secs(90)) // or .run_at(chrono::Utc::now() + ..)
//!     .priority(10)                   // -100..=100; higher first
//!     .unique_key("report:a-17")      // one pending/processing job per key
//!     .max_attempts(3)                // 1..=100, instead of queue.max_attempts
//!     .timeout(Duration::from_secs(60)); // 10ms..=24h, instead of queue.job_timeout
//! match jobs.enqueue_spec(spec).await? {
//!     Enqueued::Created(id) => tracing::info!(%id, "report scheduled"),
//!     Enqueued::Existing(id) => tracing::info!(%id, "a report is already on its way"),
//! }
//! ```
//! A type no live instance handles (see [`crate::queue::types`]), a
//! priority out of range, a bad unique key, a payload over
//! `queue.max_payload` or one a store cannot keep is refused
//! ([`QueueError::Refused`]).
//!
//! # Producers with a precondition
//! A producer writes its job, then — once whatever the job depends on is
//! written too — tells this instance's poller with [`JobQueue::claim_soon`],
//! which claims the job by id without waiting for a tick or listing the queue.
//!
//! A job written *ahead* of its precondition (the welcome job is written
//! before its user, so that no crash can leave a user without one) is
//! enqueued held ([`JobQueue::enqueue_held`]): due only `queue.hold` from
//! now, so no instance's listing finds it while the precondition is still
//! being written. Once it is, the producer [`release`](JobQueue::release)s
//! it (due now) and has it claimed. A producer that dies in between leaves
//! the job held until the hold ends; then it runs like any other (and fails
//! after its retries if its precondition never came).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mongodb::bson::{oid::ObjectId, DateTime, Document};

use crate::events::Events;
use crate::queue::config::QueueConfig;
use crate::queue::dependency::DependencyPolicy;
use crate::queue::error::{refusal_code, QueueError};
use crate::queue::flow::{self, Flows};
use crate::queue::job::{Job, JobId, JobStatus};
use crate::queue::poller::PollerMsg;
use crate::queue::priority;
use crate::queue::spec::{JobSpec, SpecError};
use crate::queue::store::unique::Taken;
use crate::queue::store::JobStore;
use crate::queue::types::JobTypes;
use crate::supervision::slot::ActorSlot;

/// What [`JobQueue::enqueue_spec`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job, with this id.
    Created(JobId),
    /// Nothing: this pending or processing job holds the unique key.
    Existing(JobId),
}

impl Enqueued {
    /// The id of the job created or found.
    pub fn id(self) -> JobId {
        match self {
            Self::Created(id) | Self::Existing(id) => id,
        }
    }
}

/// What an enqueue is checked against and ranked by.
struct Admission {
    /// This instance's job types and the fleet's.
    types: Arc<JobTypes>,
    /// `queue.max_payload`, in bytes as stored.
    max_payload: usize,
    /// `queue.priority_aging`.
    aging: Duration,
    /// `queue.hold`: also how old a unique key's ended holder must be to be stale.
    hold: Duration,
}

/// The job `spec` asks for at `now`, if it meets `rules`: due when the
/// spec says, ranked by its priority, with its own attempts and timeout
/// if it has them (else `max_attempts`, and the queue's timeout).
fn admit(
    spec: JobSpec,
    rules: &Admission,
    max_attempts: i32,
    now: SystemTime,
) -> Result<Job, QueueError> {
    if !rules.types.is_registered(&spec.kind) {
        return Err(SpecError::unknown_type(&spec.kind, &rules.types).into());
    }
    spec.check()?;
    let size = mongodb::bson::to_vec(&spec.payload).map_or(usize::MAX, |b| b.len());
    if size > rules.max_payload {
        let limit = rules.max_payload;
        return Err(SpecError::PayloadTooLarge { size, limit }.into());
    }
    let max_attempts = spec.max_attempts.unwrap_or(max_attempts);
    let mut job = Job::new(&spec.kind, Document::new(), max_attempts);
    job.timeout_ms = (spec.timeout).map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
    job.created_at = DateTime::from(now);
    job.updated_at = job.created_at;
    job.run_at = spec.due_at(now)?;
    job.rank = Some(priority::rank(
        job.run_at,
        job.created_at,
        spec.priority,
        rules.aging,
    ));
    (job.payload, job.priority, job.unique_key) = (spec.payload, spec.priority, spec.unique_key);
    job.depends_on = (spec.depends_on.iter()).map(|id| id.object_id()).collect();
    job.on_dependency_failure = spec.on_dependency_failure;
    if !job.depends_on.is_empty() {
        // Until its dependencies are read (see `JobQueue::enqueue_spec`).
        job.status = JobStatus::Waiting;
    }
    Ok(job)
}

#[derive(Clone)]
pub struct JobQueue {
    store: JobStore,
    poller: ActorSlot<PollerMsg>,
    admission: Arc<Admission>,
    /// Where a job failed by its dependency at enqueue is published.
    events: Events,
}

impl JobQueue {
    pub(crate) fn new(
        store: JobStore,
        poller: ActorSlot<PollerMsg>,
        config: &QueueConfig,
        (types, events): (Arc<JobTypes>, Events),
    ) -> Self {
        let admission = Admission {
            types,
            max_payload: config.max_payload,
            aging: config.priority_aging,
            hold: config.hold,
        };
        Self {
            store,
            poller,
            admission: Arc::new(admission),
            events,
        }
    }

    /// Enqueue `spec` (see the module doc): the job created, or the live
    /// job holding its unique key. A job due now is claimed by this
    /// instance at once if it runs the job's type; a later one, or one of a
    /// type only other instances run, by the first instance to list the
    /// queue after it is due (within `queue.poll_interval`).
    pub async fn enqueue_spec(&self, spec: JobSpec) -> Result<Enqueued, QueueError> {
        let mut job = self.job(spec)?;
        if !job.depends_on.is_empty() {
            job.status = self.first_status(&job).await?;
        }
        let enqueued = self.write(&job).await?;
        if job.status == JobStatus::Waiting {
            if enqueued == Enqueued::Created(job.id.into()) {
                self.settle_written(&job).await?;
            }
            return Ok(enqueued);
        }
        let here = self.admission.types.local().contains(&job.kind);
        // A job of a type only other instances run is theirs to list.
        let due = job.run_at <= self.store.clock().now();
        if enqueued == Enqueued::Created(job.id.into()) && due {
            let kind = job.kind.clone();
            match here {
                true => self.claim_ranked(job.id, job.rank.unwrap_or(job.created_at), kind),
                // The fleet hears of it through this instance's poller.
                false => drop(self.poller.cast(PollerMsg::DueElsewhere { kind })),
            }
        }
        Ok(enqueued)
    }

    /// A dependent's status as it is written: `pending` if every
    /// dependency completed already, else `waiting`. Refused if a
    /// dependency is no job.
    async fn first_status(&self, job: &Job) -> Result<JobStatus, QueueError> {
        let states = self.store.dependency_states(&job.depends_on).await?;
        let unknown: Vec<JobId> = (job.depends_on.iter())
            .filter(|id| !states.contains_key(id))
            .map(|id| JobId::from(*id))
            .collect();
        if !unknown.is_empty() {
            return Err(SpecError::UnknownDependencies { ids: unknown }.into());
        }
        let deps = job.depends_on.iter().map(|id| (*id, states.get(id)));
        Ok(match flow::verdict(DependencyPolicy::Hold, deps) {
            flow::Verdict::Release => JobStatus::Pending,
            _ => JobStatus::Waiting,
        })
    }

    /// `job` is written `waiting`: read its dependencies again (one may
    /// have ended since they were read, before this job could be found by
    /// its end's release), and settle it; a job released is claimed soon.
    async fn settle_written(&self, job: &Job) -> Result<(), QueueError> {
        self.store.flows_seen().set(true);
        let flows = Flows {
            store: &self.store,
            aging: self.admission.aging,
            events: &self.events,
        };
        let (settled, failed) = flows.settle(std::slice::from_ref(job)).await?;
        if settled.released > 0 {
            let _ = self.poller.cast(PollerMsg::Nudge);
        }
        drop(failed);
        Ok(())
    }

    /// The job `spec` asks for, if it meets the rules.
    fn job(&self, spec: JobSpec) -> Result<Job, QueueError> {
        let max_attempts = self.store.max_attempts();
        admit(
            spec,
            &self.admission,
            max_attempts,
            self.store.clock().system_time(),
        )
    }

    /// Write `job`: with a unique key, the key first, then the job (see
    /// [`crate::queue::unique`] for why this order).
    async fn write(&self, job: &Job) -> Result<Enqueued, QueueError> {
        let Some(key) = &job.unique_key else {
            self.insert(job).await?;
            return Ok(Enqueued::Created(job.id.into()));
        };
        if let Taken::HeldBy(holder) = self
            .store
            .take_unique(job, key, self.admission.hold)
            .await?
        {
            return Ok(Enqueued::Existing(holder.into()));
        }
        if let Err(err) = self.insert(job).await {
            // Give the key back; if that fails too, it names no job and is
            // taken over once `queue.hold` old.
            let _ = self.store.release_unique(job).await;
            return Err(err);
        }
        Ok(Enqueued::Created(job.id.into()))
    }

    /// Insert `job`; a write the store refuses for good is the producer's
    /// fault ([`SpecError::PayloadRefused`]), not an outage.
    async fn insert(&self, job: &Job) -> Result<(), QueueError> {
        self.store.insert(job).await.map_err(|err| match &err {
            QueueError::Store(store) => match refusal_code(store) {
                Some(code) => SpecError::PayloadRefused { code }.into(),
                None => err,
            },
            _ => err,
        })
    }

    /// Insert a pending job of type `kind`, due now, priority 0: the
    /// service's own producers, whose types are registered by construction.
    /// Like [`enqueue_spec`](Self::enqueue_spec) without the type check and
    /// without the claim (the producer calls [`claim_soon`](Self::claim_soon)
    /// once the job's precondition holds); its id once the write is
    /// acknowledged.
    pub async fn enqueue(&self, kind: &str, payload: Document) -> Result<ObjectId, QueueError> {
        self.store.enqueue(kind, payload).await
    }

    /// Insert a pending job of type `kind` that no instance claims before
    /// [`release`](Self::release) or the end of `queue.hold`; its id once
    /// the write is acknowledged.
    pub async fn enqueue_held(
        &self,
        kind: &str,
        payload: Document,
    ) -> Result<ObjectId, QueueError> {
        self.store
            .enqueue_held(kind, payload, self.admission.hold)
            .await
    }

    /// Make the held job `id` due now (its precondition holds). `false`: it
    /// was not held any more (due already, or gone).
    pub async fn release(&self, id: ObjectId) -> Result<bool, QueueError> {
        self.store.release(id).await
    }

    /// Delete a job that must never run (its producer gave up on it).
    pub async fn withdraw(&self, id: ObjectId) -> Result<(), QueueError> {
        self.store.delete(id).await
    }

    /// Ask this instance's poller to claim `id`, of type `kind` (priority
    /// 0, just enqueued), now; if it cannot start it at once, it announces
    /// it to the fleet. If the poller is down the job waits for the next
    /// listing (any instance's).
    pub fn claim_soon(&self, id: ObjectId, kind: &str) {
        self.claim_ranked(id, self.store.clock().now(), kind.to_owned());
    }

    /// Ask this instance's poller to claim `id`, ranked `rank`, in its place in line.
    fn claim_ranked(&self, id: ObjectId, rank: DateTime, kind: String) {
        let _ = self.poller.cast(PollerMsg::Enqueued { id, rank, kind });
    }
}

#[cfg(test)]
#[path = "producer_tests.rs"]
mod tests;

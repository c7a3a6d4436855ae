//! The queue's domain types: a job and its attempts as stored, the id
//! clients name a job by, what a listing asks for and what it returns.
//!
//! A job is a document in `jobs`; producers insert it `pending`, the
//! QueuePollerActor claims it, a JobExecutor runs it. Each attempt also gets
//! a document in `job_attempts`, whose `_id` is `"<jobId>:<attempt>"` (see
//! [`crate::queue::store`] for why).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use mongodb::bson::{oid::ObjectId, DateTime, Document};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::queue::controls::{Controls, Progress};
use crate::queue::dependency::DependencyPolicy;

/// A job's id: a MongoDB ObjectId, written as 24 hexadecimal digits.
/// Parsed once, where it enters (a path, a cursor); BSON stays inside the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(ObjectId);

/// Text that is not 24 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job id is 24 hexadecimal digits")]
pub struct MalformedJobId;

impl JobId {
    /// The id as stored.
    pub fn object_id(self) -> ObjectId {
        self.0
    }
}

impl FromStr for JobId {
    type Err = MalformedJobId;

    /// 24 hexadecimal digits, of either case.
    fn from_str(text: &str) -> Result<Self, MalformedJobId> {
        ObjectId::parse_str(text)
            .map(Self)
            .map_err(|_| MalformedJobId)
    }
}

impl fmt::Display for JobId {
    /// Lowercase hex, as the API shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl From<ObjectId> for JobId {
    fn from(id: ObjectId) -> Self {
        Self(id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Held until every job it depends on has completed
    /// ([`crate::queue::flow`]): never listed, never claimed.
    Waiting,
    Pending,
    Processing,
    Completed,
    Failed,
    /// Cancelled by an operator (`POST /jobs/{id}/cancel`): never run
    /// again, never retried (see [`crate::queue::cancel`]).
    Cancelled,
}

impl JobStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Pending,
            Self::Processing,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A job document, field names as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The attempts it was given at enqueue (its own `maxAttempts`, or the
    /// queue's then): what a retry of the failed job grants anew. Absent on
    /// jobs written before it was stored (a retry grants the queue's
    /// `max_attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_budget: Option<i32>,
    pub run_at: DateTime,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime>,
    pub last_error: Option<String>,
    pub result: Option<Document>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub completed_at: Option<DateTime>,
    /// Higher runs first ([`crate::queue::priority`]); jobs written before
    /// priorities existed read as 0.
    #[serde(default)]
    pub priority: i32,
    /// Due jobs are claimed in ascending rank ([`crate::queue::priority::rank`]);
    /// absent on jobs written before priorities existed (they sort first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<DateTime>,
    /// At most one pending or processing job of its type holds it
    /// ([`crate::queue::unique`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// An operator asked the running job to stop (it ends `cancelled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime>,
    /// Fired by the executor running this attempt when the job is cancelled
    /// (not stored). See [`Job::cancelled`].
    #[serde(skip)]
    pub cancellation: CancellationToken,
    /// The concurrency-limit token this attempt holds, if its type is
    /// limited ([`crate::queue::limit`]; set by the claim, not stored).
    #[serde(skip)]
    pub token: Option<String>,
    /// The W3C `traceparent` of the span that enqueued the job (the
    /// request's, a handler's), so each attempt joins that trace
    /// ([`crate::trace`]); absent when the enqueuer was in no trace (cron
    /// jobs, jobs adopted or written before traces): their attempts start
    /// their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The longest one attempt may run, in milliseconds, if the producer
    /// set it ([`crate::queue::spec::JobSpec::timeout`]); absent: the
    /// queue's `job_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// Its handler's latest progress report ([`Job::progress`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The result as its JSON text, when no store could hold it as a
    /// document (see [`crate::queue::controls`]); then `result` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_json: Option<String>,
    /// What the running handler reports through (not stored).
    #[serde(skip)]
    pub controls: Controls,
    /// The jobs it runs after ([`crate::queue::flow`]): while one of
    /// them has not completed, it is `waiting`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ObjectId>,
    /// What a failed or cancelled dependency does to it (absent: fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyPolicy>,
}

impl Job {
    /// Resolves once this job is cancelled while it runs: a handler that
    /// can stop early selects on it. A handler that never looks is dropped
    /// at its next await point shortly after (see
    /// [`crate::queue::executor`]).
    ///
    /// ```ignore
    /// JobHandlers::new().with("report.build", |job| async move {
    ///     tokio::select! {
    ///         built = build(&job) => built,
    ///         () = job.cancelled() => Err(HandlerError::retry_later("cancelled")),
    ///     }
    /// })
    /// ```
    pub async fn cancelled(&self) {
        self.cancellation.cancelled().await
    }

    /// Whether this job was cancelled while it runs (a poll, for loops).
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// A clone of the job's cancellation token (to hand to sub-tasks).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancellation.clone()
    }

    /// Report progress: `percent` (capped at 100) and a short message (cut
    /// to 200 characters). Never waits, never fails: the latest report is
    /// written to the job (`progress`) and published as `JobProgress` at
    /// most once per `queue.progress_interval` (see
    /// [`crate::queue::controls`]).
    pub fn progress(&self, percent: u8, message: impl AsRef<str>) {
        self.controls.report(percent, message.as_ref());
    }

    /// The longest an attempt at this job may run: its own timeout, or
    /// `default` (the queue's).
    pub fn timeout(&self, default: Duration) -> Duration {
        (self.timeout_ms)
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(default, Duration::from_millis)
    }

    /// A new pending job, due now, priority 0, ranked by its creation.
    pub fn new(kind: &str, payload: Document, max_attempts: i32) -> Self {
        Self::new_at(kind, payload, max_attempts, DateTime::now())
    }

    /// A new pending job created at `now` (the queue's clock), due then,
    /// priority 0, ranked by its creation.
    pub fn new_at(kind: &str, payload: Document, max_attempts: i32, now: DateTime) -> Self {
        Self {
            id: ObjectId::new(),
            kind: kind.into(),
            payload,
            status: JobStatus::Pending,
            attempts: 0,
            max_attempts,
            attempt_budget: Some(max_attempts),
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            result: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            priority: 0,
            rank: Some(now),
            unique_key: None,
            cancel_requested: false,
            cancelled_at: None,
            cancellation: CancellationToken::new(),
            token: None,
            trace: crate::trace::current_traceparent(),
            timeout_ms: None,
            progress: None,
            result_json: None,
            controls: Controls::default(),
            depends_on: Vec::new(),
            on_dependency_failure: None,
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
    /// Its place in line among due jobs (absent on jobs from before ranks).
    #[serde(default)]
    pub rank: Option<DateTime>,
    /// Its type (`None`: not known to who made the candidate), for the
    /// concurrency limits ([`crate::queue::limit`]).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The payload fields the limits partition by, as listed (`None`: not
    /// listed).
    #[serde(default)]
    pub payload: Option<Document>,
}

impl Candidate {
    /// A job just enqueued, ranked `rank`: pending, never attempted.
    pub fn enqueued(id: ObjectId, rank: DateTime) -> Self {
        Self {
            id,
            status: JobStatus::Pending,
            attempts: 0,
            rank: Some(rank),
            kind: None,
            payload: None,
        }
    }

    /// This candidate, of type `kind`.
    pub fn of(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
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
    /// The handler snoozed the job ([`Job::snooze`]): pending again later,
    /// this attempt not counted against its `maxAttempts`.
    Snoozed,
    /// Cancelled by an operator. The record of the attempt after the job's
    /// last also carries it: the cancellation's marker (see
    /// [`crate::queue::cancel`]).
    Cancelled,
    /// The executor died mid-job and the job was released for retry, or its
    /// runner vanished and the job was reclaimed when its lease expired.
    Crashed,
}

impl Outcome {
    /// As stored and shown: `running`, `completed`, `failed`, `timed_out`,
    /// `snoozed`, `cancelled`, `crashed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Snoozed => "snoozed",
            Self::Cancelled => "cancelled",
            Self::Crashed => "crashed",
        }
    }
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
    /// Jobs held until their dependencies complete.
    pub waiting: u64,
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Seconds since the longest-waiting due pending job became due.
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: u64,
    /// Counts by status for each job type.
    pub by_type: BTreeMap<String, StatusCounts>,
    /// Counts by status for each priority (jobs from before priorities: 0).
    pub by_priority: BTreeMap<i32, StatusCounts>,
    /// Every type some live instance handles ([`crate::queue::types`]).
    pub registered_types: Vec<String>,
    /// The types of pending or processing jobs that no live instance
    /// handles: they wait for an instance that does.
    pub unhandled_types: Vec<String>,
}

impl QueueStats {
    /// Fill in [`registered_types`](Self::registered_types) and
    /// [`unhandled_types`](Self::unhandled_types) from `types`.
    pub(crate) fn with_types(mut self, types: &crate::queue::types::JobTypes) -> Self {
        let waiting = (self.by_type.iter())
            .filter(|(_, counts)| counts.waiting + counts.pending + counts.processing > 0)
            .map(|(kind, _)| kind.as_str());
        self.unhandled_types = types.unhandled(waiting);
        self.registered_types = types.registered();
        self
    }
}

/// Jobs by status, as one `aggregate` finds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub waiting: u64,
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    /// Count `n` jobs of `status`.
    pub fn set(&mut self, status: JobStatus, n: u64) {
        match status {
            JobStatus::Waiting => self.waiting = n,
            JobStatus::Pending => self.pending = n,
            JobStatus::Processing => self.processing = n,
            JobStatus::Completed => self.completed = n,
            JobStatus::Failed => self.failed = n,
            JobStatus::Cancelled => self.cancelled = n,
        }
    }

    /// Count `n` more jobs of `status`.
    pub fn add(&mut self, status: JobStatus, n: u64) {
        let now = self.get(status);
        self.set(status, now + n);
    }

    /// The count of `status`.
    pub fn get(&self, status: JobStatus) -> u64 {
        match status {
            JobStatus::Waiting => self.waiting,
            JobStatus::Pending => self.pending,
            JobStatus::Processing => self.processing,
            JobStatus::Completed => self.completed,
            JobStatus::Failed => self.failed,
            JobStatus::Cancelled => self.cancelled,
        }
    }
}

/// A page of jobs, newest first, as stored.
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
    pub cursor: Option<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_is_24_hex_digits_of_either_case_shown_lowercase() {
        for text in ["65f1c0ffee0000000000beef", "65F1C0FFEE0000000000BEEF"] {
            let id: JobId = text.parse().unwrap();
            assert_eq!(id.to_string(), "65f1c0ffee0000000000beef");
        }
    }

    #[test]
    fn anything_else_is_not_a_job_id() {
        for text in [
            "",
            "not-an-id",
            "65f1c0ffee0000000000bee",
            "65f1c0ffee0000000000beef0",
            "65f1c0ffee0000000000beeg",
            " 65f1c0ffee0000000000beef",
        ] {
            assert_eq!(text.parse::<JobId>(), Err(MalformedJobId), "{text:?}");
        }
    }

    #[test]
    fn outcomes_read_as_they_are_stored() {
        for outcome in [
            Outcome::Running,
            Outcome::Completed,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Snoozed,
            Outcome::Cancelled,
            Outcome::Crashed,
        ] {
            let stored = mongodb::bson::to_bson(&outcome).unwrap();
            assert_eq!(stored.as_str(), Some(outcome.as_str()));
        }
    }

    #[test]
    fn statuses_parse_back_from_their_names() {
        for status in [
            JobStatus::Waiting,
            JobStatus::Pending,
            JobStatus::Processing,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}

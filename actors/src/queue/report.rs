//! Jobs as the queue reports them to its clients (the HTTP layer): no BSON.
//! Ids are [`JobId`]s, payloads and results `serde_json` values, dates
//! RFC 3339 strings.
//!
//! The JSON is the API's, not MongoDB's Extended JSON: an ObjectId anywhere
//! in a payload is its 24 hex digits (not `{"$oid": …}`), a date its RFC 3339
//! text (not `{"$date": …}`), documents and arrays member by member; any
//! other value (numbers, strings, rarer types) is relaxed Extended JSON.

use mongodb::bson::{Bson, DateTime, Document};
use serde_json::Value;

use crate::queue::dependency::DependencyPolicy;
use crate::queue::job::{Attempt, Job, JobId, JobPage, JobStatus, Outcome};

/// A job, for its clients: the stored [`Job`] read through accessors that
/// speak no BSON. A job's fields live once, in [`Job`]; this is how every
/// client outside the store sees them (ids as [`JobId`], documents as the
/// API's JSON, dates as RFC 3339 text).
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport(Job);

impl JobReport {
    pub fn id(&self) -> JobId {
        self.0.id.into()
    }

    /// Its type: the handler that runs it.
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    pub fn payload(&self) -> Value {
        document_json(self.0.payload.clone())
    }

    pub fn status(&self) -> JobStatus {
        self.0.status
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> i32 {
        self.0.attempts
    }

    pub fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }

    /// When it is due.
    pub fn run_at(&self) -> String {
        rfc3339(self.0.run_at)
    }

    /// The instance holding it while it runs.
    pub fn locked_by(&self) -> Option<&str> {
        self.0.locked_by.as_deref()
    }

    /// When that hold (its lease) ends unless renewed.
    pub fn locked_until(&self) -> Option<String> {
        self.0.locked_until.map(rfc3339)
    }

    /// The trace its attempts join: the trace id (32 hex digits) of the
    /// `traceparent` stored when it was enqueued; `None` when it was
    /// enqueued outside any trace (its attempts start traces of their own).
    pub fn trace_id(&self) -> Option<String> {
        let traceparent = self.0.trace.as_deref()?;
        crate::trace::parse(traceparent).map(|context| context.trace_id().to_string())
    }

    /// The last failed attempt's error, with its causes.
    pub fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// What its handler returned, once it completed (stored as it is, or
    /// as its JSON text: see [`crate::queue::controls`]; the same JSON
    /// either way).
    pub fn result(&self) -> Option<Value> {
        if let Some(text) = &self.0.result_json {
            return serde_json::from_str(text).ok();
        }
        self.0.result.clone().map(document_json)
    }

    /// Its handler's latest progress report: percent, message, when.
    pub fn progress(&self) -> Option<(i32, Option<&str>, String)> {
        let progress = self.0.progress.as_ref()?;
        Some((
            progress.percent,
            progress.message.as_deref(),
            rfc3339(progress.at),
        ))
    }

    /// Its own attempt timeout, if it has one (else the queue's).
    pub fn timeout(&self) -> Option<std::time::Duration> {
        let ms = u64::try_from(self.0.timeout_ms?).ok()?;
        Some(std::time::Duration::from_millis(ms))
    }

    pub fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }

    pub fn updated_at(&self) -> String {
        rfc3339(self.0.updated_at)
    }

    pub fn completed_at(&self) -> Option<String> {
        self.0.completed_at.map(rfc3339)
    }

    /// Higher runs first (0 for jobs from before priorities).
    pub fn priority(&self) -> i32 {
        self.0.priority
    }

    pub fn unique_key(&self) -> Option<&str> {
        self.0.unique_key.as_deref()
    }

    /// Whether an operator asked the running job to stop.
    pub fn cancel_requested(&self) -> bool {
        self.0.cancel_requested
    }

    pub fn cancelled_at(&self) -> Option<String> {
        self.0.cancelled_at.map(rfc3339)
    }

    /// The jobs it runs after ([`crate::queue::flow`]).
    pub fn depends_on(&self) -> Vec<JobId> {
        self.0
            .depends_on
            .iter()
            .map(|id| JobId::from(*id))
            .collect()
    }

    /// What a failed or cancelled dependency does to it (`None`: it has
    /// no dependencies).
    pub fn on_dependency_failure(&self) -> Option<DependencyPolicy> {
        (!self.0.depends_on.is_empty()).then(|| self.0.on_dependency_failure.unwrap_or_default())
    }
}

/// One attempt at a job: who ran it, when, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub attempt: i32,
    pub instance: String,
    pub executor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// A job with every attempt at it, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobHistory {
    pub job: JobReport,
    pub attempts: Vec<AttemptReport>,
}

/// A page of a listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsPage {
    pub jobs: Vec<JobReport>,
    /// Pass as the query's `cursor` for the next (older) page; `None` on
    /// the last page.
    pub next_cursor: Option<JobId>,
}

impl From<Job> for JobReport {
    fn from(job: Job) -> Self {
        Self(job)
    }
}

impl From<Attempt> for AttemptReport {
    fn from(attempt: Attempt) -> Self {
        Self {
            attempt: attempt.attempt,
            instance: attempt.instance,
            executor: attempt.executor,
            started_at: rfc3339(attempt.started_at),
            finished_at: attempt.finished_at.map(rfc3339),
            outcome: attempt.outcome,
            error: attempt.error,
        }
    }
}

impl JobHistory {
    pub(crate) fn new(job: Job, attempts: Vec<Attempt>) -> Self {
        Self {
            job: job.into(),
            attempts: attempts.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<JobPage> for JobsPage {
    fn from(page: JobPage) -> Self {
        Self {
            jobs: page.jobs.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor.map(Into::into),
        }
    }
}

/// A date as RFC 3339 text; empty outside RFC 3339's years 0–9999.
fn rfc3339(at: DateTime) -> String {
    crate::rfc3339::format_bson(at).unwrap_or_default()
}

/// A document as the API's JSON object.
pub(crate) fn document_json(document: Document) -> Value {
    json(Bson::Document(document))
}

/// A BSON value as the API's JSON (see the module doc).
fn json(value: Bson) -> Value {
    match value {
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        Bson::DateTime(at) => match crate::rfc3339::format_bson(at) {
            Some(text) => Value::String(text),
            // Outside the years a time can be written in.
            None => Bson::DateTime(at).into_relaxed_extjson(),
        },
        Bson::Document(document) => Value::Object(
            document
                .into_iter()
                .map(|(key, value)| (key, json(value)))
                .collect(),
        ),
        Bson::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        other => other.into_relaxed_extjson(),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, oid::ObjectId};
    use serde_json::json;

    use super::*;

    #[test]
    fn object_ids_become_hex_strings_and_dates_rfc3339_at_any_depth() {
        let id = ObjectId::parse_str("65f1c0ffee0000000000beef").unwrap();
        let at = DateTime::from_millis(1_764_400_000_123);
        let payload = doc! {
            "userId": id,
            "at": at,
            "nested": { "ids": [id, { "when": at }] },
        };
        assert_eq!(
            document_json(payload),
            json!({
                "userId": "65f1c0ffee0000000000beef",
                "at": "2025-11-29T07:06:40.123Z",
                "nested": { "ids": ["65f1c0ffee0000000000beef", { "when": "2025-11-29T07:06:40.123Z" }] },
            })
        );
    }

    #[test]
    fn plain_values_keep_their_json_form() {
        let payload = doc! {
            "name": "N", "age": 30_i32, "big": 5_000_000_000_i64, "ratio": 0.5,
            "ok": true, "none": Bson::Null, "list": [1_i32, "two"],
        };
        assert_eq!(
            document_json(payload),
            json!({
                "name": "N", "age": 30, "big": 5_000_000_000_i64, "ratio": 0.5,
                "ok": true, "none": null, "list": [1, "two"],
            })
        );
    }

    #[test]
    fn dates_outside_rfc3339_fall_back_to_extended_json() {
        let far = DateTime::from_millis(i64::MAX);
        assert!(json(Bson::DateTime(far)).is_object());
        assert_eq!(rfc3339(far), "");
    }

    #[test]
    fn a_job_reports_its_id_as_hex_and_its_dates_as_rfc3339() {
        let mut job = Job::new("user.created", doc! { "n": 1_i32 }, 5);
        job.created_at = DateTime::from_millis(1_764_400_000_123);
        job.result = Some(doc! { "sent": true });
        let report = JobReport::from(job.clone());
        assert_eq!(report.id().to_string(), job.id.to_hex());
        assert_eq!(report.created_at(), "2025-11-29T07:06:40.123Z");
        assert_eq!(report.payload(), json!({ "n": 1 }));
        assert_eq!(report.result(), Some(json!({ "sent": true })));
        assert_eq!(report.completed_at(), None);
    }

    #[test]
    fn a_result_stored_as_json_text_reads_back_as_the_same_json() {
        let mut job = Job::new("t", doc! {}, 5);
        job.result_json = Some(r#"{"matrix":[[1,2],[3]]}"#.into());
        let report = JobReport::from(job);
        assert_eq!(report.result(), Some(json!({ "matrix": [[1, 2], [3]] })));
    }
}

//! The job handler registry: what each job type does, and how a handler
//! says it failed.
//!
//! Every queue delivers at least once (a lease can expire under a slow
//! handler, a process can die after the work but before the acknowledgement),
//! so every handler must be idempotent by job id. Capabilities register
//! their own job types (the users' are in [`crate::users::jobs`]); the queue
//! itself knows `noop` (benchmarks and smoke checks) and `sleep` (a job that
//! takes as long as its payload says: demos and failover drills).
//!
//! A handler returns its result document, or an error: any error is retried
//! with backoff until the job's attempts run out — except
//! [`HandlerError::Permanent`], which no retry can mend (a malformed
//! payload): the job fails at once, for good. The error's message and
//! every cause, joined by `": "` ([`HandlerError::report`]), become the
//! attempt's `error` and the job's `lastError`.
//!
//! A handler can also report its progress ([`Job::progress`]) and snooze
//! ([`Job::snooze`]: run again later without spending an attempt).
//!
//! ```ignore
//! JobHandlers::new().with("report.build", |job| async move {
//!     let Some(owner) = find_owner(&job).await.context("reading the owner")? else {
//!         return Err(HandlerError::retry_later("the owner does not exist (yet)"));
//!     };
//!     if !owner_ready(&owner).await {
//!         return job.snooze(Duration::from_secs(60));
//!     }
//!     job.progress(50, "owner found");
//!     Ok(doc! { "owner": owner })
//! })
//! .with("report.send", |job| async move {
//!     // Retrying cannot fix the payload: fail now, saying why.
//!     let Ok(to) = job.payload.get_str("to") else {
//!         return Err(HandlerError::permanent("payload lacks to (a string)"));
//!     };
//!     send(to).await.context("sending the report")?;
//!     Ok(doc! {})
//! })
//! ```

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use mongodb::bson::{doc, Bson, Document};

use crate::queue::job::Job;
use crate::store::error_chain;

/// Any error, boxed.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a handler did not finish its job. The attempt failed; the job is
/// retried with backoff while it has attempts left, unless the error is
/// [`Permanent`](Self::Permanent).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// No retry can succeed (the payload is malformed, say): the job is
    /// `failed` at once, whatever attempts it has left, with this reason as
    /// its `lastError`. An operator can still retry it (`POST /jobs/{id}/retry`).
    #[error("{0}")]
    Permanent(String),
    /// Not done, for a reason that is no error (yet): e.g. what the job
    /// works on does not exist yet.
    #[error("{0}")]
    RetryLater(String),
    /// A step failed: what the handler was doing, and the error it got.
    #[error("{doing}")]
    Failed {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// An error as it came (its message and causes are its own).
    #[error(transparent)]
    Other(BoxError),
    /// No failure: the handler asked to run again this long from now,
    /// without spending an attempt. Returned by [`Job::snooze`].
    #[error("snoozed for {}", humantime::format_duration(*.0))]
    Snoozed(Duration),
}

/// What a handler returns: a result document, or why it must be retried.
pub type HandlerResult = Result<Document, HandlerError>;

impl HandlerError {
    /// "Retry later because `reason`".
    pub fn retry_later(reason: impl Into<String>) -> Self {
        Self::RetryLater(reason.into())
    }

    /// "Fail for good because `reason`": no retry (see [`Self::Permanent`]).
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }

    /// Whether the job must fail now rather than be retried.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// `source` failed while the handler was `doing` something.
    pub fn failed(doing: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Failed {
            doing: doing.into(),
            source: source.into(),
        }
    }

    /// The message and every cause, joined by `": "`: what the job's
    /// `lastError` records.
    pub fn report(&self) -> String {
        error_chain(self)
    }
}

impl From<String> for HandlerError {
    fn from(reason: String) -> Self {
        Self::RetryLater(reason)
    }
}

impl From<&str> for HandlerError {
    fn from(reason: &str) -> Self {
        Self::RetryLater(reason.into())
    }
}

impl From<BoxError> for HandlerError {
    fn from(err: BoxError) -> Self {
        Self::Other(err)
    }
}

impl From<crate::queue::QueueError> for HandlerError {
    fn from(err: crate::queue::QueueError) -> Self {
        Self::Other(err.into())
    }
}

impl From<mongodb::error::Error> for HandlerError {
    fn from(err: mongodb::error::Error) -> Self {
        Self::Other(err.into())
    }
}

/// A handler's own control of its job (with [`Job::progress`]).
impl Job {
    /// Give the job back to run again `delay` from now, without spending
    /// an attempt (the attempt is recorded `snoozed`): the handler returns
    /// what this returns. A delay over [`MAX_SNOOZE`](crate::queue::controls::MAX_SNOOZE)
    /// fails the attempt for good instead, saying so.
    ///
    /// ```ignore
    /// if !upstream_ready().await {
    ///     return job.snooze(Duration::from_secs(30));
    /// }
    /// ```
    pub fn snooze(&self, delay: Duration) -> HandlerResult {
        Err(HandlerError::Snoozed(delay))
    }
}

/// `.context("doing what")` on any `Result` whose error is a std error (or
/// a string): the error becomes the cause of a [`HandlerError::Failed`].
pub trait Context<T> {
    fn context(self, doing: impl Into<String>) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> Context<T> for Result<T, E> {
    fn context(self, doing: impl Into<String>) -> Result<T, HandlerError> {
        self.map_err(|err| HandlerError::failed(doing, err))
    }
}

type HandlerFn = dyn Fn(Job) -> BoxFuture<'static, HandlerResult> + Send + Sync;

/// Job type → handler.
#[derive(Clone, Default)]
pub struct JobHandlers {
    handlers: HashMap<String, Arc<HandlerFn>>,
}

impl JobHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `handler` for jobs of type `kind` (replacing any other).
    ///
    /// The handler returns a [`HandlerResult`]. Inside it, `?` converts what
    /// converts into a [`HandlerError`] (a `String` or `&str`: a reason to
    /// retry later; a MongoDB error; a boxed error), and [`Context::context`]
    /// wraps any other error with what the handler was doing. (The error type
    /// is fixed rather than generic so that a handler that only ever returns
    /// `Ok(..)` needs no annotation.)
    pub fn with<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers
            .insert(kind.into(), Arc::new(move |job| handler(job).boxed()));
        self
    }

    /// All of `other`'s handlers added to these (`other` wins a clash).
    pub fn merge(mut self, other: JobHandlers) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    /// The types these handlers run: the only ones this instance claims
    /// (what an enqueue accepts is the fleet's, see [`crate::queue::types`]).
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    pub fn get(&self, kind: &str) -> Option<Arc<HandlerFn>> {
        self.handlers.get(kind).cloned()
    }

    /// The queue's own job types: `noop`, which does nothing, and `sleep`,
    /// which waits `payload.ms` milliseconds (at most [`MAX_SLEEP`]),
    /// reporting its progress every tenth of it, and
    /// returns `{"sleptMs": ms}`. A `sleep` job holds its executor (and its
    /// lease, renewed as for any job) the whole time, so it shows a running
    /// job in the console and moves to another instance when its own dies.
    pub fn builtin() -> Self {
        Self::new()
            .with("noop", |_job| async { Ok(Document::new()) })
            .with("sleep", |job| async move {
                let ms = sleep_ms(&job.payload)?;
                let started = tokio::time::Instant::now();
                for tenth in 1..=10_u64 {
                    // Each step ends at its share of the whole: no drift.
                    tokio::time::sleep_until(started + Duration::from_millis(ms * tenth / 10))
                        .await;
                    let slept = ms * tenth / 10;
                    job.progress((tenth * 10) as u8, format!("slept {slept} of {ms} ms"));
                }
                Ok(doc! { "sleptMs": i64::try_from(ms).unwrap_or(i64::MAX) })
            })
    }
}

/// The longest a `sleep` job sleeps: ten minutes.
pub const MAX_SLEEP: Duration = Duration::from_secs(600);

/// A `sleep` job's `payload.ms`: an integer from 0 to [`MAX_SLEEP`] in
/// milliseconds. Anything else is permanent: no retry mends a payload.
fn sleep_ms(payload: &Document) -> Result<u64, HandlerError> {
    let max = u64::try_from(MAX_SLEEP.as_millis()).unwrap_or(u64::MAX);
    let ms = match payload.get("ms") {
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    ms.filter(|ms| *ms <= max).ok_or_else(|| {
        HandlerError::permanent(format!(
            "payload.ms must be an integer from 0 to {max} (milliseconds)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Reset;

    #[derive(Debug, thiserror::Error)]
    #[error("smtp send failed")]
    struct Smtp(#[source] Reset);

    #[test]
    fn a_reason_to_retry_is_recorded_as_given() {
        assert_eq!(HandlerError::from("boom").report(), "boom");
        assert_eq!(HandlerError::retry_later("not yet").report(), "not yet");
    }

    #[test]
    fn a_failed_step_records_what_it_was_doing_and_every_cause() {
        let failed: Result<(), _> = Err(Smtp(Reset));
        let err = failed.context("sending the welcome e-mail").unwrap_err();
        assert_eq!(
            err.report(),
            "sending the welcome e-mail: smtp send failed: connection reset"
        );
        let cause = err.source().expect("a source");
        assert!(
            cause.downcast_ref::<Smtp>().is_some(),
            "the cause keeps its type"
        );
    }

    #[test]
    fn only_a_permanent_error_is_permanent_and_it_records_its_reason() {
        let permanent = HandlerError::permanent("payload lacks userId");
        assert!(permanent.is_permanent());
        assert_eq!(permanent.report(), "payload lacks userId");
        assert!(!HandlerError::retry_later("not yet").is_permanent());
        assert!(!HandlerError::from(BoxError::from(Reset)).is_permanent());
        let failed: Result<(), _> = Err(Reset);
        assert!(!failed.context("x").unwrap_err().is_permanent());
    }

    #[test]
    fn an_error_passed_on_as_it_is_keeps_its_own_message_and_causes() {
        let err = HandlerError::from(BoxError::from(Smtp(Reset)));
        assert_eq!(err.report(), "smtp send failed: connection reset");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_job_takes_as_long_as_its_payload_says() {
        let sleep = JobHandlers::builtin().get("sleep").expect("built in");
        let started = tokio::time::Instant::now();
        let done = sleep(Job::new("sleep", doc! { "ms": 1500 }, 1)).await;
        assert_eq!(done.unwrap(), doc! { "sleptMs": 1500_i64 });
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_job_reports_its_progress_every_tenth() {
        let sleep = JobHandlers::builtin().get("sleep").expect("built in");
        let (controls, mut reports) =
            crate::queue::controls::Controls::new(crate::queue::clock::Clock::manual_from_now());
        let mut job = Job::new("sleep", doc! { "ms": 1000 }, 1);
        job.controls = controls;
        let running = tokio::spawn(sleep(job));
        let mut seen = Vec::new();
        while reports.changed().await.is_ok() {
            let report = reports.borrow_and_update().clone().expect("a report");
            seen.push(report.percent);
            if report.percent == 40 {
                assert_eq!(report.message.as_deref(), Some("slept 400 of 1000 ms"));
            }
        }
        assert!(running.await.unwrap().is_ok());
        assert_eq!(seen, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    }

    #[tokio::test]
    async fn a_sleep_job_refuses_for_good_a_payload_it_cannot_obey() {
        let sleep = JobHandlers::builtin().get("sleep").expect("built in");
        let too_long = i64::try_from(MAX_SLEEP.as_millis()).unwrap() + 1;
        for payload in [
            doc! {},
            doc! { "ms": -1 },
            doc! { "ms": "1000" },
            doc! { "ms": 1.5 },
            doc! { "ms": too_long },
        ] {
            let err = sleep(Job::new("sleep", payload.clone(), 1))
                .await
                .unwrap_err();
            assert!(err.is_permanent(), "{payload}");
            assert_eq!(
                err.report(),
                "payload.ms must be an integer from 0 to 600000 (milliseconds)"
            );
        }
    }

    #[tokio::test]
    async fn a_handler_fails_with_whatever_converts_into_a_handler_error() {
        async fn count(n: i32) -> Result<i32, Reset> {
            if n > 0 {
                Ok(n)
            } else {
                Err(Reset)
            }
        }
        let handlers = JobHandlers::new()
            .with("text", |_job| async { Err("later".into()) })
            .with("step", |_job| async {
                count(0).await.context("counting")?;
                Ok(Document::new())
            })
            .with("fine", |_job| async { Ok(Document::new()) });
        let job = || Job::new("x", Document::new(), 1);
        let text = handlers.get("text").unwrap()(job()).await.unwrap_err();
        assert_eq!(text.report(), "later");
        let step = handlers.get("step").unwrap()(job()).await.unwrap_err();
        assert_eq!(step.report(), "counting: connection reset");
        assert!(handlers.get("fine").unwrap()(job()).await.is_ok());
        assert!(handlers.get("other").is_none());
    }
}

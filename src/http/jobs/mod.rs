//! `/jobs*`: the job queue for operators (ops token), through the queue's
//! [`QueueHandle`](troupe_actors::queue::QueueHandle): typed results, ids as
//! [`JobId`], payloads already JSON. This module renders them and maps the
//! queue's errors to problems; [`enqueue`] is `POST /jobs`, [`bulk`] `POST /jobs/bulk`,
//! [`result`] `GET /jobs/{id}/result` (waiting for a job to finish),
//! [`flow`] `GET /jobs/{id}/flow` (a job's dependencies and dependents).

mod bulk;
mod control;
mod enqueue;
mod flow;
mod limits;
mod result;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use troupe_actors::queue::error::redacted;
use troupe_actors::queue::job::{JobQuery, JobStatus, QueueStats, StatusCounts};
use troupe_actors::queue::report::{AttemptReport, JobHistory, JobReport};
use troupe_actors::queue::{JobId, QueueError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::error::{ApiError, Problem};
use super::extract::{Fields, FromQuery, Params, PathId, ValidQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, enqueue::enqueue_job))
        .routes(routes!(job_stats))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(result::job_result))
        .routes(routes!(flow::job_flow))
        .routes(routes!(bulk::bulk_jobs))
        .merge(control::router())
        .merge(limits::router())
}

/// A job as the API shows it. Dates are RFC 3339.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    #[schema(example = "65f1c0ffee0000000000beef")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    pub kind: String,
    pub payload: Value,
    #[schema(example = "completed")]
    pub status: String,
    /// Attempts started so far.
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it is due (RFC 3339, like every date here).
    #[schema(example = "2026-12-07T01:26:11.749Z")]
    pub run_at: String,
    /// The instance that holds it while it runs: `<host>-<pid>-<suffix>`.
    pub locked_by: Option<String>,
    /// When that hold (its lease) ends unless renewed.
    pub locked_until: Option<String>,
    /// The trace its attempts join (the request's that enqueued it): 32
    /// hex digits, what Jaeger's search and `GET /logs?traceId=` take.
    /// Absent for a job enqueued outside any trace (a cron job's attempts
    /// each start their own).
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: Option<String>,
    /// The last failed attempt's error, with its causes.
    pub last_error: Option<String>,
    /// What its handler returned, once it completed: a JSON object, the
    /// same whichever store holds it.
    pub result: Option<Value>,
    /// Its handler's latest progress report (the current attempt's, or
    /// the last one's).
    pub progress: Option<ProgressView>,
    /// Its own attempt timeout, if it was enqueued with one (else
    /// `queue.job_timeout` applies), e.g. `"45s"`.
    #[schema(example = "45s")]
    pub timeout: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// Higher runs first among due jobs (-100 to 100).
    pub priority: i32,
    /// At most one pending or processing job of its type holds it.
    pub unique_key: Option<String>,
    /// An operator asked the running job to stop (`POST /jobs/{id}/cancel`).
    pub cancel_requested: bool,
    pub cancelled_at: Option<String>,
    /// The jobs it runs after (empty: none); `GET /jobs/{id}/flow` shows
    /// the whole flow.
    pub depends_on: Vec<String>,
    /// With `dependsOn`: `fail` or `hold`, what a failed or cancelled
    /// dependency does to it.
    #[schema(example = "fail")]
    pub on_dependency_failure: Option<String>,
    /// Only on `GET /jobs/{id}`: every attempt, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AttemptView>>,
}

/// A handler's progress report.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    /// 0 to 100.
    #[schema(example = 40)]
    pub percent: i32,
    /// At most 200 characters.
    #[schema(example = "slept 400 of 1000 ms")]
    pub message: Option<String>,
    /// When the handler reported it.
    #[schema(example = "2026-12-07T01:26:11.749Z")]
    pub at: String,
}

/// One attempt: who ran it, when, and how it ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i32,
    pub instance: String,
    pub executor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `completed`, `failed`, `timed_out`, `snoozed` (the
    /// handler asked to run again later; no attempt spent: `error` says for
    /// how long), `cancelled` or `crashed`.
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Queue counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    /// Jobs waiting for the jobs they depend on (`dependsOn`).
    pub waiting: u64,
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// How late the longest-waiting due job is: seconds since it became due
    /// (its `runAt`; jobs scheduled for later do not count); absent when no
    /// pending job is due.
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: u64,
    /// Counts by status for each job type.
    #[serde(rename = "byType")]
    pub by_type: BTreeMap<String, StatusCountsView>,
    /// Counts by status for each priority (as text: `"-5"`, `"0"`, `"10"`).
    #[serde(rename = "byPriority")]
    pub by_priority: BTreeMap<String, StatusCountsView>,
    /// Every job type some live instance handles: what `POST /jobs` and
    /// pauses accept (each instance runs only its own).
    #[serde(rename = "registeredTypes")]
    pub registered_types: Vec<String>,
    /// Types of pending or processing jobs that no live instance handles:
    /// they wait (e.g. for the instance a rolling deploy is starting).
    #[serde(rename = "unhandledTypes")]
    pub unhandled_types: Vec<String>,
}

/// Jobs by status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCountsView {
    pub waiting: u64,
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl From<StatusCounts> for StatusCountsView {
    fn from(c: StatusCounts) -> Self {
        Self {
            waiting: c.waiting,
            pending: c.pending,
            processing: c.processing,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
        }
    }
}

impl From<QueueStats> for JobStats {
    fn from(s: QueueStats) -> Self {
        Self {
            waiting: s.waiting,
            pending: s.pending,
            processing: s.processing,
            completed: s.completed,
            failed: s.failed,
            cancelled: s.cancelled,
            oldest_pending_age_seconds: s.oldest_pending_age_seconds,
            completed_last_minute: s.completed_last_minute,
            by_type: s.by_type.into_iter().map(|(t, c)| (t, c.into())).collect(),
            by_priority: (s.by_priority.into_iter())
                .map(|(p, c)| (p.to_string(), c.into()))
                .collect(),
            registered_types: s.registered_types,
            unhandled_types: s.unhandled_types,
        }
    }
}

impl From<AttemptReport> for AttemptView {
    fn from(a: AttemptReport) -> Self {
        Self {
            attempt: a.attempt,
            instance: a.instance,
            executor: a.executor,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome.as_str().into(),
            error: a.error,
        }
    }
}

/// The one conversion of a job to the API's view: [`JobReport`] reads the
/// queue's one job model without BSON; this adds only the schema and names.
impl From<JobReport> for JobView {
    fn from(job: JobReport) -> Self {
        Self::of(job, None)
    }
}

/// `GET /jobs/{id}`'s view: the job and its attempts.
impl From<JobHistory> for JobView {
    fn from(history: JobHistory) -> Self {
        Self::of(history.job, Some(history.attempts))
    }
}

impl JobView {
    fn of(job: JobReport, history: Option<Vec<AttemptReport>>) -> Self {
        Self {
            id: job.id().to_string(),
            kind: job.kind().to_owned(),
            payload: job.payload(),
            status: job.status().as_str().into(),
            attempts: job.attempts(),
            max_attempts: job.max_attempts(),
            run_at: job.run_at(),
            locked_by: job.locked_by().map(str::to_owned),
            locked_until: job.locked_until(),
            trace_id: job.trace_id(),
            last_error: job.last_error().map(str::to_owned),
            result: job.result(),
            progress: job.progress().map(|(percent, message, at)| ProgressView {
                percent,
                message: message.map(str::to_owned),
                at,
            }),
            timeout: job
                .timeout()
                .map(|t| humantime::format_duration(t).to_string()),
            created_at: job.created_at(),
            updated_at: job.updated_at(),
            completed_at: job.completed_at(),
            priority: job.priority(),
            unique_key: job.unique_key().map(str::to_owned),
            cancel_requested: job.cancel_requested(),
            cancelled_at: job.cancelled_at(),
            depends_on: job.depends_on().iter().map(ToString::to_string).collect(),
            on_dependency_failure: job.on_dependency_failure().map(|p| p.as_str().into()),
            history: history.map(|attempts| attempts.into_iter().map(Into::into).collect()),
        }
    }
}

/// The problem a queue error is to the API's client.
pub(super) fn problem(err: QueueError) -> ApiError {
    match err {
        QueueError::NotFound => ApiError::NotFound("no such job".into()),
        QueueError::NotFailed(_)
        | QueueError::UniqueKeyHeld(_)
        | QueueError::Finished(_)
        | QueueError::Busy
        | QueueError::Unreadable(_) => ApiError::Conflict(err.to_string()),
        QueueError::Refused(refused) => enqueue::refusal(refused),
        QueueError::BadLimit(_) => ApiError::BadRequest(err.to_string()),
        QueueError::UniqueKeyBusy | QueueError::StoreTimeout(_) => {
            ApiError::Unavailable(err.to_string())
        }
        QueueError::Unavailable(err) => err.into(),
        QueueError::Store(err) => {
            // Never the error's message: a server can quote the document
            // it refused (a payload) in it.
            tracing::error!(error = %redacted(&err), "job store failed");
            ApiError::Unavailable("the job store is temporarily unavailable; retry shortly".into())
        }
    }
}

/// The optional `type` field of a body: a job type of 1 to 100 characters
/// (whether some instance handles it is the queue's to say).
pub(super) fn job_type(f: &mut Fields) -> Option<String> {
    let kind: Option<String> = f.optional("type", "a job type (a string)");
    if let Some(kind) = &kind {
        f.check(
            !kind.is_empty() && kind.len() <= 100,
            "type",
            "must be 1 to 100 characters",
        );
    }
    kind
}

/// Query parameters of `GET /jobs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `waiting`, `pending`, `processing`, `completed`, `failed` or `cancelled`.
    #[param(value_type = Option<String>)]
    status: Option<JobStatus>,
    /// A job type, e.g. `user.created`.
    #[param(rename = "type")]
    kind: Option<String>,
    /// 1 to 200; default 50.
    #[param(value_type = Option<u32>)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    #[param(value_type = Option<String>)]
    cursor: Option<JobId>,
}

impl FromQuery for ListParams {
    fn from_query(q: &mut Params) -> Option<Self> {
        let status = q.optional("status", |v| {
            JobStatus::parse(v)
                .ok_or("must be waiting, pending, processing, completed, failed or cancelled")
        });
        let kind = q.optional("type", |v| {
            (!v.is_empty() && v.len() <= 100)
                .then(|| v.to_owned())
                .ok_or("must be 1 to 100 characters")
        });
        let limit = q.optional("limit", |v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or("must be an integer from 1 to 200")
        });
        let cursor = q.optional("cursor", |v| {
            v.parse::<JobId>()
                .map_err(|_| "must be a cursor from a previous page")
        });
        Some(Self {
            status,
            kind,
            limit,
            cursor,
        })
    }
}

impl From<ListParams> for JobQuery {
    fn from(params: ListParams) -> Self {
        Self {
            status: params.status,
            kind: params.kind,
            limit: params.limit.unwrap_or(50),
            cursor: params.cursor,
        }
    }
}

/// Jobs, newest first, filtered by status and type, paginated by cursor.
#[utoipa::path(get, path = "/jobs", tag = "Jobs", security(("ops-token" = [])), params(ListParams), responses(
    (status = 200, body = JobList),
    (status = 400, description = "Bad parameters (each listed)", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn list_jobs(
    State(state): State<AppState>,
    _operator: Operator,
    ValidQuery(params): ValidQuery<ListParams>,
) -> Result<Json<JobList>, ApiError> {
    let query = JobQuery::from(params);
    let page = state.actors.queue.list(query).await.map_err(problem)?;
    Ok(Json(JobList {
        jobs: page.jobs.into_iter().map(JobView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Counts by status (in all, by type, by priority), the oldest pending job's age, completions in the last minute, the job types the live fleet handles, and those of waiting jobs that no live instance handles.
#[utoipa::path(get, path = "/jobs/stats", tag = "Jobs", security(("ops-token" = [])), responses(
    (status = 200, body = JobStats),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn job_stats(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<JobStats>, ApiError> {
    let stats = state.actors.queue.stats().await.map_err(problem)?;
    Ok(Json(stats.into()))
}

/// One job with its attempt history.
#[utoipa::path(get, path = "/jobs/{id}", tag = "Jobs", security(("ops-token" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, body = JobView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is stored in a shape this service cannot read (the NestJS service's: run `troupe migrate`)", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(job = %id))]
async fn get_job(
    State(state): State<AppState>,
    _operator: Operator,
    PathId(id): PathId<JobId>,
) -> Result<Json<JobView>, ApiError> {
    let history = state.actors.queue.get(id).await.map_err(problem)?;
    Ok(Json(history.into()))
}

/// Put a `failed` job back to `pending` with a fresh attempt budget: the
/// attempts it was given at enqueue (its own `maxAttempts`, or the queue's).
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "Jobs", security(("ops-token" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, pending again", body = JobView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(job = %id))]
async fn retry_job(
    State(state): State<AppState>,
    _operator: Operator,
    PathId(id): PathId<JobId>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.actors.queue.retry(id).await.map_err(problem)?;
    Ok(Json(job.into()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use troupe_actors::queue::SpecError;
    use troupe_actors::CallError;

    use super::*;

    /// The status each queue error is to the client. The match has no
    /// wildcard: a new variant does not compile until it is listed here.
    fn expected(err: &QueueError) -> StatusCode {
        match err {
            QueueError::NotFound => StatusCode::NOT_FOUND,
            QueueError::Refused(_) | QueueError::BadLimit(_) => StatusCode::BAD_REQUEST,
            QueueError::NotFailed(_)
            | QueueError::UniqueKeyHeld(_)
            | QueueError::Finished(_)
            | QueueError::Busy
            | QueueError::Unreadable(_) => StatusCode::CONFLICT,
            QueueError::UniqueKeyBusy
            | QueueError::Store(_)
            | QueueError::StoreTimeout(_)
            | QueueError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    #[test]
    fn each_queue_error_is_its_problems_status() {
        let job: JobId = "65f1c0ffee0000000000beef".parse().unwrap();
        let errors = [
            QueueError::NotFound,
            QueueError::NotFailed("pending"),
            QueueError::Refused(SpecError::PriorityOutOfRange),
            QueueError::BadLimit(troupe_actors::queue::limit::LimitError::Concurrency),
            QueueError::UniqueKeyBusy,
            QueueError::UniqueKeyHeld(job),
            QueueError::Finished("completed"),
            QueueError::Busy,
            QueueError::Unreadable(job),
            QueueError::Store(std::io::Error::other("down").into()),
            QueueError::StoreTimeout(Duration::from_secs(5)),
            QueueError::Unavailable(CallError::Unavailable("queue-poller")),
        ];
        for err in errors {
            let (want, shown) = (expected(&err), format!("{err:?}"));
            assert_eq!(problem(err).status(), want, "{shown}");
        }
    }
}

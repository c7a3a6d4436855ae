//! `GET /jobs/{id}/result?wait=5s`: a job's result or error once it has
//! finished, waiting for it up to `wait` (a long poll, ops token).
//!
//! No busy loop: the request subscribes to the fleet's `JobCompleted`,
//! `JobFailed` and `JobCancelled` events *before* it reads the job (so a
//! finish between the read and the subscription is not missed), and reads
//! the job again only when an event names it. Events of other instances
//! come through the relay (Redis); an event lost on the way (Redis down,
//! the subscription's buffer full under a flood of finishes) costs only
//! latency: the job is read once more at the deadline. The wait stays
//! below `server.request_timeout` ([`longest_wait`]) and ends early when
//! the service starts shutting down.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use troupe_actors::events::{Event, EventKind, Filter};
use troupe_actors::queue::job::JobStatus;
use troupe_actors::queue::report::JobHistory;
use troupe_actors::queue::JobId;
use utoipa::{IntoParams, ToSchema};

use super::problem;
use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{FromQuery, Params, PathId, ValidQuery};
use crate::metrics::EVENT_STREAM_LABEL;
use crate::state::AppState;

/// The events that end a job.
const FINISHES: &[EventKind] = &[
    EventKind::JobCompleted,
    EventKind::JobFailed,
    EventKind::JobCancelled,
];

/// Finish events a waiting request may hold unread (the fleet's, every
/// job's): past it they are dropped for it, and the deadline's re-read
/// answers instead.
const BUFFER: usize = 256;

/// How a job ended, or that it has not yet.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobOutcome {
    #[schema(example = "65f1c0ffee0000000000beef")]
    pub id: String,
    /// `completed` (with `result`), `failed` (with `error`), `cancelled`;
    /// with 202, `pending` or `processing`.
    #[schema(example = "completed")]
    pub status: String,
    /// What the handler returned (a JSON object), when `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last attempt's error, with its causes, when `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl JobOutcome {
    /// The answer for `job` as read: 200 once it finished, else 202.
    fn of(history: JobHistory) -> (StatusCode, Json<Self>) {
        let job = history.job;
        let status = job.status();
        let finished = finished(status);
        let outcome = Self {
            id: job.id().to_string(),
            status: status.as_str().into(),
            result: (status == JobStatus::Completed).then(|| {
                job.result()
                    .unwrap_or_else(|| Value::Object(Default::default()))
            }),
            error: (status == JobStatus::Failed)
                .then(|| job.last_error().map(str::to_owned))
                .flatten(),
        };
        let code = if finished {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        (code, Json(outcome))
    }
}

fn finished(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// The longest `wait`: a second under `request_timeout` (at least half of
/// it), so the answer comes before the request times out.
pub fn longest_wait(request_timeout: Duration) -> Duration {
    request_timeout
        .saturating_sub(Duration::from_secs(1))
        .max(request_timeout / 2)
}

/// Query parameters of `GET /jobs/{id}/result`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultParams {
    /// How long to wait for the job to finish, e.g. `5s` or `500ms`; at
    /// most a second under `server.request_timeout` (9s by default).
    /// Absent or `0s`: answer at once.
    #[param(value_type = Option<String>, example = "5s")]
    wait: Option<Duration>,
}

impl FromQuery for ResultParams {
    fn from_query(q: &mut Params) -> Option<Self> {
        let wait = q.optional("wait", |v| {
            humantime::parse_duration(v).map_err(|_| "must be a duration such as \"5s\"")
        });
        Some(Self { wait })
    }
}

/// A job's result (or error) once it has finished, waiting for it up to `?wait=`: 200 as soon as it finishes (on any instance), 202 with its status if it is still pending or processing when the wait ends.
#[utoipa::path(get, path = "/jobs/{id}/result", tag = "Jobs", security(("ops-token" = [])),
    params(("id" = String, Path, description = "The job's id"), ResultParams),
    responses(
        (status = 200, description = "The job finished: `completed` with its `result`, `failed` with its `error`, or `cancelled`", body = JobOutcome,
            examples(
                ("completed" = (value = json!({"id": "65f1c0ffee0000000000beef", "status": "completed", "result": {"sleptMs": 1000}}))),
                ("failed" = (value = json!({"id": "65f1c0ffee0000000000beef", "status": "failed", "error": "sending the report: connection reset"}))),
                ("cancelled" = (value = json!({"id": "65f1c0ffee0000000000beef", "status": "cancelled"}))),
            )),
        (status = 202, description = "Not finished when the wait ended: its status; ask again", body = JobOutcome,
            example = json!({"id": "65f1c0ffee0000000000beef", "status": "processing"})),
        (status = 400, description = "Malformed id, or `wait` no duration or longer than allowed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is stored in a shape this service cannot read (the NestJS service's: run `troupe migrate`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub(super) async fn job_result(
    State(state): State<AppState>,
    _operator: Operator,
    PathId(id): PathId<JobId>,
    ValidQuery(params): ValidQuery<ResultParams>,
) -> Result<(StatusCode, Json<JobOutcome>), ApiError> {
    let wait = params.wait.unwrap_or_default();
    let longest = longest_wait(state.settings.server.request_timeout);
    if wait > longest {
        let most = humantime::format_duration(longest);
        return Err(ApiError::field("wait", &format!("must be at most {most}")));
    }
    // Subscribed before the read: a finish in between is not missed.
    // Named as an event stream's (`sse-…`): the metrics count it there.
    let name = format!(
        "{EVENT_STREAM_LABEL}-result-{}",
        uuid::Uuid::new_v4().simple()
    );
    let filter = Filter::fleet().kinds(FINISHES);
    let mut finishes =
        (!wait.is_zero()).then(|| (state.actors.registry).subscribe_channel(&name, filter, BUFFER));
    let first = state.actors.queue.get(id).await.map_err(problem)?;
    let Some(finishes) = finishes.as_mut().filter(|_| !finished(first.job.status())) else {
        return Ok(JobOutcome::of(first));
    };
    let deadline = tokio::time::Instant::now() + wait;
    let wanted = id.to_string();
    loop {
        let event = tokio::select! {
            event = finishes.recv() => event,
            () = tokio::time::sleep_until(deadline) => None,
            () = state.stopping.cancelled() => None,
        };
        // The deadline, shutdown, the bus gone, or this job's end: read.
        match event {
            Some(published) if !ends(&published.event, &wanted) => continue,
            _ => break,
        }
    }
    let last = state.actors.queue.get(id).await.map_err(problem)?;
    Ok(JobOutcome::of(last))
}

/// Whether `event` is the end of job `id`.
fn ends(event: &Event, id: &str) -> bool {
    matches!(
        event,
        Event::JobCompleted { job_id, .. }
        | Event::JobFailed { job_id, .. }
        | Event::JobCancelled { job_id, .. } if job_id == id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_is_a_second_under_the_request_timeout_and_at_least_half_of_it() {
        assert_eq!(
            longest_wait(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(
            longest_wait(Duration::from_secs(30)),
            Duration::from_secs(29)
        );
        let short = Duration::from_millis(1200);
        assert_eq!(longest_wait(short), Duration::from_millis(600));
    }
}

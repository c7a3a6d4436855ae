//! `/jobs/{id}/cancel` and `/jobs/pauses`: stopping jobs, and pausing a job
//! type or the whole queue across every instance (ops token). The queue
//! does the work ([`QueueHandle`](troupe_actors::queue::QueueHandle)); this
//! module reads the requests and renders the answers.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use troupe_actors::queue::pause::{PauseTarget, Pauses};
use troupe_actors::queue::JobId;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{job_type, problem, JobView};
use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Fields, FromJson, PathId, Valid, ValidOrEmpty};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cancel_job))
        .routes(routes!(get_pauses, pause, resume))
}

/// What is paused, on every instance.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PausesView {
    /// The whole queue: no job is claimed.
    pub queue: bool,
    /// No job of these types is claimed.
    pub types: Vec<String>,
}

impl From<Pauses> for PausesView {
    fn from(pauses: Pauses) -> Self {
        Self {
            queue: pauses.queue,
            types: pauses.types.into_iter().collect(),
        }
    }
}

/// The body of `POST` / `DELETE /jobs/pauses`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents the body; `Target` is what is read
pub struct PauseRequest {
    /// A registered job type; absent: the whole queue.
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    kind: Option<String>,
}

/// A pause request's target, read from its body.
pub struct Target(PauseTarget);

impl FromJson for Target {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let kind = job_type(f);
        Some(Self(kind.map_or(PauseTarget::Queue, PauseTarget::Type)))
    }
}

/// Cancel a job: a pending one never runs (it is `cancelled` at once); a
/// processing one is asked to stop (`cancelRequested`) and ends `cancelled`
/// when its handler stops (at the latest a lease renewal plus one second
/// later). Never retried.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "Jobs", security(("ops-token" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job: cancelled, or asked to stop", body = JobView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is completed, failed or cancelled already", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(job = %id))]
async fn cancel_job(
    State(state): State<AppState>,
    _operator: Operator,
    PathId(id): PathId<JobId>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.actors.queue.cancel(id).await.map_err(problem)?;
    Ok(Json(job.into()))
}

/// What is paused (every instance applies it within one poll interval).
#[utoipa::path(get, path = "/jobs/pauses", tag = "Jobs", security(("ops-token" = [])), responses(
    (status = 200, body = PausesView),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn get_pauses(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<PausesView>, ApiError> {
    let pauses = state.actors.queue.pauses().await.map_err(problem)?;
    Ok(Json(pauses.into()))
}

/// Pause a job type (`{"type": "..."}`) or the whole queue (`{}`) on every
/// instance: no job of it is claimed from the next poll on; running jobs finish.
#[utoipa::path(post, path = "/jobs/pauses", tag = "Jobs", security(("ops-token" = [])),
    request_body = PauseRequest,
    responses(
        (status = 200, description = "The pauses, with this type (or the queue) paused", body = PausesView),
        (status = 400, description = "Unknown job type or bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn pause(
    State(state): State<AppState>,
    _operator: Operator,
    Valid(Target(target)): Valid<Target>,
) -> Result<Json<PausesView>, ApiError> {
    let pauses = state.actors.queue.pause(target).await;
    Ok(Json(pauses.map_err(problem)?.into()))
}

/// Resume a job type (`{"type": "..."}`) or the whole queue (`{}`, or no
/// body at all).
#[utoipa::path(delete, path = "/jobs/pauses", tag = "Jobs", security(("ops-token" = [])),
    request_body = PauseRequest,
    responses(
        (status = 200, description = "The pauses, with this type (or the queue) resumed", body = PausesView),
        (status = 400, description = "Unknown job type or bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn resume(
    State(state): State<AppState>,
    _operator: Operator,
    ValidOrEmpty(Target(target)): ValidOrEmpty<Target>,
) -> Result<Json<PausesView>, ApiError> {
    let pauses = state.actors.queue.resume(target).await;
    Ok(Json(pauses.map_err(problem)?.into()))
}

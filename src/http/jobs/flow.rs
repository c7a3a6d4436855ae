//! `GET /jobs/{id}/flow`: a job's flow as a tree (ops token): what it
//! depends on and what depends on it, recursively, each job with its id,
//! type and status ([`troupe_actors::queue::flow_tree`]: at most 10 levels
//! and 100 jobs each way; `truncated` says a bound cut it short).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use troupe_actors::queue::flow_tree::{FlowNode, FlowTree};
use troupe_actors::queue::JobId;
use utoipa::ToSchema;

use super::problem;
use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::PathId;
use crate::state::AppState;

/// A job's flow.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "65f1c0ffee0000000000bee2", "type": "report.send", "status": "waiting",
    "onDependencyFailure": "fail",
    "dependsOn": [{"id": "65f1c0ffee0000000000bee1", "type": "report.build", "status": "processing", "children": [], "repeated": false}],
    "neededBy": [], "truncated": false
}))]
pub struct FlowView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    /// `fail` or `hold`: what a failed or cancelled dependency does to it.
    pub on_dependency_failure: String,
    /// The jobs it waits for; each node's `children` are what *it* waits for.
    pub depends_on: Vec<FlowNodeView>,
    /// The jobs that wait for it; each node's `children` are what waits for *it*.
    pub needed_by: Vec<FlowNodeView>,
    /// A bound (10 levels, 100 jobs each way) cut the tree short.
    pub truncated: bool,
}

/// One job of a flow and its branches.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowNodeView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `waiting`, `pending`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Its branches on this side of the tree (empty when `repeated`).
    #[schema(no_recursion)]
    pub children: Vec<FlowNodeView>,
    /// Shown elsewhere in this tree already, with its branches.
    pub repeated: bool,
}

impl From<FlowNode> for FlowNodeView {
    fn from(node: FlowNode) -> Self {
        Self {
            id: node.id.to_string(),
            kind: node.kind,
            status: node.status.as_str().into(),
            children: node.children.into_iter().map(Into::into).collect(),
            repeated: node.repeated,
        }
    }
}

impl From<FlowTree> for FlowView {
    fn from(tree: FlowTree) -> Self {
        Self {
            id: tree.id.to_string(),
            kind: tree.kind,
            status: tree.status.as_str().into(),
            on_dependency_failure: tree.on_dependency_failure.as_str().into(),
            depends_on: tree.depends_on.into_iter().map(Into::into).collect(),
            needed_by: tree.needed_by.into_iter().map(Into::into).collect(),
            truncated: tree.truncated,
        }
    }
}

/// A job's flow as a tree: what it depends on and what depends on it,
/// recursively (at most 10 levels and 100 jobs each way).
#[utoipa::path(get, path = "/jobs/{id}/flow", tag = "Jobs", security(("ops-token" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, body = FlowView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is stored in a shape this service cannot read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is unavailable: retry shortly", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub(super) async fn job_flow(
    State(state): State<AppState>,
    _operator: Operator,
    PathId(id): PathId<JobId>,
) -> Result<Json<FlowView>, ApiError> {
    let tree = state.actors.queue.flow(id).await.map_err(problem)?;
    Ok(Json(tree.into()))
}

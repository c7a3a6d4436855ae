//! `POST /jobs/bulk`: retry, cancel or delete every job a filter matches
//! (ops token), bounded per call and resumable
//! ([`troupe_actors::queue::bulk`]).

use std::time::SystemTime;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use troupe_actors::queue::bulk::{
    BulkAction, BulkFilter, BulkOutcome, BulkQuery, DEFAULT_LIMIT, MAX_LIMIT,
};
use troupe_actors::queue::job::JobStatus;
use utoipa::ToSchema;

use super::{job_type, problem};
use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

// The body's schema; `BulkBody` reads and checks it.
/// A bulk operation.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "action": "retry", "filter": {"type": "user.created", "status": "failed"}, "dryRun": true
}))]
pub struct BulkRequest {
    /// `retry` (failed jobs back to pending), `cancel` (pending jobs
    /// cancelled, running ones asked to stop) or `delete` (finished jobs and
    /// their history).
    #[schema(example = "retry")]
    pub action: String,
    /// Which jobs; every part optional.
    pub filter: Option<BulkFilterView>,
    /// Only count the jobs the call would take.
    pub dry_run: Option<bool>,
    /// The most jobs this call takes, oldest first: 1 to 1000, default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The jobs a bulk operation takes.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct BulkFilterView {
    /// A job type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// One status the action applies to (retry: `failed`; cancel: `pending`,
    /// `processing`; delete: `completed`, `failed`, `cancelled`); absent:
    /// all of them.
    pub status: Option<String>,
    /// Jobs created at or after this time (RFC 3339).
    #[schema(format = DateTime)]
    pub from: Option<String>,
    /// Jobs created before this time (RFC 3339).
    #[schema(format = DateTime)]
    pub to: Option<String>,
}

/// What a bulk call did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkView {
    /// Jobs the filter matched when the call began (all, not only this call's).
    pub matched: u64,
    /// Jobs the action was applied to (0 on a dry run; fewer than taken
    /// when some changed meanwhile).
    pub applied: u64,
    /// More matching jobs are left than this call took: call again.
    pub more: bool,
    pub dry_run: bool,
}

/// `POST /jobs/bulk`'s body, checked.
pub struct BulkBody {
    query: BulkQuery,
    dry_run: bool,
    limit: u32,
}

impl FromJson for BulkBody {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let action: Option<String> = f.required("action", "retry, cancel or delete");
        let action = action.and_then(|a| {
            let parsed = BulkAction::parse(&a);
            f.check(
                parsed.is_some(),
                "action",
                "must be retry, cancel or delete",
            );
            parsed
        });
        let filter = f.object("filter", filter);
        let dry_run: Option<bool> = f.optional("dryRun", "true or false");
        let limit: Option<u32> = f.optional("limit", "an integer from 1 to 1000");
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        f.check(
            (1..=MAX_LIMIT).contains(&limit),
            "limit",
            "must be an integer from 1 to 1000",
        );
        let query = match filter?.query(action?) {
            Ok(query) => query,
            Err(refused) => {
                f.error("filter.status", refused.to_string());
                return None;
            }
        };
        Some(Self {
            query,
            dry_run: dry_run.unwrap_or(false),
            limit,
        })
    }
}

/// The `filter` object's fields.
fn filter(f: &mut Fields) -> Option<BulkFilter> {
    let kind = job_type(f);
    let status: Option<String> = f.optional("status", "a job status (a string)");
    let status = status.and_then(|s| {
        let parsed = JobStatus::parse(&s);
        f.check(
            parsed.is_some(),
            "status",
            "must be waiting, pending, processing, completed, failed or cancelled",
        );
        parsed
    });
    let from = time(f, "from");
    let to = time(f, "to");
    if let (Some(Some(from)), Some(Some(to))) = (from, to) {
        f.check(from < to, "to", "must be later than from");
    }
    Some(BulkFilter {
        kind,
        status,
        from: from?,
        to: to?,
    })
}

/// An optional RFC 3339 time: `Some(None)` if absent, `None` if bad.
fn time(f: &mut Fields, field: &str) -> Option<Option<SystemTime>> {
    let Some(text) = f.optional::<String>(field, "an RFC 3339 date-time") else {
        return Some(None); // absent (or already reported)
    };
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(at) => Some(Some(SystemTime::from(at))),
        Err(_) => {
            f.error(
                field,
                "must be an RFC 3339 date-time, e.g. 2026-11-29T21:00:00Z",
            );
            None
        }
    }
}

impl From<(BulkOutcome, bool)> for BulkView {
    fn from((outcome, dry_run): (BulkOutcome, bool)) -> Self {
        Self {
            matched: outcome.matched,
            applied: outcome.applied,
            more: outcome.more,
            dry_run,
        }
    }
}

/// Retry, cancel or delete every job a filter matches: at most `limit` per
/// call, oldest first, each through the same operation as the single-job
/// route (a job that changed meanwhile is skipped). A job the action took
/// no longer matches, so calling again while `more` is true goes on where
/// the last call stopped. `dryRun` only counts.
#[utoipa::path(post, path = "/jobs/bulk", tag = "Jobs", security(("ops-token" = [])),
    request_body = BulkRequest,
    responses(
        (status = 200, description = "What the call matched and applied", body = BulkView),
        (status = 400, description = "Bad body: unknown action, a status the action does not apply to, a bad time or limit (each field listed)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store failed or was slow; what was applied stays applied: call again", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
pub async fn bulk_jobs(
    State(state): State<AppState>,
    _operator: Operator,
    Valid(body): Valid<BulkBody>,
) -> Result<Json<BulkView>, ApiError> {
    let queue = &state.actors.queue;
    let outcome = queue.bulk(&body.query, body.limit, body.dry_run).await;
    Ok(Json((outcome.map_err(problem)?, body.dry_run).into()))
}

//! `/jobs/limits`: fleet-wide concurrency limits per job type (ops token).
//! The queue enforces them ([`troupe_actors::queue::limit`]); this module
//! reads the requests and renders the answers.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use troupe_actors::queue::limit::{
    Limit, Rate, MAX_CONCURRENCY, MAX_FIELD, MAX_RATE, RATE_PERIODS,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem;
use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_limits))
        .routes(routes!(set_limit, remove_limit))
}

/// One type's limit in force.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitView {
    /// The job type.
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    pub kind: String,
    /// At most this many of its jobs (per partition, with `partitionBy`)
    /// run at once across every instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 5)]
    pub concurrency: Option<u32>,
    /// At most `limit` of its jobs (per partition) start in any window of
    /// `period`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateView>,
    /// The payload field whose each value is limited apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "tenantId")]
    pub partition_by: Option<String>,
    /// `stored` (set through this API) or `config` (`queue.limits`).
    #[schema(example = "stored")]
    pub source: &'static str,
}

/// A rate limit: at most `limit` starts in any window of `period`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RateView {
    /// 1 to 10000.
    #[schema(example = 100)]
    pub limit: u32,
    /// A duration from 1s to 1d (`30s`, `1m`, `1h`).
    #[schema(example = "1m")]
    pub period: String,
}

/// The limits in force.
#[derive(Serialize, ToSchema)]
pub struct LimitsView {
    pub limits: Vec<LimitView>,
}

/// The body of `PUT /jobs/limits/{type}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents the body; `LimitBody` is what is read
pub struct LimitRequest {
    /// 1 to 1000 (at least one of `concurrency` and `rate`).
    #[schema(example = 5)]
    concurrency: Option<u32>,
    /// At most `limit` starts in any window of `period`; jobs past it wait.
    rate: Option<RateView>,
    /// A top-level payload field (letters, digits, `_`; up to 64): the limit
    /// holds for each of its values apart; jobs without it share one.
    #[schema(example = "tenantId")]
    partition_by: Option<String>,
}

/// A limit read from a request body, each field checked.
pub struct LimitBody(Limit);

impl FromJson for LimitBody {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let concurrency: Option<u32> = f.optional("concurrency", "an integer from 1 to 1000");
        if let Some(n) = concurrency {
            f.check(
                (1..=MAX_CONCURRENCY).contains(&n),
                "concurrency",
                "must be an integer from 1 to 1000",
            );
        }
        let rate = f.optional_object("rate", read_rate);
        if concurrency.is_none() && rate.is_none() && !f.has_errors() {
            f.error("concurrency", "a limit needs concurrency, rate or both");
            return None;
        }
        let partition_by: Option<String> = f.optional("partitionBy", "a payload field name");
        if let Some(field) = &partition_by {
            let plain = (1..=MAX_FIELD).contains(&field.len())
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            f.check(
                plain,
                "partitionBy",
                "must be a top-level payload field name: 1 to 64 letters, digits or _",
            );
        }
        Some(Self(Limit {
            concurrency,
            rate,
            partition_by,
        }))
    }
}

/// `rate: {limit, period}`, each field checked.
fn read_rate(f: &mut Fields) -> Option<Rate> {
    let limit: Option<u32> = f.required("limit", "an integer from 1 to 10000");
    if let Some(n) = limit {
        f.check(
            (1..=MAX_RATE).contains(&n),
            "limit",
            "must be an integer from 1 to 10000",
        );
    }
    let period: Option<String> = f.required("period", "a duration such as \"1m\"");
    let period = period.and_then(|text| match humantime::parse_duration(&text) {
        Ok(period) if RATE_PERIODS.contains(&period) => Some(period),
        _ => {
            f.error("period", "must be a duration from 1s to 1d, such as \"1m\"");
            None
        }
    });
    Some(Rate {
        limit: limit?,
        period: period?,
    })
}

/// A type named in the path: 1 to 100 characters (whether an instance
/// handles it is the queue's to say).
fn path_type(kind: String) -> Result<String, ApiError> {
    if kind.is_empty() || kind.len() > 100 {
        return Err(ApiError::BadRequest(
            "the job type in the path must be 1 to 100 characters".into(),
        ));
    }
    Ok(kind)
}

async fn current(state: &AppState) -> Result<LimitsView, ApiError> {
    let limits = state.actors.queue.limits().await.map_err(problem)?;
    let limits = (limits.into_iter())
        .map(|(kind, limit, stored)| LimitView {
            kind,
            concurrency: limit.concurrency,
            rate: limit.rate.map(|rate| RateView {
                limit: rate.limit,
                period: humantime::format_duration(rate.period).to_string(),
            }),
            partition_by: limit.partition_by,
            source: if stored { "stored" } else { "config" },
        })
        .collect();
    Ok(LimitsView { limits })
}

/// The fleet-wide concurrency limits in force: those set here and those
/// from the configuration (`queue.limits`).
#[utoipa::path(get, path = "/jobs/limits", tag = "Jobs", security(("ops-token" = [])), responses(
    (status = 200, body = LimitsView),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "The job store is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn get_limits(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<LimitsView>, ApiError> {
    Ok(Json(current(&state).await?))
}

/// Limit how many jobs of a type run at once across every instance
/// (replacing its limit, stored or configured). Every instance applies it
/// within a second; running jobs are never stopped by it.
#[utoipa::path(put, path = "/jobs/limits/{type}", tag = "Jobs", security(("ops-token" = [])),
    params(("type" = String, Path, description = "A registered job type")),
    request_body = LimitRequest,
    responses(
        (status = 200, description = "The limits, with this one", body = LimitsView),
        (status = 400, description = "Unknown job type or bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(kind = %kind))]
async fn set_limit(
    State(state): State<AppState>,
    _operator: Operator,
    Path(kind): Path<String>,
    Valid(LimitBody(limit)): Valid<LimitBody>,
) -> Result<Json<LimitsView>, ApiError> {
    let kind = path_type(kind)?;
    (state.actors.queue.set_limit(&kind, limit).await).map_err(problem)?;
    Ok(Json(current(&state).await?))
}

/// Remove a type's limit set here (its configured one, if any, applies
/// again).
#[utoipa::path(delete, path = "/jobs/limits/{type}", tag = "Jobs", security(("ops-token" = [])),
    params(("type" = String, Path, description = "A job type")),
    responses(
        (status = 200, description = "The limits, without this one", body = LimitsView),
        (status = 400, description = "Bad job type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No limit was set here for this type", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(kind = %kind))]
async fn remove_limit(
    State(state): State<AppState>,
    _operator: Operator,
    Path(kind): Path<String>,
) -> Result<Json<LimitsView>, ApiError> {
    let kind = path_type(kind)?;
    if !(state.actors.queue.remove_limit(&kind).await).map_err(problem)? {
        return Err(ApiError::NotFound(format!(
            "no limit was set for {kind:?} through this API (a configured one is changed in queue.limits)"
        )));
    }
    Ok(Json(current(&state).await?))
}

//! `GET /metrics`: Prometheus (OpenMetrics text) metrics, with prometheus-client.
//!
//! Request counts and latencies, claim and execution times, MongoDB commands
//! are recorded as they happen; everything the actors already count (cache
//! hits, mailbox backlogs, restarts, events) is read at scrape time from
//! shared counters, so there is one source of truth per figure. The registry
//! (`crate::metrics`) belongs to the application (no global recorder), so several instances in
//! one process stay apart.
//!
//! A scrape only reads memory: it sends no message to any actor and no query
//! to a store. The job counts come from the poller's snapshot
//! ([`troupe_actors::queue::snapshot`]), whose age is exported with them.
//! With `ops.metrics_token` set, a scrape needs that bearer token.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::MetricsScraper;
use super::error::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics (OpenMetrics text format). Public unless
/// `ops.metrics_token` is set; then `Authorization: Bearer <metrics token>`.
#[utoipa::path(get, path = "/metrics", tag = "Ops", security((), ("metrics-token" = [])), responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
    (status = 401, description = "`ops.metrics_token` is set and the request lacks it", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn metrics(State(state): State<AppState>, _scraper: MetricsScraper) -> impl IntoResponse {
    let body = match state.metrics.reusable() {
        Some(body) => body,
        None => state.metrics.render(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

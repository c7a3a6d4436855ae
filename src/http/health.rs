//! Liveness and readiness probes.
//!
//! `live` answers as long as the process serves HTTP. `ready` checks each
//! dependency concurrently, each bounded by its own timeout, and the actor
//! tree. MongoDB (the source of truth) and the actor tree are required: 503
//! names what is failing. Redis is only a cache: when it is down the service
//! keeps serving from MongoDB, so readiness stays 200 and lists it as degraded.
//! So does the events relay (`events-relay`) while it cannot reach Redis:
//! this instance then sees only its own events, and the fleet none of them.
//!
//! Anyone may probe, so a probe costs O(1): the pings' result is shared for
//! [`PROBE_TTL`](crate::probes::PROBE_TTL) ([`crate::probes`]), so a flood of probes sends at most one ping to
//! each store per second. An anonymous caller learns the status and which
//! dependency fails; why (the driver's error, which names hosts and the
//! topology) only with the ops token.

use std::fmt::Display;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::MaybeOperator;
use crate::probes::PingError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// A ping's outcome as [`Check::from`] takes it.
fn shown(result: &Result<(), PingError>) -> Result<(), &dyn Display> {
    match result {
        Ok(()) => Ok(()),
        Err(err) => Err(err),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// One dependency's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
    /// Why it is down (only for a caller with the ops token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    /// `result`'s state; its error only if `reveal`.
    fn from(result: Result<(), &dyn Display>, reveal: bool) -> Self {
        match result {
            Ok(()) => Self {
                status: "up",
                error: None,
            },
            Err(e) => Self {
                status: "down",
                error: reveal.then(|| e.to_string()),
            },
        }
    }
    fn is_up(&self) -> bool {
        self.status == "up"
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// Required dependencies that are down (empty when ready).
    pub failing: Vec<&'static str>,
    /// Optional dependencies that are down; the service works around them:
    /// `redis` (cache and limits), `events-relay` (the fleet's events).
    pub degraded: Vec<&'static str>,
    pub mongodb: Check,
    pub redis: Check,
    pub actors: Check,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "App", responses((status = 200, body = Live)))]
async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// 200 when MongoDB and the actor tree are healthy (Redis down only degrades);
/// 503 naming what is failing. The reasons (`error`) only with the ops token.
/// The stores are pinged at most once a second, whoever asks.
#[utoipa::path(get, path = "/health/ready", tag = "App", security((), ("ops-token" = [])), responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "A dependency is failing; `failing` names it", body = Readiness),
))]
#[tracing::instrument(skip_all)]
async fn ready(
    State(state): State<AppState>,
    MaybeOperator(reveal): MaybeOperator,
) -> (StatusCode, Json<Readiness>) {
    let pings = state
        .probes
        .current(&state.stores, state.settings.mongodb.timeout)
        .await;
    let mongo = shown(&pings.mongodb).and_then(|()| match state.actors.indexes_ready() {
        true => Ok(()),
        false => Err(&"start-up indexes not created yet" as &dyn Display),
    });
    let escalated = state.actors.tree.escalated();
    let actors = escalated
        .as_ref()
        .map_or(Ok(()), |reason| Err(reason as &dyn Display));
    let mongodb = Check::from(mongo, reveal);
    let redis = Check::from(shown(&pings.redis), reveal);
    let actors = Check::from(actors, reveal);
    let failing: Vec<&'static str> = [("mongodb", &mongodb), ("actors", &actors)]
        .into_iter()
        .filter(|(_, c)| !c.is_up())
        .map(|(name, _)| name)
        .collect();
    let mut degraded = if redis.is_up() { vec![] } else { vec!["redis"] };
    if state.actors.relay.degraded() {
        degraded.push("events-relay");
    }
    let ready = failing.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" },
        failing,
        degraded,
        mongodb,
        redis,
        actors,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

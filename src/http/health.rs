//! Liveness and readiness probes.
//!
//! `live` answers as long as the process serves HTTP. `ready` checks each
//! dependency concurrently, each bounded by its own timeout, and the actor
//! tree. MongoDB (the source of truth) and the actor tree are required: 503
//! names what is failing. Redis is only a cache: when it is down the service
//! keeps serving from MongoDB, so readiness stays 200 and lists it as degraded.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Live {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// One dependency's state.
#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn from<E: std::fmt::Display>(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self {
                status: "up",
                error: None,
            },
            Err(e) => Self {
                status: "down",
                error: Some(e.to_string()),
            },
        }
    }
    fn is_up(&self) -> bool {
        self.status == "up"
    }
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// Required dependencies that are down (empty when ready).
    pub failing: Vec<&'static str>,
    /// Optional dependencies that are down; the service works around them.
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
/// 503 naming what is failing.
#[utoipa::path(get, path = "/health/ready", tag = "App", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "A dependency is failing; `failing` names it", body = Readiness),
))]
#[tracing::instrument(skip_all)]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let timeout = state.settings.mongodb.timeout;
    let (mongo, redis) = tokio::join!(
        async {
            tokio::time::timeout(timeout, troupe_actors::store::ping_mongo(&state.db))
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .and_then(|()| match state.indexes_ready.load(Ordering::Acquire) {
                    true => Ok(()),
                    false => Err("start-up indexes not created yet".to_string()),
                })
        },
        state.redis.ping(),
    );
    let actors = match state.actors.tree.escalated() {
        None => Ok(()),
        Some(reason) => Err(reason),
    };
    let (mongodb, redis, actors) = (Check::from(mongo), Check::from(redis), Check::from(actors));
    let failing: Vec<&'static str> = [("mongodb", &mongodb), ("actors", &actors)]
        .into_iter()
        .filter(|(_, c)| !c.is_up())
        .map(|(name, _)| name)
        .collect();
    let degraded = if redis.is_up() { vec![] } else { vec!["redis"] };
    for (name, check) in [
        ("mongodb", &mongodb),
        ("redis", &redis),
        ("actors", &actors),
    ] {
        if let Some(error) = &check.error {
            tracing::warn!(target: "system", dependency = name, %error, "readiness check failed");
        }
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

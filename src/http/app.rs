//! `GET /`: what is running here.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(info))
}

/// The service's name, version and uptime.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "troupe", "version": "0.1.0", "uptimeSeconds": 42, "uptime": "42s"}))]
pub struct ServiceInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
    /// Human-readable uptime, e.g. `1h 2m 3s`.
    pub uptime: String,
}

/// Service name, version and uptime.
#[utoipa::path(get, path = "/", tag = "App", responses((status = 200, body = ServiceInfo)))]
#[tracing::instrument(skip_all)]
async fn info(State(state): State<AppState>) -> Json<ServiceInfo> {
    let uptime = std::time::Duration::from_secs(state.started.elapsed().as_secs());
    Json(ServiceInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: uptime.as_secs(),
        uptime: humantime::format_duration(uptime).to_string(),
    })
}

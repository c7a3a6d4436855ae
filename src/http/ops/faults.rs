//! `POST /ops/actors/{name}/fault`: fault injection (a panic, a stop or a
//! stall on an actor's next message), only with `ops.fault_injection`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use troupe_actors::supervision::fault::Fault;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(inject_fault))
}

/// A fault to inject.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"kind": "delay", "delayMs": 500}))]
pub struct FaultRequest {
    /// `panic` (on its next message), `stop` (after its next message) or `delay`.
    pub kind: String,
    /// With `delay`: how long the next message stalls (1 to 60,000).
    pub delay_ms: Option<u64>,
}

impl FromJson for FaultRequest {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let kind: Option<String> = f.required("kind", "a string");
        let delay_ms: Option<u64> = f.optional("delayMs", "a positive integer");
        if let Some(kind) = &kind {
            f.check(
                ["panic", "stop", "delay"].contains(&kind.as_str()),
                "kind",
                "must be panic, stop or delay",
            );
            if kind == "delay" {
                f.check(
                    delay_ms.is_some_and(|d| (1..=60_000).contains(&d)),
                    "delayMs",
                    "must be 1 to 60000 with kind delay",
                );
            }
        }
        Some(Self {
            kind: kind?,
            delay_ms,
        })
    }
}

/// Acknowledgement of an injected fault.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultInjected {
    pub actor: String,
    pub fault: String,
}

/// Make an actor panic on its next message, stop after it, or stall it.
/// Only when `ops.fault_injection` is on (never under `production`); 404 otherwise.
#[utoipa::path(post, path = "/ops/actors/{name}/fault", tag = "Ops", security(("ops-token" = [])),
    params(("name" = String, Path, description = "The actor's name")),
    request_body = FaultRequest,
    responses(
        (status = 202, description = "Armed: applies to the actor's next message", body = FaultInjected),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Fault injection is off, or no such actor", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(actor = %name))]
async fn inject_fault(
    State(state): State<AppState>,
    _operator: Operator,
    Path(name): Path<String>,
    Valid(body): Valid<FaultRequest>,
) -> Result<(StatusCode, Json<FaultInjected>), ApiError> {
    if !state.settings.ops.fault_injection {
        return Err(ApiError::NotFound(
            "fault injection is off on this instance (ops.fault_injection; never under production)"
                .into(),
        ));
    }
    let fault = match body.kind.as_str() {
        "panic" => Fault::Panic,
        "stop" => Fault::Stop,
        _ => Fault::Delay {
            delay_ms: body.delay_ms.unwrap_or(1),
        },
    };
    // Logs it and publishes FaultInjected.
    state
        .actors
        .introspection()
        .inject(&name, fault)
        .map_err(|unknown| ApiError::NotFound(unknown.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(FaultInjected {
            actor: name,
            fault: fault.describe(),
        }),
    ))
}

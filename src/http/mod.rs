//! The HTTP layer: each area has its own `router()`; [`router`] merges them,
//! adds the OpenAPI document and Swagger UI, and wraps everything in the
//! cross-cutting layers (request logging, timeout, body limit, panics).

pub mod app;
pub mod auth;
pub mod body;
pub mod bounded;
pub mod client_addr;
pub mod error;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod log_tail;
pub mod logs;
pub mod metrics;
pub mod ops;
pub mod users;

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;
use bounded::{method_label, LoggedPath};
use error::{problem_response, ApiError};

#[derive(OpenApi)]
#[openapi(
    info(title = "Troupe", description = "An actor-system backend: JWT auth, a Redis read-through cache, a persistent job queue."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "Auth", description = "Sign-up, login, token refresh and logout"),
        (name = "Users", description = "User profiles"),
        (name = "Jobs", description = "The persistent job queue (ops token)"),
        (name = "Logs", description = "Categorised log files (ops token)"),
        (name = "Ops", description = "Actor introspection, fault injection, events (ops token)"),
        (name = "App", description = "Service information and health probes"),
    ),
    components(schemas(
        error::Problem,
        error::FieldError,
        ops::HandlingView,
        ops::FailureView,
        ops::PoolView,
        ops::ActorNode,
    )),
)]
pub struct ApiDoc;

/// Bearer schemes: `access-token` for user endpoints, `refresh-token` for
/// `/users/refresh`, `ops-token` for operators.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "access-token",
                "An access token from signup, login or refresh",
            ),
            (
                "refresh-token",
                "A refresh token from signup, login or refresh",
            ),
            ("ops-token", "The operator token (OPS_TOKEN)"),
            (
                "metrics-token",
                "The metrics token (METRICS_TOKEN), when /metrics requires one",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// The responses every operation of a kind can give, documented once here
/// rather than on each handler: 408/413/415 wherever a JSON body is read, 503
/// wherever an actor or store answers (an actor restarting, MongoDB
/// unreachable, a timeout).
fn document_common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, ResponseBuilder};
    let problem = |what: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let always_up = ["/", "/health/live", "/health/ready", "/metrics"].contains(&path.as_str());
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut operation.responses.responses;
            if operation.request_body.is_some() {
                responses
                    .entry("413".into())
                    .or_insert_with(|| problem("Body too large"));
                responses
                    .entry("415".into())
                    .or_insert_with(|| problem("Body is not application/json"));
                responses
                    .entry("408".into())
                    .or_insert_with(|| problem("Body not received within server.body_timeout"));
            }
            if !always_up {
                responses
                    .entry("503".into())
                    .or_insert_with(|| problem("Temporarily unavailable (an actor restarting, the store unreachable, a timeout)"));
            }
        }
    }
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(app::router())
        .merge(health::router())
        .merge(users::router())
        .merge(jobs::router())
        .merge(ops::router())
        .merge(metrics::router())
        .merge(logs::router())
        .split_for_parts();
    document_common_responses(&mut openapi);
    let settings = &state.settings.server;
    api.merge(SwaggerUi::new("/api").url("/api-json", openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            settings.request_timeout,
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            body::BodyPolicy {
                limit: settings.body_limit,
                timeout: settings.body_timeout,
            },
            body::guard_body,
        ))
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an unexpected error occurred".into(),
                vec![],
            )
        }))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        // Span fields are printed with every event inside the request, so
        // they carry bounded forms only (see `bounded`).
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let method = method_label(req.method());
            let path = LoggedPath(req.uri().path());
            tracing::info_span!("request", %method, route, %path)
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no route matches this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Answer 503 problem+json when a request takes longer than the limit.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {}",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
}

/// One line per request in the `requests` category, and its metrics. The
/// method is its closed label, the path cut to a bound; the query string is
/// not logged.
async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let path = LoggedPath(req.uri().path()).to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.request(method, &route, status, seconds);
    let ms = seconds * 1000.0;
    tracing::info!(target: "requests", %method, %path, status, duration_ms = format!("{ms:.2}"), "request");
    response
}

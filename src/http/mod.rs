//! The HTTP layer. Each API area has its own module and `router()`;
//! [`router`] merges them, serves the OpenAPI document ([`openapi`]) and
//! Swagger UI, and wraps everything in the cross-cutting layers
//! ([`middleware`]; security headers in [`headers`]). Requests are read through [`extract`], errors answered
//! through [`error::ApiError`].

pub mod app;
pub mod auth;
pub mod bounded;
pub mod client_addr;
pub mod cluster;
pub mod console;
pub mod error;
pub mod extract;
pub mod headers;
pub mod health;
pub mod jobs;
pub mod jwks;
pub mod log_tail;
pub mod log_trace;
pub mod logs;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod recovery;
pub mod sessions;
pub mod users;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;
use error::ApiError;

/// Every area's routes, each documenting itself.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(app::router())
        .merge(health::router())
        .merge(users::router())
        .merge(sessions::router())
        .merge(recovery::router())
        .merge(jwks::router())
        .merge(jobs::router())
        .merge(ops::router())
        .merge(cluster::router())
        .merge(metrics::router())
        .merge(logs::router())
        .merge(console::router())
}

/// The OpenAPI document `/api-json` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = routes().split_for_parts();
    openapi::document_common_responses(&mut document);
    document
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, mut document) = routes().split_for_parts();
    openapi::document_common_responses(&mut document);
    let api = api
        .merge(headers::swagger_ui(document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    middleware::wrap(api, &state).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no route matches this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

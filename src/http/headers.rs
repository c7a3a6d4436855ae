//! Security headers on every response, and on Swagger UI (`/api`).
//!
//! - Every response: `X-Content-Type-Options: nosniff` (a browser takes a
//!   JSON, problem+json or `/logs` text body for what its type says, never
//!   for HTML or script it sniffed).
//! - Swagger UI and its files: a Content-Security-Policy (scripts, styles,
//!   images and fetches from this origin only; no framing, no form
//!   submission, no `<base>`), `X-Frame-Options: DENY` for browsers without
//!   `frame-ancestors`, and `Referrer-Policy: no-referrer`.
//!
//! Swagger UI 5's page has no inline script (its configuration comes from
//! `swagger-initializer.js`); its React components set `style` attributes
//! and inject `<style>` elements, hence `style-src 'unsafe-inline'` (styles
//! cannot run code). Its icons are `data:` images. Its validator badge,
//! which would load an image from swagger.io, is turned off.
//! (The ops console sets a stricter policy of its own: `console`.)

use axum::http::{header, HeaderValue};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_swagger_ui::{Config, SwaggerUi};

/// What Swagger UI may load and do.
pub const SWAGGER_UI_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `nosniff` on every response that does not set it itself.
pub fn nosniff() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    )
}

/// Swagger UI at `/api`, over the document served at `/api-json`, with its
/// headers.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>(
    document: utoipa::openapi::OpenApi,
) -> Router<S> {
    let ui = SwaggerUi::new("/api")
        .url("/api-json", document)
        .config(Config::default().validator_url("none"));
    Router::from(ui)
        .layer(overriding(header::CONTENT_SECURITY_POLICY, SWAGGER_UI_CSP))
        .layer(overriding(header::X_FRAME_OPTIONS, "DENY"))
        .layer(overriding(header::REFERRER_POLICY, "no-referrer"))
}

fn overriding(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

//! Request-body limits enforced before any handler runs.
//!
//! - A declared `Content-Length` above `server.body_limit` is answered 413 at
//!   once: nothing of the body is read (axum's own limit only trips once that
//!   many bytes have arrived, so a client could hold a request open for them).
//! - Every request gets a [`BodyDeadline`], `server.body_timeout` after its
//!   head arrived; whoever reads the body ([`super::extract`]) stops there
//!   and answers 408. The deadline is for the whole body, not per chunk: a
//!   client trickling a byte a second would pass any per-chunk timeout.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::ApiError;

/// The body limits, as the middleware's state.
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    pub limit: usize,
    pub timeout: Duration,
}

/// When the request's body must have arrived in full.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Refuse a declared oversized body; stamp the body deadline.
pub async fn guard_body(
    State(policy): State<BodyPolicy>,
    mut req: Request,
    next: Next,
) -> Response {
    if declared_length(&req).is_some_and(|length| length > policy.limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    // A timeout too long for the clock means no deadline (request_timeout,
    // which it must stay below, then bounds the request anyway).
    if let Some(deadline) = Instant::now().checked_add(policy.timeout) {
        req.extensions_mut().insert(BodyDeadline(deadline));
    }
    next.run(req).await
}

/// The `Content-Length` the client declared, if it is a number. (hyper has
/// already refused conflicting or malformed lengths with 400.)
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

//! The layers around every route, outermost first:
//!
//! 1. [`observe`]: the `request` span with bounded fields (a child of the
//!    caller's `traceparent`, if any; its context answered in
//!    `traceresponse`), and one line per request in the `requests` log with
//!    its metrics;
//! 2. a panic becomes a 500 problem+json;
//! 3. [`guard`]: the body limits, then the request timeout (503
//!    problem+json).
//!
//! Outside them all, `X-Content-Type-Options: nosniff` on every response
//! ([`super::headers`]).
//!
//! Few `from_fn` layers: each clones and boxes the service inside
//! it on every request, so the span shares one with the log line, and the
//! body limits one with the timeout (`docs/performance.md` has the profile).
//! The path is formatted only into an enabled span or line.
//!
//! Body limits, enforced before any handler runs:
//! - a declared `Content-Length` above `server.body_limit` is answered 413 at
//!   once: nothing of the body is read (axum's own limit only trips once that
//!   many bytes have arrived, so a client could hold a request open for them);
//! - every request gets a [`BodyDeadline`], `server.body_timeout` after its
//!   head arrived; whoever reads the body ([`super::extract::Valid`]) stops
//!   there and answers 408. The deadline is for the whole body, not per
//!   chunk: a client trickling a byte a second would pass any per-chunk
//!   timeout.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use troupe_actors::trace;

use super::bounded::{method_label, LoggedPath};
use super::error::{problem_response, ApiError};
use crate::config::ServerSettings;
use crate::metrics::Route;
use crate::state::AppState;

/// The W3C trace context header a caller may send.
pub const TRACEPARENT: &str = "traceparent";
/// The header every response carries, export on or off: the
/// request span's context in `traceparent` form, so a client can find its
/// request's trace and log lines (W3C Trace Context Level 2's name).
pub const TRACERESPONSE: &str = "traceresponse";

/// Wrap `routes` in the layers, in the order the module documents.
pub fn wrap(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    let settings: &ServerSettings = &state.settings.server;
    routes
        .layer(middleware::from_fn_with_state(
            BodyPolicy {
                limit: settings.body_limit,
                timeout: settings.body_timeout,
                request_timeout: settings.request_timeout,
            },
            guard,
        ))
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an unexpected error occurred".into(),
                vec![],
            )
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(super::headers::nosniff())
}

/// The request's span, and inside it one line per request in the `requests`
/// category, with its metrics. Span fields are printed with every event
/// inside the request, so they carry bounded forms only (see
/// [`super::bounded`]): the method is its closed label, the path cut to a
/// bound; the query string is not logged. A 5xx is also an error event.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    // Both share the request's buffers (reference counts, no copy).
    let uri = req.uri().clone();
    // The route a request matched, or `unmatched`: a bounded label.
    let route = Route(req.extensions().get::<MatchedPath>().cloned());
    let span = tracing::info_span!("request", %method, route = route.as_str(),
        path = %LoggedPath(uri.path()));
    // The caller's trace, if it names one (a bad header starts a new trace).
    let caller = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    trace::adopt(&span, caller);
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.set_attribute("http.response.status_code", i64::from(status));
    // Which trace this request's spans (and its log lines) are in.
    if let Some(value) =
        trace::traceparent_of(&span).and_then(|value| header::HeaderValue::from_str(&value).ok())
    {
        response.headers_mut().insert(TRACERESPONSE, value);
    }
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.request(method, route, status, seconds);
    let ms = seconds * 1000.0;
    span.in_scope(|| {
        tracing::info!(target: "requests", %method, path = %LoggedPath(uri.path()), status,
            duration_ms = %format_args!("{ms:.2}"), "request");
        if status >= 500 {
            tracing::error!(status, duration_ms = %format_args!("{ms:.2}"), "response failed");
        }
    });
    response
}

/// The body limits and the request timeout, as the middleware's state.
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    pub limit: usize,
    pub timeout: Duration,
    /// Past it the request is answered 503 problem+json.
    pub request_timeout: Duration,
}

/// When the request's body must have arrived in full.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Refuse a declared oversized body; stamp the body deadline; answer 503
/// problem+json when the request takes longer than its timeout.
pub async fn guard(State(policy): State<BodyPolicy>, mut req: Request, next: Next) -> Response {
    if declared_length(&req).is_some_and(|length| length > policy.limit as u64) {
        // The body stays unread, so the connection cannot carry another
        // request: say so, or a client may put it back in its pool and
        // send its next request into a closed socket.
        let mut response = ApiError::PayloadTooLarge.into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    // A timeout too long for the clock means no deadline (request_timeout,
    // which it must stay below, then bounds the request anyway).
    if let Some(deadline) = Instant::now().checked_add(policy.timeout) {
        req.extensions_mut().insert(BodyDeadline(deadline));
    }
    let limit = policy.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {}",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
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

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn with_length(length: Option<&str>) -> Request {
        let mut req = Request::new(Body::empty());
        if let Some(length) = length {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, length.parse().unwrap());
        }
        req
    }

    #[test]
    fn a_declared_length_is_read_when_it_is_a_number() {
        assert_eq!(declared_length(&with_length(Some("0"))), Some(0));
        assert_eq!(
            declared_length(&with_length(Some("18446744073709551615"))),
            Some(u64::MAX)
        );
        for absent in [None, Some("lots"), Some("-1"), Some("18446744073709551616")] {
            assert_eq!(declared_length(&with_length(absent)), None, "{absent:?}");
        }
    }

    #[test]
    fn an_unmatched_request_has_the_unmatched_route_label() {
        let matched = with_length(None).extensions().get::<MatchedPath>().cloned();
        assert_eq!(Route(matched).as_str(), "unmatched");
    }
}

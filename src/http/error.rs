//! [`ApiError`]: every error the API answers, as RFC 9457 `application/problem+json`.
//!
//! Each variant documents its status. Internal causes are logged with the
//! request's span and never echoed: the client gets a generic detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use troupe_actors::CallError;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank", "title": "Bad Request", "status": 400,
    "detail": "the request body has invalid fields",
    "errors": [{"field": "email", "message": "must be a valid e-mail address"}]
}))]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see the status".
    #[serde(rename = "type")]
    pub kind: String,
    /// The status' reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// Field-level errors, when the request body or query was invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name (JSON pointer-like path for nested fields).
    pub field: String,
    /// Why it was rejected.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be parsed (malformed JSON, bad query or path).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the body parsed but some fields are missing, unknown, of the wrong
    /// type or invalid; `errors` lists each one. (400, not 422, as the NestJS
    /// service's clients expect.)
    #[error("the request body has invalid fields")]
    Validation(Vec<FieldError>),
    /// 400: some query-string parameters are unknown, repeated or invalid;
    /// `errors` lists each one.
    #[error("the query string has invalid parameters")]
    InvalidQuery(Vec<FieldError>),
    /// 401: missing, invalid, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated, but not allowed (an unverified address where
    /// `auth.require_verified_email` asks for one).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408: the request body did not arrive within `server.body_timeout`.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 409: the request conflicts with existing state (e.g. a taken e-mail).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body exceeds the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 413: one field of the body is larger than its own limit (a job's
    /// `payload` over `queue.max_payload`); `errors` names it.
    #[error("a field of the request body is too large")]
    FieldTooLarge(FieldError),
    /// 415: the body is not `application/json`.
    #[error("expected a request body with content-type application/json")]
    UnsupportedMediaType,
    /// 429: too many attempts or requests; `Retry-After` says when to come back.
    #[error("too many requests; retry after {0} s")]
    TooManyRequests(u64),
    /// 503: a dependency or actor is unavailable, or the request timed out.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure. Logged; never echoed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge | Self::FieldTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// 429 for a client that must wait `wait`: Retry-After in whole
    /// seconds, rounded up so the client does not come back too early.
    pub fn throttled(wait: std::time::Duration) -> Self {
        Self::TooManyRequests(retry_after_secs(wait))
    }

    /// A single-field validation error.
    pub fn field(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<CallError> for ApiError {
    fn from(err: CallError) -> Self {
        tracing::warn!(error = %err, "actor call failed");
        Self::Unavailable("the service is temporarily unavailable; retry shortly".into())
    }
}

/// `wait` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Build a problem+json response.
pub fn problem_response(status: StatusCode, detail: String, errors: Vec<FieldError>) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                problem_response(status, "an unexpected error occurred".into(), vec![])
            }
            Self::Validation(ref errors) | Self::InvalidQuery(ref errors) => {
                let detail = self.to_string();
                problem_response(status, detail, errors.clone())
            }
            Self::FieldTooLarge(ref error) => {
                let detail = self.to_string();
                problem_response(status, detail, vec![error.clone()])
            }
            other => {
                let mut response = problem_response(status, other.to_string(), vec![]);
                if let Self::TooManyRequests(seconds) = other {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                if status == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_after_secs;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(3_999)), 4);
        assert_eq!(retry_after_secs(Duration::from_secs(900)), 900);
    }
}

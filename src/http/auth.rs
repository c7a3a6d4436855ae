//! Bearer-token extractors: [`AuthUser`] (an access token) and
//! [`RefreshBearer`] (a refresh token). Both answer 401 problem+json on any
//! missing, malformed, expired or wrongly-typed token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use troupe_actors::users::tokens::{Claims, RefreshToken};
use troupe_actors::users::UserId;

use super::error::ApiError;
use crate::state::AppState;

/// The raw bearer token of the request.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "expected an `Authorization: Bearer <token>` header",
        )),
    }
}

/// Whether `token` is `expected`, compared in constant time.
fn token_is(token: &str, expected: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    bool::from(token.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}

/// An operator, authenticated by `Authorization: Bearer <OPS_TOKEN>`
/// (compared in constant time).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if token_is(bearer(parts)?, &state.settings.ops.token) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("invalid ops token"))
        }
    }
}

/// Whether the caller presented the ops token. Never rejects: a missing or
/// wrong token makes an anonymous caller (endpoints that show operators
/// more, such as `/health/ready`).
pub struct MaybeOperator(pub bool);

impl FromRequestParts<AppState> for MaybeOperator {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let operator = bearer(parts).is_ok_and(|token| token_is(token, &state.settings.ops.token));
        Ok(Self(operator))
    }
}

/// A caller allowed to scrape `/metrics`: anyone while `ops.metrics_token` is
/// unset, otherwise only `Authorization: Bearer <metrics token>`.
pub struct MetricsScraper;

impl FromRequestParts<AppState> for MetricsScraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match &state.settings.ops.metrics_token {
            None => Ok(Self),
            Some(expected) if token_is(bearer(parts)?, expected) => Ok(Self),
            Some(_) => Err(ApiError::Unauthorized("invalid metrics token")),
        }
    }
}

/// The verified claims of the request's access token.
pub struct AuthUser(pub Claims);

impl AuthUser {
    /// The user's id, from `sub`.
    pub fn id(&self) -> Result<UserId, ApiError> {
        self.0
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = state
            .actors
            .users
            .verify_access(bearer(parts)?)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))?;
        Ok(Self(claims))
    }
}

/// A refresh token whose signature, type and expiry have been checked,
/// ready for [`Users::refresh`](troupe_actors::users::Users::refresh).
pub struct RefreshBearer(pub RefreshToken);

impl FromRequestParts<AppState> for RefreshBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = state
            .actors
            .users
            .verify_refresh(bearer(parts)?)
            .map_err(|_| ApiError::Unauthorized("invalid or expired refresh token"))?;
        Ok(Self(token))
    }
}

//! Bearer-token extractors: [`AuthUser`] (an access token) and
//! [`RefreshBearer`] (a refresh token). Both answer 401 problem+json on any
//! missing, malformed, expired or wrongly-typed token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use troupe_actors::tokens::{Claims, TokenType};

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

/// An operator, authenticated by `Authorization: Bearer <OPS_TOKEN>`
/// (compared in constant time).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let token = bearer(parts)?;
        let expected = state.settings.ops.token.expose_secret();
        if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("invalid ops token"))
        }
    }
}

/// The verified claims of the request's access token.
pub struct AuthUser(pub Claims);

impl AuthUser {
    /// The user's id, from `sub`.
    pub fn id(&self) -> Result<mongodb::bson::oid::ObjectId, ApiError> {
        mongodb::bson::oid::ObjectId::parse_str(&self.0.sub)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let claims = state
            .actors
            .tokens
            .verify(token, TokenType::Access)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))?;
        Ok(Self(claims))
    }
}

/// A refresh token whose signature, type and expiry have been checked. The
/// raw token travels on, since the session stores a verifier of it.
pub struct RefreshBearer {
    pub token: String,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for RefreshBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let claims = state
            .actors
            .tokens
            .verify(token, TokenType::Refresh)
            .map_err(|_| ApiError::Unauthorized("invalid or expired refresh token"))?;
        Ok(Self {
            token: token.to_owned(),
            claims,
        })
    }
}

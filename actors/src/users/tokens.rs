//! JWT access and refresh tokens (HS256, distinct keys).
//!
//! Every token carries `sub` (user id), `email`, `sid` (the login session it
//! belongs to), `jti` (unique per token), `typ` (`access` | `refresh`), `iat`,
//! `nbf` and `exp`. Verification accepts only HS256 with the key of the
//! expected type (so `alg: none`, algorithm switching and a token of the other
//! type all fail), checks `exp` and `nbf` with no leeway, and checks `typ`.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::users::config::AuthConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub sid: String,
    pub jti: String,
    pub typ: TokenType,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// A freshly issued pair, plus what the session store needs to remember.
pub struct IssuedPair {
    pub access_token: String,
    pub refresh_token: String,
    pub refresh_claims: Claims,
}

/// The token could not be accepted. Deliberately vague: the client is told
/// only that it is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid or expired token")]
pub struct InvalidToken;

/// Issues and verifies tokens. Cheap to share behind an `Arc`.
pub struct Tokens {
    access: (EncodingKey, DecodingKey),
    refresh: (EncodingKey, DecodingKey),
    access_ttl: Duration,
    refresh_ttl: Duration,
    validation: Validation,
}

impl Tokens {
    pub fn new(config: &AuthConfig) -> Self {
        let keys = |secret: &str| {
            (
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            )
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub"]);
        Self {
            access: keys(config.access_secret.expose_secret()),
            refresh: keys(config.refresh_secret.expose_secret()),
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            validation,
        }
    }

    /// A new access/refresh pair for `user_id` in session `sid`.
    pub fn issue_pair(&self, user_id: &str, email: &str, sid: &str) -> IssuedPair {
        let access = self.claims(user_id, email, sid, TokenType::Access, self.access_ttl);
        let refresh = self.claims(user_id, email, sid, TokenType::Refresh, self.refresh_ttl);
        IssuedPair {
            access_token: self.sign(&access),
            refresh_token: self.sign(&refresh),
            refresh_claims: refresh,
        }
    }

    fn claims(&self, sub: &str, email: &str, sid: &str, typ: TokenType, ttl: Duration) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: sub.into(),
            email: email.into(),
            sid: sid.into(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            typ,
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
        }
    }

    /// Sign `claims` with the key of their type.
    pub fn sign(&self, claims: &Claims) -> String {
        let key = match claims.typ {
            TokenType::Access => &self.access.0,
            TokenType::Refresh => &self.refresh.0,
        };
        encode(&Header::new(Algorithm::HS256), claims, key).expect("HS256 signing cannot fail")
    }

    /// Verify `token` as a token of type `expected`.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, InvalidToken> {
        let key = match expected {
            TokenType::Access => &self.access.1,
            TokenType::Refresh => &self.refresh.1,
        };
        let data = decode::<Claims>(token, key, &self.validation).map_err(|_| InvalidToken)?;
        if data.claims.typ != expected {
            return Err(InvalidToken);
        }
        Ok(data.claims)
    }
}

/// The stored verifier of a refresh token: SHA-256 over the *whole* token.
///
/// A refresh token is a signed, high-entropy value, so a fast hash is the
/// right tool (a slow password hash buys nothing). bcrypt would be wrong:
/// it reads only 72 bytes, and every JWT of one user shares its first 72.
pub fn verifier(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

//! Authentication settings shared by the UserActor and the HTTP layer.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::users::idempotency::IdempotencyConfig;
use crate::users::throttle::ThrottleConfig;

/// `[auth]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// HS256 key for access tokens.
    pub access_secret: SecretString,
    /// HS256 key for refresh tokens; must differ from the access key.
    pub refresh_secret: SecretString,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How long after its first use a refresh token may be presented again
    /// for its session and get the same answer (a client's retry or a
    /// concurrent refresh), instead of counting as reuse. Zero: none.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// bcrypt work factor (4..=31).
    pub bcrypt_cost: u32,
    /// Login throttling.
    pub throttle: ThrottleConfig,
    /// `Idempotency-Key` records of sign-ups.
    pub idempotency: IdempotencyConfig,
}

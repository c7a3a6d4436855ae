//! Access-token signing keys shared by the fleet (docs/security.md,
//! "Signing keys").
//!
//! - [`SigningAlg`]: `auth.signing` — EdDSA (Ed25519), ES256 (P-256), or
//!   HS256 (the shared `auth.access_secret`, no key store).
//! - `material.rs`: generating a key pair, its JWK and `kid`, sealing its
//!   private half under `auth.key_encryption_secret`.
//! - `store.rs`: the `signing_keys` collection, one document a generation;
//!   a unique `_id` decides which instance's key a generation is.
//! - `ring.rs`: [`KeyRing`], this instance's keys in memory — the one that
//!   signs, the ones that verify, the JWKS — read on every request.
//! - `manager.rs`: [`SigningKeys`], which creates, rotates and reloads the
//!   keys into the ring (every [`RELOAD_EVERY`], in a task the actor system
//!   owns); `schedule.rs`: its timing.

mod manager;
pub mod material;
mod ring;
mod schedule;
mod store;

pub use self::manager::SigningKeys;
pub use self::ring::{AccessKey, KeyRing, Keys, Verifier};
pub use self::schedule::{JWKS_MAX_AGE, PUBLISH_AHEAD, RELOAD_EVERY, RETAIN_MARGIN};
pub use self::store::COLLECTION;

use serde::Deserialize;

/// `auth.signing`: how access tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037): small keys and signatures, deterministic.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// HMAC-SHA-256 with `auth.access_secret`: every verifier must hold the
    /// secret; no key store, no rotation, an empty JWKS.
    HS256,
}

impl SigningAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    /// The algorithm of a stored key's `alg`; `None` for any other.
    pub fn from_stored(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// Why the signing keys could not be created, read or used. Never carries
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// MongoDB failed (almost always: unreachable); the next reload retries.
    #[error("the signing-key store failed")]
    Store(#[source] crate::store::StoreError),
    /// A stored private key does not open: `auth.key_encryption_secret` is
    /// not the one it was sealed with (or the document was altered).
    #[error("a stored signing key does not decrypt: auth.key_encryption_secret differs from the one that sealed it")]
    Sealed,
    /// A stored key is not in a shape this service reads.
    #[error("a stored signing key is unreadable")]
    Unreadable,
    /// The system's random source or key generation failed.
    #[error("key generation failed")]
    Crypto,
}

impl From<mongodb::error::Error> for KeysError {
    fn from(err: mongodb::error::Error) -> Self {
        Self::Store(crate::store::StoreError::Mongo(err))
    }
}

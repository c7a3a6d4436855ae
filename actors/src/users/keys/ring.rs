//! [`KeyRing`]: this instance's access-token keys in memory — the key that
//! signs, the keys that verify (by `kid`), and the JWKS document, built
//! once per reload. A request reads it under a read lock and clones an
//! `Arc`: no store, no allocation beyond that, whatever the request.

use std::sync::{Arc, RwLock};

use jsonwebtoken::{DecodingKey, EncodingKey};

use super::material::Jwk;
use super::SigningAlg;

/// The key access tokens are signed with now.
pub struct AccessKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub key: EncodingKey,
}

/// A key tokens are verified with.
pub struct Verifier {
    pub kid: String,
    pub alg: SigningAlg,
    pub key: DecodingKey,
}

/// What one reload installs.
#[derive(Default)]
pub struct Keys {
    pub signing: Option<AccessKey>,
    /// At most a handful (next, current, previous): a linear scan.
    pub verifying: Vec<Verifier>,
    /// `{"keys":[…]}`, serialised once.
    pub jwks: Arc<str>,
}

impl Keys {
    /// The keys, with the JWKS of `published` (the verifying keys' JWKs).
    pub fn new(signing: Option<AccessKey>, verifying: Vec<Verifier>, published: &[Jwk]) -> Self {
        let jwks = serde_json::json!({ "keys": published }).to_string();
        Self {
            signing,
            verifying,
            jwks: jwks.into(),
        }
    }

    /// The verifying key named `kid`.
    pub fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifying.iter().find(|v| v.kid == kid)
    }
}

/// Shared by the token issuer (every request) and [`super::SigningKeys`]
/// (which replaces its contents on each reload). Cheap to clone.
#[derive(Clone)]
pub struct KeyRing(Arc<RwLock<Arc<Keys>>>);

impl Default for KeyRing {
    fn default() -> Self {
        Self::new(Keys::new(None, Vec::new(), &[]))
    }
}

impl KeyRing {
    pub fn new(keys: Keys) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(keys))))
    }

    /// The keys as last installed.
    pub fn current(&self) -> Arc<Keys> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replace the keys (a reload).
    pub fn install(&self, keys: Keys) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The JWKS document, as last installed.
    pub fn jwks(&self) -> Arc<str> {
        Arc::clone(&self.current().jwks)
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.current();
        f.debug_struct("KeyRing")
            .field("signing", &keys.signing.as_ref().map(|k| &k.kid))
            .field(
                "verifying",
                &keys.verifying.iter().map(|v| &v.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

//! [`SigningKeys`]: creates the fleet's first key, rotates it on
//! `auth.key_rotation`, and reloads the keys into this instance's
//! [`KeyRing`].
//!
//! Contract:
//! - The first key of a new fleet is generation 1, created by whichever
//!   instance's insert lands first (the others read it), signing at once.
//! - Generation n+1 is created, exactly once likewise, [`PUBLISH_AHEAD`]
//!   before generation n is `auth.key_rotation` old (or at once, when
//!   `auth.signing` names another algorithm than the newest key's). From
//!   its creation it is in every instance's JWKS and verify set (each
//!   reloads every [`RELOAD_EVERY`]); from its `activatesAt` it signs. So
//!   no verifier — this fleet, or one caching the JWKS for up to
//!   [`JWKS_MAX_AGE`](super::JWKS_MAX_AGE) — meets a `kid` it could not yet have known.
//! - Generation n, no longer signing, verifies until `access_ttl` (its
//!   last token's lifetime) plus [`RETAIN_MARGIN`] after generation n+1
//!   started to sign; then it leaves the verify set and the JWKS. Older
//!   generations are never loaded.
//!
//! Failure: a reload that fails ([`KeysError`]) leaves the ring as it was
//! and is retried at the next tick; logged without key material. While no
//! key was ever loaded (MongoDB unreachable since start), access tokens
//! cannot be issued (503) nor verified (401).
//!
//! Shutdown: [`SigningKeys::spawn`]'s task ends when its token is
//! cancelled; the actor system cancels and awaits it.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{DecodingKey, EncodingKey};
use mongodb::bson::DateTime;
use mongodb::Database;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::material::{generate, Jwk, Kek};
use super::ring::{AccessKey, KeyRing, Keys, Verifier};
use super::schedule::{PUBLISH_AHEAD, RELOAD_EVERY, RETAIN_MARGIN};
use super::store::{binary, KeyDoc, KeyStore};
use super::{KeysError, SigningAlg};
use crate::queue::clock::Clock;
use crate::users::config::AuthConfig;

/// The fleet's signing keys, as this instance sees them.
pub struct SigningKeys {
    store: KeyStore,
    ring: KeyRing,
    kek: Kek,
    alg: SigningAlg,
    rotation: Duration,
    access_ttl: Duration,
    clock: Clock,
}

impl SigningKeys {
    /// For `auth.signing` EdDSA or ES256; its ring is empty until the
    /// first [`Self::reload`].
    pub fn new(db: &Database, auth: &AuthConfig) -> Self {
        Self {
            store: KeyStore::new(db),
            ring: KeyRing::default(),
            kek: Kek::derive(&auth.key_encryption_secret),
            alg: auth.signing,
            rotation: auth.key_rotation,
            access_ttl: auth.access_ttl,
            clock: auth.key_clock.clone(),
        }
    }

    /// The ring this manager fills (what the token issuer reads).
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Create the first or next key if one is due, then load the current
    /// keys into the ring.
    pub async fn reload(&self) -> Result<(), KeysError> {
        let now = self.clock.now();
        let mut docs = self.store.newest().await?;
        if let Some((generation, activates_at)) = self.due(&docs, now) {
            let key = self.new_key(generation, now, activates_at)?;
            if self.store.create(&key).await? {
                tracing::info!(target: "users", generation, kid = %key.kid, alg = %key.alg,
                    activates_at = %key.activates_at, "signing key created");
            }
            // Won or lost, the stored generation is the one to use.
            docs = self.store.newest().await?;
        }
        self.ring.install(self.select(&docs, now)?);
        Ok(())
    }

    /// The generation to create and when it is to start signing, if one
    /// is due: the first (signing at once), or the next.
    fn due(&self, newest_first: &[KeyDoc], now: DateTime) -> Option<(i64, DateTime)> {
        let Some(newest) = newest_first.first() else {
            return Some((1, now));
        };
        if newest.activates_at > now {
            return None; // the next key is published and waits its turn
        }
        let planned = after(newest.activates_at, self.rotation);
        let ahead = after(now, PUBLISH_AHEAD);
        let other_alg = newest.alg != self.alg.as_str();
        (other_alg || ahead >= planned).then(|| {
            let at = if other_alg { ahead } else { planned.max(ahead) };
            (newest.generation + 1, at)
        })
    }

    fn new_key(
        &self,
        generation: i64,
        now: DateTime,
        activates_at: DateTime,
    ) -> Result<KeyDoc, KeysError> {
        let key = generate(self.alg)?;
        let jwk = Jwk::new(self.alg, &key.public).ok_or(KeysError::Crypto)?;
        Ok(KeyDoc {
            generation,
            alg: self.alg.as_str().into(),
            sealed: binary(self.kek.seal(&jwk.kid, &key.private)?),
            kid: jwk.kid,
            public: binary(key.public),
            created_at: now,
            activates_at,
        })
    }

    /// The ring's keys at `now`: the newest active key signs; it, any
    /// newer (published ahead) and the previous one while its tokens may
    /// live verify.
    fn select(&self, newest_first: &[KeyDoc], now: DateTime) -> Result<Keys, KeysError> {
        let Some(at) = newest_first
            .iter()
            .position(|k| k.activates_at <= now)
            .or_else(|| newest_first.len().checked_sub(1))
        else {
            return Ok(Keys::default());
        };
        let current = &newest_first[at];
        let retained = after(current.activates_at, self.access_ttl + RETAIN_MARGIN) > now;
        let keep = at + 1 + usize::from(retained);
        let (mut verifying, mut published) = (Vec::new(), Vec::new());
        for doc in newest_first.iter().take(keep) {
            match verifier(doc) {
                Some((verifier, jwk)) => {
                    verifying.push(verifier);
                    published.push(jwk);
                }
                None => crate::store::count_unreadable(super::COLLECTION, &"a key's public half"),
            }
        }
        Ok(Keys::new(
            Some(self.signer(current)?),
            verifying,
            &published,
        ))
    }

    /// The signing key of `doc`, its private half opened.
    fn signer(&self, doc: &KeyDoc) -> Result<AccessKey, KeysError> {
        let alg = SigningAlg::from_stored(&doc.alg).ok_or(KeysError::Unreadable)?;
        let private = self.kek.open(&doc.kid, &doc.sealed.bytes)?;
        let key = match alg {
            SigningAlg::EdDSA => EncodingKey::from_ed_der(private.expose_secret()),
            _ => EncodingKey::from_ec_der(private.expose_secret()),
        };
        Ok(AccessKey {
            kid: doc.kid.clone(),
            alg,
            key,
        })
    }

    /// Reload every [`RELOAD_EVERY`] until `stop` is cancelled (the first
    /// reload is the caller's, at start).
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RELOAD_EVERY) => {}
                }
                if let Err(err) = self.reload().await {
                    tracing::error!(target: "users", error = %err,
                        "signing keys not reloaded; the last loaded keys stay in use");
                }
            }
        })
    }
}

/// The verifying key and JWK of `doc`, if its public half is what its
/// `alg` and `kid` say.
fn verifier(doc: &KeyDoc) -> Option<(Verifier, Jwk)> {
    let alg = SigningAlg::from_stored(&doc.alg)?;
    let public = &doc.public.bytes;
    let jwk = Jwk::new(alg, public).filter(|jwk| jwk.kid == doc.kid)?;
    let key = match alg {
        SigningAlg::EdDSA => DecodingKey::from_ed_der(public),
        _ => DecodingKey::from_ec_der(public),
    };
    let verifier = Verifier {
        kid: doc.kid.clone(),
        alg,
        key,
    };
    Some((verifier, jwk))
}

fn after(at: DateTime, by: Duration) -> DateTime {
    let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(at.timestamp_millis().saturating_add(millis))
}

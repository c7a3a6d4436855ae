//! JWT access and refresh tokens.
//!
//! Every token carries `sub` (user id), `email`, `sid` (the login session it
//! belongs to), `jti` (unique per token), `typ` (`access` | `refresh`), `iat`,
//! `nbf` and `exp`. Access tokens are signed as `auth.signing` says — with
//! the fleet's current signing key (EdDSA or ES256, see [`crate::users::keys`])
//! or HS256 with `auth.access_secret` — and carry its `kid`; refresh tokens,
//! which only this service ever reads, are HS256 with `auth.refresh_secret`.
//! Verification takes the key by the token's `kid` and accepts only that
//! key's algorithm (so `alg: none`, algorithm switching, an unknown or
//! retired `kid` and a token of the other type all fail), checks `exp` and
//! `nbf` with no leeway, and checks `typ`.
//!
//! A refresh answers the *successor* of the presented token
//! ([`Tokens::issue_successor`]): a pair fixed by the presented token's
//! claims and the time of its first use (`jti`s derived from its `jti`,
//! `iat` that time). HS256 and Ed25519 signing are deterministic, so a retry
//! of the same refresh is answered the very same pair without any token
//! being stored (see `sessions.rs`) — unless a rotation came between, or
//! with ES256 (randomised signatures): then the access token's claims are
//! the same and its signature differs.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mongodb::bson::oid::ObjectId;

use crate::users::config::AuthConfig;
use crate::users::keys::{KeyRing, SigningAlg};
use crate::users::{UserError, UserId};

/// The `kid` of access tokens signed with `auth.access_secret` (HS256).
pub const SHARED_KID: &str = "hs256";

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

impl Claims {
    /// The user these claims name ([`UserError::InvalidToken`] if `sub` is
    /// not a user id).
    pub(crate) fn owner(&self) -> Result<ObjectId, UserError> {
        (self.sub.parse::<UserId>())
            .map(UserId::object_id)
            .map_err(|_| UserError::InvalidToken)
    }
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

/// No signing key is loaded yet (the key store has not answered since
/// start): no access token can be issued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no access-token signing key is loaded yet")]
pub struct NoSigningKey;

impl From<NoSigningKey> for crate::users::UserError {
    fn from(_: NoSigningKey) -> Self {
        Self::NoSigningKey
    }
}

/// Where access tokens' keys come from.
enum AccessKeys {
    /// HS256 with `auth.access_secret`.
    Shared(EncodingKey, DecodingKey),
    /// The fleet's keys, as last reloaded.
    Ring(KeyRing),
}

/// A refresh token whose signature, type and expiry were checked, with
/// its claims. Only [`Tokens::verify_refresh`] makes one, so a refresh can
/// never be asked for with claims that do not belong to the token. The raw
/// token travels on: the session stores a verifier of it.
pub struct RefreshToken {
    token: String,
    claims: Claims,
}

impl RefreshToken {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The token as presented.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

/// Issues and verifies tokens. Cheap to share behind an `Arc`.
pub struct Tokens {
    access: AccessKeys,
    refresh: (EncodingKey, DecodingKey),
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// One per algorithm: HS256, EdDSA, ES256.
    validations: [Validation; 3],
}

impl Tokens {
    /// Access tokens as `config.signing` says: for EdDSA and ES256, with the
    /// keys `ring` holds (filled by [`crate::users::keys::SigningKeys`]).
    pub fn new(config: &AuthConfig, ring: KeyRing) -> Self {
        let keys = |secret: &str| {
            (
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            )
        };
        let validation = |alg| {
            let mut validation = Validation::new(alg);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub"]);
            validation
        };
        let access = match config.signing {
            SigningAlg::HS256 => {
                let (encoding, decoding) = keys(config.access_secret.expose_secret());
                AccessKeys::Shared(encoding, decoding)
            }
            SigningAlg::EdDSA | SigningAlg::ES256 => AccessKeys::Ring(ring),
        };
        Self {
            access,
            refresh: keys(config.refresh_secret.expose_secret()),
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            validations: [Algorithm::HS256, Algorithm::EdDSA, Algorithm::ES256].map(validation),
        }
    }

    fn validation(&self, alg: SigningAlg) -> &Validation {
        match alg {
            SigningAlg::HS256 => &self.validations[0],
            SigningAlg::EdDSA => &self.validations[1],
            SigningAlg::ES256 => &self.validations[2],
        }
    }

    /// A new access/refresh pair for `user_id` in session `sid`.
    pub fn issue_pair(
        &self,
        user_id: &str,
        email: &str,
        sid: &str,
    ) -> Result<IssuedPair, NoSigningKey> {
        let access = self.claims(user_id, email, sid, TokenType::Access, self.access_ttl);
        let refresh = self.claims(user_id, email, sid, TokenType::Refresh, self.refresh_ttl);
        Ok(IssuedPair {
            access_token: self.sign(&access)?,
            refresh_token: self.sign(&refresh)?,
            refresh_claims: refresh,
        })
    }

    /// The pair that replaces the refresh token `parent` (for `email`),
    /// issued at `issued_at` (Unix seconds): the same for the same
    /// arguments, so a retry of one refresh is answered alike. Its `jti`s
    /// are derived from `parent`'s, which is unique, so they are too.
    pub fn issue_successor(
        &self,
        parent: &Claims,
        email: &str,
        issued_at: i64,
    ) -> Result<IssuedPair, NoSigningKey> {
        let claims = |typ, ttl: Duration| Claims {
            sub: parent.sub.clone(),
            email: email.into(),
            sid: parent.sid.clone(),
            jti: successor_jti(&parent.jti, typ),
            typ,
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + ttl.as_secs() as i64,
        };
        let access = claims(TokenType::Access, self.access_ttl);
        let refresh = claims(TokenType::Refresh, self.refresh_ttl);
        Ok(IssuedPair {
            access_token: self.sign(&access)?,
            refresh_token: self.sign(&refresh)?,
            refresh_claims: refresh,
        })
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

    /// Sign `claims` with the key of their type (an access token's
    /// header names its key: `kid`).
    pub fn sign(&self, claims: &Claims) -> Result<String, NoSigningKey> {
        let signed = match (claims.typ, &self.access) {
            (TokenType::Refresh, _) => {
                encode(&Header::new(Algorithm::HS256), claims, &self.refresh.0)
            }
            (TokenType::Access, AccessKeys::Shared(key, _)) => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(SHARED_KID.into());
                encode(&header, claims, key)
            }
            (TokenType::Access, AccessKeys::Ring(ring)) => {
                let keys = ring.current();
                let signing = keys.signing.as_ref().ok_or(NoSigningKey)?;
                let mut header = Header::new(signing.alg.jwt());
                header.kid = Some(signing.kid.clone());
                encode(&header, claims, &signing.key)
            }
        };
        // Only a key of the wrong family fails, and each is built for its own.
        Ok(signed.expect("signing with a loaded key cannot fail"))
    }

    /// Verify `token` as a token of type `expected`.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, InvalidToken> {
        let data = match (expected, &self.access) {
            (TokenType::Refresh, _) => {
                decode::<Claims>(token, &self.refresh.1, self.validation(SigningAlg::HS256))
            }
            (TokenType::Access, AccessKeys::Shared(_, key)) => {
                // Tokens issued before access tokens carried a `kid` have none.
                let kid = jsonwebtoken::decode_header(token)
                    .map_err(|_| InvalidToken)?
                    .kid;
                if kid.is_some_and(|kid| kid != SHARED_KID) {
                    return Err(InvalidToken);
                }
                decode::<Claims>(token, key, self.validation(SigningAlg::HS256))
            }
            (TokenType::Access, AccessKeys::Ring(ring)) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken)?;
                let kid = header.kid.ok_or(InvalidToken)?;
                let keys = ring.current();
                let verifier = keys.verifier(&kid).ok_or(InvalidToken)?;
                decode::<Claims>(token, &verifier.key, self.validation(verifier.alg))
            }
        }
        .map_err(|_| InvalidToken)?;
        if data.claims.typ != expected {
            return Err(InvalidToken);
        }
        Ok(data.claims)
    }

    /// The JWKS (RFC 7517) of the access tokens' verifying keys; with
    /// HS256 an empty set (a shared secret is never published).
    pub fn jwks(&self) -> Arc<str> {
        match &self.access {
            AccessKeys::Shared(..) => Arc::from(r#"{"keys":[]}"#),
            AccessKeys::Ring(ring) => ring.jwks(),
        }
    }

    /// Verify `token` as a refresh token.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshToken, InvalidToken> {
        let claims = self.verify(token, TokenType::Refresh)?;
        Ok(RefreshToken {
            token: token.to_owned(),
            claims,
        })
    }
}

/// The `jti` of the token of type `typ` that succeeds the refresh token
/// `parent_jti`: 128 bits of SHA-256, hex (as long as a random one). Not
/// secret (a JWT's claims are readable); what makes a token is its
/// signature.
fn successor_jti(parent_jti: &str, typ: TokenType) -> String {
    let label: &[u8] = match typ {
        TokenType::Access => b"troupe/successor/access\0",
        TokenType::Refresh => b"troupe/successor/refresh\0",
    };
    let digest = Sha256::new()
        .chain_update(label)
        .chain_update(parent_jti.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// The stored verifier of a refresh token: SHA-256 over the *whole* token.
///
/// A refresh token is a signed, high-entropy value, so a fast hash is the
/// right tool (a slow password hash buys nothing). bcrypt would be wrong:
/// it reads only 72 bytes, and every JWT of one user shares its first 72.
pub fn verifier(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn config(access: &str, refresh: &str) -> AuthConfig {
        AuthConfig {
            access_secret: SecretString::from(access),
            refresh_secret: SecretString::from(refresh),
            // A day: what the lifetimes asserted below add up to.
            refresh_ttl: Duration::from_secs(86_400),
            signing: SigningAlg::HS256,
            ..crate::users::config::sample()
        }
    }

    fn tokens() -> Tokens {
        Tokens::new(
            &config("a".repeat(32).as_str(), "r".repeat(32).as_str()),
            KeyRing::default(),
        )
    }

    #[test]
    fn an_issued_pair_verifies_as_issued() {
        let tokens = tokens();
        let pair = tokens
            .issue_pair("65f1c0ffee0000000000beef", "ada@example.com", "s1")
            .unwrap();
        let access = tokens
            .verify(&pair.access_token, TokenType::Access)
            .unwrap();
        let refresh = tokens.verify_refresh(&pair.refresh_token).unwrap();
        for claims in [&access, refresh.claims()] {
            assert_eq!(claims.sub, "65f1c0ffee0000000000beef");
            assert_eq!(claims.email, "ada@example.com");
            assert_eq!(claims.sid, "s1");
        }
        assert_eq!(access.typ, TokenType::Access);
        assert_eq!(refresh.claims().jti, pair.refresh_claims.jti);
        assert_ne!(access.jti, refresh.claims().jti);
        assert_eq!(refresh.token(), pair.refresh_token);
        assert_eq!(format!("{refresh:?}"), "RefreshToken([REDACTED])");
    }

    #[test]
    fn a_token_of_the_other_type_is_refused() {
        let tokens = tokens();
        let pair = tokens.issue_pair("u", "e@x.co", "s").unwrap();
        assert_eq!(
            tokens
                .verify(&pair.refresh_token, TokenType::Access)
                .unwrap_err(),
            InvalidToken
        );
        assert!(tokens.verify_refresh(&pair.access_token).is_err());
        // Even signed with the right key, a claim of the wrong type fails.
        let mut claims = pair.refresh_claims.clone();
        claims.typ = TokenType::Access;
        let forged = encode(&Header::new(Algorithm::HS256), &claims, &tokens.refresh.0).unwrap();
        assert!(tokens.verify_refresh(&forged).is_err());
    }

    #[test]
    fn another_key_an_expired_token_and_alg_none_are_refused() {
        let tokens = tokens();
        let other = Tokens::new(
            &config("b".repeat(32).as_str(), "s".repeat(32).as_str()),
            KeyRing::default(),
        );
        let pair = other.issue_pair("u", "e@x.co", "s").unwrap();
        assert!(tokens
            .verify(&pair.access_token, TokenType::Access)
            .is_err());

        let mut expired = tokens
            .issue_pair("u", "e@x.co", "s")
            .unwrap()
            .refresh_claims;
        expired.exp = chrono::Utc::now().timestamp() - 1;
        assert!(tokens
            .verify_refresh(&tokens.sign(&expired).unwrap())
            .is_err());

        // A valid token's claims under an unsigned `alg: none` header.
        let valid = tokens.issue_pair("u", "e@x.co", "s").unwrap().refresh_token;
        let payload = valid.split('.').nth(1).unwrap();
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        assert!(tokens
            .verify_refresh(&format!("{none}.{payload}."))
            .is_err());
        assert!(tokens.verify_refresh(&valid).is_ok());
    }

    #[test]
    fn a_successor_is_the_same_for_the_same_parent_and_time() {
        let tokens = tokens();
        let parent = tokens
            .issue_pair("u", "e@x.co", "s1")
            .unwrap()
            .refresh_claims;
        let at = chrono::Utc::now().timestamp() - 2;
        let first = tokens.issue_successor(&parent, "e@x.co", at).unwrap();
        let again = tokens.issue_successor(&parent, "e@x.co", at).unwrap();
        assert_eq!(first.access_token, again.access_token);
        assert_eq!(first.refresh_token, again.refresh_token);
        // It verifies, in the parent's session, with fresh jtis.
        let refresh = tokens.verify_refresh(&first.refresh_token).unwrap();
        let access = tokens
            .verify(&first.access_token, TokenType::Access)
            .unwrap();
        for claims in [refresh.claims(), &access] {
            assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u", "s1"));
            assert_eq!(claims.iat, at);
            assert_ne!(claims.jti, parent.jti);
        }
        assert_ne!(access.jti, refresh.claims().jti);
        assert_eq!(refresh.claims().exp, at + 86_400);
        assert_eq!(access.exp, at + 900);
    }

    #[test]
    fn successors_differ_by_parent_and_time_and_chain_uniquely() {
        let tokens = tokens();
        let parent = tokens
            .issue_pair("u", "e@x.co", "s")
            .unwrap()
            .refresh_claims;
        let other = tokens
            .issue_pair("u", "e@x.co", "s")
            .unwrap()
            .refresh_claims;
        let at = chrono::Utc::now().timestamp();
        let first = tokens.issue_successor(&parent, "e@x.co", at).unwrap();
        assert_ne!(
            first.refresh_token,
            tokens
                .issue_successor(&other, "e@x.co", at)
                .unwrap()
                .refresh_token
        );
        assert_ne!(
            first.refresh_token,
            tokens
                .issue_successor(&parent, "e@x.co", at - 1)
                .unwrap()
                .refresh_token
        );
        // Each generation's jti is new: a chain never repeats one.
        let mut jtis = std::collections::HashSet::from([parent.jti.clone()]);
        let mut claims = parent;
        for _ in 0..50 {
            claims = tokens
                .issue_successor(&claims, "e@x.co", at)
                .unwrap()
                .refresh_claims;
            assert_eq!(claims.jti.len(), 32);
            assert!(jtis.insert(claims.jti.clone()), "{}", claims.jti);
        }
    }

    #[test]
    fn ring_signed_access_tokens_name_their_key_and_need_it_loaded() {
        use crate::users::keys::material::{generate, Jwk};
        use crate::users::keys::{AccessKey, Keys, Verifier};
        let config = AuthConfig {
            signing: SigningAlg::EdDSA,
            ..crate::users::config::sample()
        };
        let ring = KeyRing::default();
        let tokens = Tokens::new(&config, ring.clone());
        // Nothing loaded: nothing issued, nothing verifies.
        assert_eq!(
            tokens.issue_pair("u", "e@x.co", "s").err(),
            Some(NoSigningKey)
        );
        let key = generate(SigningAlg::EdDSA).unwrap();
        let jwk = Jwk::new(SigningAlg::EdDSA, &key.public).unwrap();
        let signing = AccessKey {
            kid: jwk.kid.clone(),
            alg: SigningAlg::EdDSA,
            key: EncodingKey::from_ed_der(key.private.expose_secret()),
        };
        let verifier = Verifier {
            kid: jwk.kid.clone(),
            alg: SigningAlg::EdDSA,
            key: DecodingKey::from_ed_der(&key.public),
        };
        ring.install(Keys::new(
            Some(signing),
            vec![verifier],
            std::slice::from_ref(&jwk),
        ));
        let pair = tokens.issue_pair("u", "e@x.co", "s").unwrap();
        let header = jsonwebtoken::decode_header(&pair.access_token).unwrap();
        assert_eq!((header.alg, header.kid), (Algorithm::EdDSA, Some(jwk.kid)));
        tokens
            .verify(&pair.access_token, TokenType::Access)
            .unwrap();
        // The refresh token is still HS256 with the refresh secret.
        let refresh = jsonwebtoken::decode_header(&pair.refresh_token).unwrap();
        assert_eq!((refresh.alg, refresh.kid), (Algorithm::HS256, None));
        // Its key dropped from the ring: refused.
        ring.install(Keys::default());
        assert_eq!(
            tokens
                .verify(&pair.access_token, TokenType::Access)
                .unwrap_err(),
            InvalidToken
        );
    }

    #[test]
    fn the_verifier_is_a_sha256_of_the_whole_token() {
        let a = verifier("header.payload.signature-a");
        assert_eq!(a.len(), 64);
        assert_ne!(a, verifier("header.payload.signature-b"));
        assert_eq!(a, verifier("header.payload.signature-a"));
    }
}

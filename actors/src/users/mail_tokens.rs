//! Single-use tokens sent by e-mail: resetting a password
//! ([`Purpose::Reset`]) and proving an address ([`Purpose::Verify`]).
//!
//! - **Made from a seed.** A token is `HMAC-SHA-256(key, purpose ‖ seed)`
//!   in base64url (43 characters, 256 bits), `seed` 128 random bits and
//!   `key` derived from `auth.refresh_secret` under a label of its own. The
//!   job that mails the token carries the *seed* only, so neither the jobs
//!   collection nor `GET /jobs` shows a usable token: making it takes the
//!   server secret. (Rotating that secret spoils the tokens of mails not yet
//!   sent; the owner asks again.)
//! - **Stored only as a hash.** `mail_tokens._id` is the token's SHA-256
//!   (hex) — a 256-bit random value needs no slow hash — with its purpose,
//!   user, the address it was mailed to and its expiry.
//! - **Redeemed exactly once**, without transactions: a unique-key insert
//!   of the hash into `mail_token_uses` (atomic on MongoDB and FerretDB
//!   alike) decides which of several concurrent redemptions is the one; the
//!   token's record is then deleted, so a replay finds nothing.
//! - Expired records of both collections are deleted by the UserActor's
//!   periodic prune ([`MailTokens::prune`]); a record met past its expiry
//!   is refused whether or not it was pruned yet.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::{Collection, Database};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::store::is_duplicate_key;

/// What a token is for: a token of one purpose is no token of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Reset,
    Verify,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Verify => "verify",
        }
    }
}

/// The length of a token: base64url of 32 bytes.
pub const TOKEN_LEN: usize = 43;

/// The label the tokens' key is derived under from `auth.refresh_secret`.
const LABEL: &[u8] = b"troupe/mail-tokens/v1";

/// Why no token could be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the system's random source failed")]
    Random,
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
}

/// A live token found by its hash: whose it is and where it was mailed.
#[derive(Debug, Clone)]
pub struct Found {
    hash: String,
    pub user_id: ObjectId,
    pub email: String,
}

/// The key tokens are made with. Debug shows nothing.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([REDACTED])")
    }
}

impl TokenKey {
    /// The key under `secret` (`auth.refresh_secret`).
    pub fn new(secret: &SecretString) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// The token a mail job's `seed` stands for.
    pub fn token(&self, purpose: Purpose, seed: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("32-byte key");
        mac.update(purpose.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(seed.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// The tokens' key and collections.
#[derive(Clone, Debug)]
pub struct MailTokens {
    key: TokenKey,
    tokens: Collection<Document>,
    uses: Collection<Document>,
}

/// 128 random bits, in hex: a token's seed.
pub fn new_seed() -> Result<String, IssueError> {
    let mut seed = [0u8; 16];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| IssueError::Random)?;
    Ok(hex::encode(seed))
}

/// The hex SHA-256 of `token`: what is stored.
fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has a token's shape (43 base64url characters): anything
/// else is refused without a read.
fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl MailTokens {
    /// The tokens under `secret` (`auth.refresh_secret`), stored in `db`.
    pub fn new(db: &Database, secret: &SecretString) -> Self {
        Self {
            key: TokenKey::new(secret),
            tokens: db.collection("mail_tokens"),
            uses: db.collection("mail_token_uses"),
        }
    }

    /// The token a mail job's `seed` stands for.
    pub fn token(&self, purpose: Purpose, seed: &str) -> String {
        self.key.token(purpose, seed)
    }

    /// A new token for `user` at `email`, live for `ttl` from `now`: stores
    /// its hash and answers its seed (for the mail job's payload).
    pub async fn issue(
        &self,
        purpose: Purpose,
        (user, email): (ObjectId, &str),
        ttl: Duration,
        now: DateTime,
    ) -> Result<String, IssueError> {
        let seed = new_seed()?;
        self.store(purpose, &seed, (user, email), (ttl, now))
            .await?;
        Ok(seed)
    }

    /// Store the token of `seed` (see [`Self::issue`]; for a caller that
    /// writes the mail job at the same time).
    pub(crate) async fn store(
        &self,
        purpose: Purpose,
        seed: &str,
        (user, email): (ObjectId, &str),
        (ttl, now): (Duration, DateTime),
    ) -> mongodb::error::Result<()> {
        let expires = DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        self.tokens
            .insert_one(doc! {
                "_id": hash(&self.token(purpose, seed)),
                "purpose": purpose.as_str(),
                "userId": user,
                "email": email,
                "createdAt": now,
                "expiresAt": expires,
            })
            .await?;
        Ok(())
    }

    /// The live token `token` of `purpose` (`None`: malformed, unknown,
    /// another purpose's, used or expired — indistinguishable). Redeems
    /// nothing: see [`Self::redeem`].
    pub(crate) async fn find(
        &self,
        purpose: Purpose,
        token: &str,
        now: DateTime,
    ) -> mongodb::error::Result<Option<Found>> {
        if !well_formed(token) {
            return Ok(None);
        }
        let hash = hash(token);
        let filter = doc! { "_id": &hash, "purpose": purpose.as_str() };
        let Some(record) = self.tokens.find_one(filter).await? else {
            return Ok(None);
        };
        let live = record
            .get_datetime("expiresAt")
            .is_ok_and(|expires| *expires > now);
        let (Ok(user_id), Ok(email), true) = (
            record.get_object_id("userId"),
            record.get_str("email"),
            live,
        ) else {
            return Ok(None);
        };
        Ok(Some(Found {
            hash,
            user_id,
            email: email.to_owned(),
        }))
    }

    /// Use `found` up: `true` for exactly one caller however many race
    /// (the unique insert of its hash), `false` for every other.
    pub(crate) async fn redeem(
        &self,
        found: &Found,
        now: DateTime,
    ) -> mongodb::error::Result<bool> {
        let record = doc! { "_id": &found.hash, "usedAt": now };
        match self.uses.insert_one(record).await {
            Ok(_) => {}
            Err(err) if is_duplicate_key(&err) => return Ok(false),
            Err(err) => return Err(err),
        }
        self.tokens.delete_one(doc! { "_id": &found.hash }).await?;
        Ok(true)
    }

    /// Forget every live token of `purpose` for `user` (a reset spends the
    /// user's other reset tokens too).
    pub(crate) async fn forget(
        &self,
        purpose: Purpose,
        user: ObjectId,
    ) -> mongodb::error::Result<u64> {
        let filter = doc! { "purpose": purpose.as_str(), "userId": user };
        Ok(self.tokens.delete_many(filter).await?.deleted_count)
    }

    /// Delete expired tokens, and use records older than `keep` (by then
    /// their token expired: nothing can be replayed against them).
    pub(crate) async fn prune(&self, now: DateTime, keep: Duration) -> mongodb::error::Result<u64> {
        let expired = self
            .tokens
            .delete_many(doc! { "expiresAt": { "$lte": now } })
            .await?;
        let before = DateTime::from_millis(now.timestamp_millis() - keep.as_millis() as i64);
        let used = self
            .uses
            .delete_many(doc! { "usedAt": { "$lte": before } })
            .await?;
        Ok(expired.deleted_count + used.deleted_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> TokenKey {
        TokenKey::new(&SecretString::from(secret))
    }

    #[test]
    fn a_token_is_43_base64url_characters_made_from_its_seed_and_purpose() {
        let t = tokens("s".repeat(32).as_str());
        let token = t.token(Purpose::Reset, "00112233445566778899aabbccddeeff");
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(well_formed(&token));
        assert_eq!(
            t.token(Purpose::Reset, "00112233445566778899aabbccddeeff"),
            token
        );
        assert_ne!(
            t.token(Purpose::Verify, "00112233445566778899aabbccddeeff"),
            token,
            "one purpose's token is no token of the other"
        );
        assert_ne!(
            tokens("another secret").token(Purpose::Reset, "00112233445566778899aabbccddeeff"),
            token,
            "no token without the server secret"
        );
    }

    #[test]
    fn only_a_token_shape_is_looked_up() {
        assert!(!well_formed(""));
        assert!(!well_formed(&"a".repeat(42)));
        assert!(!well_formed(&"a".repeat(44)));
        assert!(!well_formed(&format!("{}=", "a".repeat(42))));
        assert!(!well_formed(&format!("{}é", "a".repeat(41))));
        assert!(well_formed(&format!("{}-_", "a".repeat(41))));
    }

    #[test]
    fn the_stored_id_is_the_sha256_of_the_token_and_debug_shows_no_key() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{:?}", tokens("x")), "TokenKey([REDACTED])");
    }
}

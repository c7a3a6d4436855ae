//! Idempotent sign-up: the `Idempotency-Key` request header (IETF httpapi
//! draft "The Idempotency-Key HTTP Header Field").
//!
//! A sign-up answered 503 (the handler stopped waiting) may still have been
//! committed; its retry must get the sign-up's outcome, not 409 for its own
//! account. FerretDB has no transactions, and a unique-key insert is the one
//! atomic primitive both servers share, so each keyed sign-up first inserts a
//! [`KeyRecord`] — `_id` its [`RequestScope::record_id`], and the user id
//! the sign-up *will* use, chosen before the user exists. Whoever inserts it
//! runs the sign-up with that id; every later request with the same key and
//! body finds the record and is answered from it (see
//! `UserService::signup_with_key` in `signup.rs`):
//! - the user exists → a new session is opened → 201. Tokens are never
//!   stored: the retry gets a fresh pair for the same account;
//! - the user does not exist yet → the first request is still running: wait
//!   for it (bounded), then 409 "in progress", or — once the record is older
//!   than the actor-call timeout, so the first request has been answered
//!   (503) and may have died — take the sign-up over with the same user id.
//!   The users' unique `_id` lets only one of several takers (or the late
//!   original) create it; the others find it and answer as a replay.
//!
//! **A key is scoped to its request.** The record's id covers the key *and*
//! the canonical body (e-mail, name, age, password), so the same key with
//! another body is simply another request: whoever guesses or sees a key
//! cannot use it first and so block the real sign-up (the draft's 422 for a
//! reused key would be exactly that block, since sign-up is anonymous and
//! the server cannot tell whose key it is). A retry replays from any client
//! address. The id is an HMAC-SHA-256 under a key derived from
//! `auth.refresh_secret`, never a fast unkeyed hash: without the server
//! secret a stored id is useless for guessing the password offline. Rotating
//! that secret forgets the live keys (a retry then signs up afresh, and gets
//! 409 if its account exists). No token is kept.
//!
//! Records expire after `auth.idempotency.ttl`. FerretDB has no TTL index, so
//! expired records are removed lazily (a request that meets one deletes it
//! and starts afresh) and by a periodic prune run by the UserActor. Records
//! are only made by keyed sign-ups that get past validation (a failed one
//! deletes its record), so the collection holds at most the keyed sign-ups of
//! one `ttl + prune_interval`, which the sign-up limit per address bounds.

use std::time::Duration;

use hmac::{Hmac, Mac};
use mongodb::bson::{doc, oid::ObjectId, DateTime};
use mongodb::Collection;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::store::{ensure_indexes, index, is_duplicate_key};
use crate::users::model::NewUser;
use crate::users::UserError;
use crate::validate::{ConfigErrors, Validate};

pub const COLLECTION: &str = "signup_idempotency";
/// The request header's name.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// `[auth.idempotency]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencyConfig {
    /// How long a key is remembered.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often expired records are deleted.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

/// The header's value is not a key we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
pub struct KeyError;

/// A client's idempotency key; only an HMAC of it (with its request) is
/// ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1 to 255 visible ASCII characters (`!` to `~`), taken as an opaque
    /// string: the draft's quoted form `"…"` works as long as it is sent the
    /// same way each time.
    pub fn parse(value: &[u8]) -> Result<Self, KeyError> {
        let visible = value.iter().all(|b| (b'!'..=b'~').contains(b));
        if value.is_empty() || value.len() > MAX_KEY_LEN || !visible {
            return Err(KeyError);
        }
        Ok(Self(String::from_utf8_lossy(value).into_owned()))
    }
}

/// Keys are not secrets, but they are the client's: keep them out of logs.
impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(..)")
    }
}

/// What scopes a key to its request: an HMAC-SHA-256 key derived from a
/// server secret. Debug is redacted.
#[derive(Clone)]
pub struct RequestScope {
    key: [u8; 32],
}

/// The label the scope's key is derived under: the secret also signs
/// refresh tokens, and a derived key keeps the two uses apart.
const SCOPE_LABEL: &[u8] = b"troupe/signup-idempotency/v1";

impl RequestScope {
    /// The scope under `secret` (`auth.refresh_secret`).
    pub fn new(secret: &SecretString) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(SCOPE_LABEL);
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// The stored `_id` of a record for `key` with the sign-up `new`: hex
    /// HMAC over the key and the canonical body (the canonical e-mail, the
    /// trimmed name, the age and the NFKC password), each field
    /// length-prefixed so that no text can move between fields unnoticed.
    pub fn record_id(&self, key: &IdempotencyKey, new: &NewUser) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("32-byte key");
        let age = new.age.map_or_else(Vec::new, |a| vec![a]);
        let fields: [&[u8]; 5] = [
            key.0.as_bytes(),
            new.email.as_str().as_bytes(),
            new.name.as_bytes(),
            &age,
            new.password.expose().as_bytes(),
        ];
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestScope([REDACTED])")
    }
}

/// One keyed request's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// [`RequestScope::record_id`] of the key and the body.
    #[serde(rename = "_id")]
    pub id: String,
    /// The id the sign-up creates its user with.
    pub user_id: ObjectId,
    pub created_at: DateTime,
}

impl KeyRecord {
    /// A new record with the id `id` ([`RequestScope::record_id`]).
    pub fn new(id: String) -> Self {
        Self {
            id,
            user_id: ObjectId::new(),
            created_at: DateTime::now(),
        }
    }

    /// How old the record is at `now` (zero if the clocks disagree).
    pub fn age(&self, now: DateTime) -> Duration {
        let millis = now.timestamp_millis() - self.created_at.timestamp_millis();
        Duration::from_millis(millis.max(0) as u64)
    }

    /// Whether the record is past its lifetime `ttl` at `now`: no answer
    /// for anyone, to be deleted.
    pub fn expired(&self, now: DateTime, ttl: Duration) -> bool {
        self.age(now) >= ttl
    }
}

/// The records, in MongoDB.
#[derive(Clone)]
pub struct KeyStore {
    records: Collection<KeyRecord>,
}

impl KeyStore {
    pub fn new(db: &mongodb::Database) -> Self {
        Self {
            records: db.collection(COLLECTION),
        }
    }

    /// `createdAt`, for the prune.
    pub(crate) async fn ensure_indexes(db: &mongodb::Database) -> mongodb::error::Result<()> {
        ensure_indexes(
            &db.collection(COLLECTION),
            vec![index(doc! { "createdAt": 1 }, false)],
        )
        .await
    }

    /// Insert `record`: [`Reservation::Held`] if this request now holds the
    /// key, else the record that holds it.
    pub async fn reserve(&self, record: &KeyRecord) -> Result<Reservation, UserError> {
        match self.records.insert_one(record).await {
            Ok(_) => Ok(Reservation::Held),
            Err(err) if is_duplicate_key(&err) => {
                let existing = self.records.find_one(doc! { "_id": &record.id });
                let existing = existing.await.map_err(UserError::store)?;
                Ok(existing.map_or(Reservation::Vanished, Reservation::Taken))
            }
            Err(err) => Err(UserError::store(err)),
        }
    }

    /// Delete `record` if it is still the same one (not a newer record for
    /// the same key made after it was deleted by someone else).
    pub async fn remove(&self, record: &KeyRecord) -> Result<(), UserError> {
        self.records
            .delete_one(doc! {
                "_id": &record.id,
                "userId": record.user_id,
                "createdAt": record.created_at,
            })
            .await
            .map_err(UserError::store)?;
        Ok(())
    }

    /// Delete every record older than `ttl`; how many went.
    pub async fn prune(&self, ttl: Duration) -> Result<u64, UserError> {
        let cutoff = DateTime::from_millis(
            DateTime::now().timestamp_millis() - ttl.as_millis().min(i64::MAX as u128) as i64,
        );
        let deleted = self
            .records
            .delete_many(doc! { "createdAt": { "$lt": cutoff } })
            .await
            .map_err(UserError::store)?;
        Ok(deleted.deleted_count)
    }
}

/// The outcome of [`KeyStore::reserve`].
#[derive(Debug)]
pub enum Reservation {
    /// This request inserted the record: it runs the sign-up.
    Held,
    /// Another request's record.
    Taken(KeyRecord),
    /// The record was deleted between the insert and the read.
    Vanished,
}

/// Expired records are deleted at a positive interval. (That a key outlives
/// the call timeout is the system's rule: see `SystemConfig`.)
impl Validate for IdempotencyConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            !self.prune_interval.is_zero(),
            "prune_interval",
            "must be positive",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_visible_ascii_characters() {
        for good in [
            &b"a"[..],
            b"8e03978e-40d5-43e8-bc93-6894a57f9324",
            b"\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
            b"!~",
            &[b'k'; 255],
        ] {
            assert!(IdempotencyKey::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            b"caf\xc3\xa9",
            b"nul\0",
            b"\x7f",
            &[b'k'; 256],
        ] {
            assert_eq!(IdempotencyKey::parse(bad), Err(KeyError), "{bad:?}");
        }
    }

    fn scope(secret: &str) -> RequestScope {
        RequestScope::new(&SecretString::from(secret))
    }

    fn signup(email: &str, name: &str, age: Option<u8>, password: &str) -> NewUser {
        NewUser {
            name: name.into(),
            email: crate::users::email::Email::parse(email).unwrap(),
            password: crate::users::password::Password::new(password).unwrap(),
            age,
            // Not part of the scope: a retry may come from elsewhere.
            client: crate::users::model::Client::new([127, 0, 0, 1].into(), None),
        }
    }

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::parse(k.as_bytes()).unwrap()
    }

    #[test]
    fn a_record_id_is_stable_and_names_neither_key_nor_body() {
        let s = scope("server secret");
        let ada = signup("ada@b.co", "Ada", Some(36), "correct horse");
        let id = s.record_id(&key("my-key"), &ada);
        assert_eq!(id, s.record_id(&key("my-key"), &ada.clone()));
        assert_eq!(id.len(), 64);
        for shown in ["my-key", "ada", "Ada", "correct"] {
            assert!(!id.contains(shown), "{id}");
        }
        assert_eq!(format!("{s:?}"), "RequestScope([REDACTED])");
        assert_eq!(format!("{:?}", key("k")), "IdempotencyKey(..)");
    }

    #[test]
    fn a_record_id_differs_for_any_field_the_key_and_the_secret() {
        let s = scope("server secret");
        let k = key("my-key");
        let base = s.record_id(&k, &signup("a@b.co", "Ada", Some(36), "correct horse"));
        for other in [
            s.record_id(
                &key("my-kez"),
                &signup("a@b.co", "Ada", Some(36), "correct horse"),
            ),
            s.record_id(&k, &signup("a@b.com", "Ada", Some(36), "correct horse")),
            s.record_id(&k, &signup("a@b.co", "Adb", Some(36), "correct horse")),
            s.record_id(&k, &signup("a@b.co", "Ada", Some(37), "correct horse")),
            s.record_id(&k, &signup("a@b.co", "Ada", None, "correct horse")),
            s.record_id(&k, &signup("a@b.co", "Ada", Some(36), "correct horsf")),
            // Keyed: another server secret gives another id, so a stored id
            // cannot be checked against guessed passwords without it.
            scope("another secret")
                .record_id(&k, &signup("a@b.co", "Ada", Some(36), "correct horse")),
        ] {
            assert_ne!(base, other);
        }
        // Field boundaries are kept: moving text between fields changes it.
        assert_ne!(
            s.record_id(&key("ab"), &signup("c@d.co", "Ada", None, "password1")),
            s.record_id(&key("a"), &signup("c@d.co", "bAda", None, "password1")),
        );
        assert_ne!(
            s.record_id(&k, &signup("c@d.co", "Ada", Some(1), "password1")),
            s.record_id(&k, &signup("c@d.co", "Ada", None, "\u{1}password1")),
        );
    }

    fn record_aged(age_ms: i64) -> (KeyRecord, DateTime) {
        let mut record = KeyRecord::new("id".into());
        let now = DateTime::now();
        record.created_at = DateTime::from_millis(now.timestamp_millis() - age_ms);
        (record, now)
    }

    #[test]
    fn a_record_expires_at_its_ttl() {
        let ttl = Duration::from_secs(3600);
        let expired = |age_ms| {
            let (record, now) = record_aged(age_ms);
            record.expired(now, ttl)
        };
        assert!(!expired(100));
        assert!(!expired(3_599_999));
        assert!(expired(3_600_000));
    }

    #[test]
    fn age_is_never_negative() {
        let (record, now) = record_aged(1_500);
        assert_eq!(record.age(now), Duration::from_millis(1_500));
        // A record from the future (clock skew between instances) is new.
        let (record, now) = record_aged(-10_000);
        assert_eq!(record.age(now), Duration::ZERO);
    }

    #[test]
    fn idempotency_records_are_pruned_at_a_positive_interval() {
        use crate::validate::refused_after;
        let valid = IdempotencyConfig {
            ttl: Duration::from_secs(86_400),
            prune_interval: Duration::from_secs(3_600),
        };
        assert!(refused_after(valid.clone(), |_| {}).is_empty());
        assert_eq!(
            refused_after(valid, |c| c.prune_interval = Duration::ZERO),
            ["prune_interval"]
        );
    }
}

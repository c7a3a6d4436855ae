//! Idempotent sign-up: the `Idempotency-Key` request header (IETF httpapi
//! draft "The Idempotency-Key HTTP Header Field").
//!
//! A sign-up answered 503 (the handler stopped waiting) may still have been
//! committed; its retry must get the sign-up's outcome, not 409 for its own
//! account. FerretDB has no transactions, and a unique-key insert is the one
//! atomic primitive both servers share, so each keyed sign-up first inserts a
//! [`KeyRecord`] — `_id` the SHA-256 of the key, the fingerprint of the body,
//! and the user id the sign-up *will* use, chosen before the user exists.
//! Whoever inserts it runs the sign-up with that id; every later request
//! with the key finds the record and is answered from it (see
//! [`KeyRecord::assess`] and `UserService::signup_with_key` in `signup.rs`):
//! - another body (fingerprint) → 422;
//! - the user exists → the password is checked with bcrypt against it
//!   (mismatch: another body, 422) and a new session opened → 201. Tokens
//!   are never stored: the retry gets a fresh pair for the same account;
//! - the user does not exist yet → the first request is still running: wait
//!   for it (bounded), then 409 "in progress", or — once the record is older
//!   than the actor-call timeout, so the first request has been answered
//!   (503) and may have died — take the sign-up over with the same user id.
//!   The users' unique `_id` lets only one of several takers (or the late
//!   original) create it; the others find it and answer as a replay.
//!
//! No token and no fast hash of the password is kept: the fingerprint covers
//! the canonical e-mail, the name and the age only.
//!
//! Records expire after `auth.idempotency.ttl`. FerretDB has no TTL index, so
//! expired records are removed lazily (a request that meets one deletes it
//! and starts afresh) and by a periodic prune run by the UserActor. Records
//! are only made by keyed sign-ups that get past validation (a failed one
//! deletes its record), so the collection holds at most the keyed sign-ups of
//! one `ttl + prune_interval`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use mongodb::Collection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{ensure_indexes, index, is_duplicate_key};

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

/// A client's idempotency key; only its SHA-256 is ever stored.
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

    /// The stored `_id`: SHA-256 of the key, hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

/// Keys are not secrets, but they are the client's: keep them out of logs.
impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(..)")
    }
}

/// SHA-256 over the canonical sign-up fields other than the password, as an
/// unambiguous JSON array (`["a@b.co","Ada",36]`).
pub fn fingerprint(email: &str, name: &str, age: Option<u8>) -> String {
    let canonical = serde_json::to_vec(&(email, name, age)).expect("strings and a number");
    hex::encode(Sha256::digest(canonical))
}

/// One key's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// SHA-256 of the key.
    #[serde(rename = "_id")]
    pub id: String,
    pub fingerprint: String,
    /// The id the sign-up creates its user with.
    pub user_id: ObjectId,
    pub created_at: DateTime,
}

/// What a request must do about a record it found for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// Past its lifetime: delete it and start afresh.
    Expired,
    /// The key was used with another body: 422.
    OtherBody,
    /// The same sign-up: answer from its user (or take it over once
    /// [`KeyRecord::age`] passes the actor-call timeout).
    SameBody,
}

impl KeyRecord {
    pub fn new(key: &IdempotencyKey, fingerprint: String) -> Self {
        Self {
            id: key.digest(),
            fingerprint,
            user_id: ObjectId::new(),
            created_at: DateTime::now(),
        }
    }

    /// How old the record is at `now` (zero if the clocks disagree).
    pub fn age(&self, now: DateTime) -> Duration {
        let millis = now.timestamp_millis() - self.created_at.timestamp_millis();
        Duration::from_millis(millis.max(0) as u64)
    }

    /// What a request with `fingerprint` must do about this record at `now`.
    pub fn assess(&self, fingerprint: &str, now: DateTime, ttl: Duration) -> Assessment {
        if self.age(now) >= ttl {
            Assessment::Expired
        } else if self.fingerprint != fingerprint {
            Assessment::OtherBody
        } else {
            Assessment::SameBody
        }
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
    pub async fn ensure_indexes(db: &mongodb::Database) -> mongodb::error::Result<()> {
        ensure_indexes(
            &db.collection(COLLECTION),
            vec![index(doc! { "createdAt": 1 }, false)],
        )
        .await
    }

    /// Insert `record`: [`Reservation::Held`] if this request now holds the
    /// key, else the record that holds it.
    pub async fn reserve(&self, record: &KeyRecord) -> mongodb::error::Result<Reservation> {
        match self.records.insert_one(record).await {
            Ok(_) => Ok(Reservation::Held),
            Err(err) if is_duplicate_key(&err) => {
                let existing = self.records.find_one(doc! { "_id": &record.id }).await?;
                Ok(existing.map_or(Reservation::Vanished, Reservation::Taken))
            }
            Err(err) => Err(err),
        }
    }

    /// Delete `record` if it is still the same one (not a newer record for
    /// the same key made after it was deleted by someone else).
    pub async fn remove(&self, record: &KeyRecord) -> mongodb::error::Result<()> {
        self.records
            .delete_one(doc! {
                "_id": &record.id,
                "userId": record.user_id,
                "createdAt": record.created_at,
            })
            .await?;
        Ok(())
    }

    /// Delete every record older than `ttl`; how many went.
    pub async fn prune(&self, ttl: Duration) -> mongodb::error::Result<u64> {
        let cutoff = DateTime::from_millis(
            DateTime::now().timestamp_millis() - ttl.as_millis().min(i64::MAX as u128) as i64,
        );
        let deleted = self
            .records
            .delete_many(doc! { "createdAt": { "$lt": cutoff } })
            .await?;
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

    #[test]
    fn only_the_digest_of_a_key_is_stored_and_it_is_stable() {
        let key = IdempotencyKey::parse(b"my-key").unwrap();
        assert_eq!(
            key.digest(),
            IdempotencyKey::parse(b"my-key").unwrap().digest()
        );
        assert_eq!(key.digest().len(), 64);
        assert!(!key.digest().contains("my-key"));
        assert_ne!(
            key.digest(),
            IdempotencyKey::parse(b"my-kez").unwrap().digest()
        );
        assert_eq!(format!("{key:?}"), "IdempotencyKey(..)");
    }

    #[test]
    fn fingerprints_differ_for_any_field_and_cannot_be_confused() {
        let base = fingerprint("a@b.co", "Ada", Some(36));
        assert_eq!(base, fingerprint("a@b.co", "Ada", Some(36)));
        for other in [
            fingerprint("a@b.com", "Ada", Some(36)),
            fingerprint("a@b.co", "Ada ", Some(36)),
            fingerprint("a@b.co", "Ada", Some(37)),
            fingerprint("a@b.co", "Ada", None),
        ] {
            assert_ne!(base, other);
        }
        // Field boundaries are kept: moving text between fields changes it.
        assert_ne!(fingerprint("ab", "c", None), fingerprint("a", "bc", None));
    }

    fn record_aged(age_ms: i64, fingerprint: &str) -> (KeyRecord, DateTime) {
        let key = IdempotencyKey::parse(b"k").unwrap();
        let mut record = KeyRecord::new(&key, fingerprint.into());
        let now = DateTime::now();
        record.created_at = DateTime::from_millis(now.timestamp_millis() - age_ms);
        (record, now)
    }

    #[test]
    fn assessment_by_age_and_body() {
        let ttl = Duration::from_secs(3600);
        let assess = |age_ms, fp: &str| {
            let (record, now) = record_aged(age_ms, "same");
            record.assess(fp, now, ttl)
        };
        assert_eq!(assess(100, "same"), Assessment::SameBody);
        assert_eq!(assess(3_599_999, "same"), Assessment::SameBody);
        assert_eq!(assess(100, "other"), Assessment::OtherBody);
        // An expired record is no answer for anyone, whatever the body.
        assert_eq!(assess(3_600_000, "same"), Assessment::Expired);
        assert_eq!(assess(3_600_000, "other"), Assessment::Expired);
    }

    #[test]
    fn age_is_never_negative() {
        let (record, now) = record_aged(1_500, "fp");
        assert_eq!(record.age(now), Duration::from_millis(1_500));
        // A record from the future (clock skew between instances) is new.
        let (record, now) = record_aged(-10_000, "fp");
        assert_eq!(record.age(now), Duration::ZERO);
    }
}

//! The `signing_keys` collection: one document a key generation.
//!
//! Contract: `_id` is the generation (1, 2, …); a generation is created by
//! one `insert` with that `_id`, so however many instances try at once,
//! exactly one key is that generation and the others read it (MongoDB's
//! and FerretDB's unique `_id` is the arbiter; no lock, no index to make).
//! The private key is stored sealed ([`super::material::Kek`]), never in
//! the clear; the public key raw.
//!
//! Failure: a MongoDB error is [`KeysError::Store`]; a document this
//! service cannot read is skipped and counted
//! (`troupe_unreadable_documents`), never fatal.
//!
//! Shutdown: holds nothing but the collection handle.

use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::KeysError;

/// The collection's name.
pub const COLLECTION: &str = "signing_keys";

/// How many of the newest generations a reload reads: the next key (if
/// published ahead), the current one and the previous one — one spare.
const READ_NEWEST: i64 = 4;

/// One stored key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyDoc {
    #[serde(rename = "_id")]
    pub generation: i64,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    pub kid: String,
    /// The raw public key (Ed25519: 32 bytes; P-256: the uncompressed point).
    pub public: Binary,
    /// nonce ‖ ChaCha20-Poly1305(PKCS#8 private key) ‖ tag, `kid` bound.
    pub sealed: Binary,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime,
    /// When it starts signing: published (verifying) from its creation,
    /// signing from this time on.
    #[serde(rename = "activatesAt")]
    pub activates_at: DateTime,
}

/// Raw bytes as a BSON binary.
pub fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

/// The `signing_keys` collection.
#[derive(Clone)]
pub struct KeyStore {
    keys: Collection<KeyDoc>,
    raw: Collection<Document>,
}

impl KeyStore {
    pub fn new(db: &Database) -> Self {
        Self {
            keys: db.collection(COLLECTION),
            raw: db.collection(COLLECTION),
        }
    }

    /// The newest generations, newest first; unreadable ones left out.
    pub async fn newest(&self) -> Result<Vec<KeyDoc>, KeysError> {
        use futures::TryStreamExt;
        let docs: Vec<Document> = self
            .raw
            .find(doc! {})
            .sort(doc! { "_id": -1 })
            .limit(READ_NEWEST)
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| crate::store::readable::<KeyDoc>(COLLECTION, d))
            .collect())
    }

    /// Insert `key` as its generation. `Ok(false)`: another instance made
    /// that generation first (its key is the one to use).
    pub async fn create(&self, key: &KeyDoc) -> Result<bool, KeysError> {
        match self.keys.insert_one(key).await {
            Ok(_) => Ok(true),
            Err(err) if crate::store::is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

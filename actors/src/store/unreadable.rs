//! Documents the service cannot read (a foreign shape: the NestJS service's
//! before `troupe migrate`, a hand edit): skipped in lists with a warning
//! naming the id, and counted, so one of them never turns a whole list into
//! an error.

use std::sync::LazyLock;

use mongodb::bson::{Bson, Document};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::de::DeserializeOwned;

/// What to do about one: the migration that adopts the only foreign shapes
/// known (see `docs/switching-from-nestjs.md`).
pub const REMEDY: &str =
    "if it is the NestJS service's, run `troupe migrate` (migration 2 adopt-nestjs)";

/// The label of the counter: the collection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectionLabel {
    pub collection: &'static str,
}

static SKIPPED: LazyLock<Family<CollectionLabel, Counter>> = LazyLock::new(Family::default);

/// Unreadable documents skipped so far, by collection (process-wide:
/// registered on `/metrics` as `troupe_unreadable_documents`).
pub fn unreadable_documents() -> Family<CollectionLabel, Counter> {
    SKIPPED.clone()
}

/// `document` as a `T`; `None` (logged with its id, counted) if it is not
/// one.
pub fn readable<T: DeserializeOwned>(collection: &'static str, document: Document) -> Option<T> {
    let id = document.get("_id").map(Bson::to_string).unwrap_or_default();
    match mongodb::bson::from_document(document) {
        Ok(value) => Some(value),
        Err(err) => {
            SKIPPED.get_or_create(&CollectionLabel { collection }).inc();
            tracing::warn!(target: "system", collection, id = %id, error = %err,
                "unreadable document skipped; {REMEDY}");
            None
        }
    }
}

/// Count one unreadable document of `collection` met by a single-document
/// read (the caller answers its own error).
pub fn count_unreadable(collection: &'static str, why: &dyn std::fmt::Display) {
    SKIPPED.get_or_create(&CollectionLabel { collection }).inc();
    tracing::warn!(target: "system", collection, error = %why, "unreadable document; {REMEDY}");
}

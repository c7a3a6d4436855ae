//! How a handler's result is stored: as it is when every store can hold
//! it; otherwise as its JSON text (`resultJson`), so any JSON object
//! survives every store and reads back the same through the API.
//!
//! A result no store-independent check passes ([`check_payload`]: an array
//! directly inside an array, which FerretDB v1 cannot store; a key with
//! `$` or `.`; NUL in a string; deeper than 64 levels) is stored as its
//! JSON text. A result larger than [`MAX_RESULT_BYTES`] fails the attempt
//! for good, saying so.

use mongodb::bson::Document;

use crate::queue::report::document_json;
use crate::queue::spec::check_payload;

/// Largest result kept, in bytes as stored (BSON, or its JSON text).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// A result as it is stored: as it is, or as its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredResult {
    Document(Document),
    Json(String),
}

/// Why a result is not kept: stored, it would be `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the result is {size} bytes stored; at most {MAX_RESULT_BYTES} are kept")]
pub struct ResultTooLarge {
    pub size: usize,
}

impl StoredResult {
    /// How `result` is stored (see the module doc), or why it is refused.
    pub fn of(result: Document) -> Result<Self, ResultTooLarge> {
        let size = mongodb::bson::to_vec(&result).map_or(usize::MAX, |b| b.len());
        if size > MAX_RESULT_BYTES {
            return Err(ResultTooLarge { size });
        }
        if check_payload(&result).is_ok() {
            return Ok(Self::Document(result));
        }
        let json = document_json(result).to_string();
        match json.len() {
            size if size > MAX_RESULT_BYTES => Err(ResultTooLarge { size }),
            _ => Ok(Self::Json(json)),
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn a_storable_result_stays_a_document_and_any_other_becomes_its_json() {
        let plain = doc! { "sent": true, "list": [1, { "a": [2] }] };
        assert_eq!(
            StoredResult::of(plain.clone()),
            Ok(StoredResult::Document(plain))
        );
        let nested = doc! { "matrix": [[1, 2], [3]], "$odd": "x" };
        let Ok(StoredResult::Json(text)) = StoredResult::of(nested) else {
            panic!("stored as JSON text");
        };
        let read: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            read,
            serde_json::json!({ "matrix": [[1, 2], [3]], "$odd": "x" })
        );
    }

    #[test]
    fn a_result_too_large_is_refused_saying_how_large() {
        let big = doc! { "blob": "x".repeat(MAX_RESULT_BYTES) };
        let refused = StoredResult::of(big).unwrap_err().to_string();
        assert!(refused.starts_with("the result is "), "{refused}");
        assert!(refused.ends_with("at most 65536 are kept"), "{refused}");
    }
}

//! [`FleetError`]: why the instance registry produced no answer.

use crate::store::StoreError;

/// Why the instance registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Redis failed or did not answer in time.
    #[error("the instance registry is unavailable")]
    Store(#[from] StoreError),
    /// A heartbeat could not be encoded, or one read back does not parse.
    #[error("a heartbeat could not be encoded or read")]
    Json(#[from] serde_json::Error),
}

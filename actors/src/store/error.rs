//! [`StoreError`]: a store that could not be reached or failed.

use std::time::Duration;

/// A store that could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
}

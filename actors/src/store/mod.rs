//! Adapters for the two stores every actor leans on: MongoDB (the source of
//! truth) and Redis (a cache that may disappear at any time).
//!
//! Nothing here is FerretDB-specific: the same code runs against MongoDB 6+ or
//! Atlas and any Redis 6+. This module imports no capability.

mod error;
mod mongo;
mod redis;
mod spans;
mod unreadable;

pub use self::error::{brief_mongo, error_chain, StoreError};
pub use self::mongo::{
    connect_mongo, ensure_indexes, index, is_duplicate_key, ping_mongo, CommandLabel,
    MongoCommands, COUNTED_COMMANDS,
};
pub use self::redis::{same_slot, RedisStore};
pub use self::spans::BATCH_SPAN;
pub use self::unreadable::{
    count_unreadable, readable, unreadable_documents, CollectionLabel, REMEDY,
};

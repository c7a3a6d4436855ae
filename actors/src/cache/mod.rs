//! CacheActor: a Redis read-through cache of public user profiles.
//!
//! # Contract
//! - Callers read through a [`CacheClient`]: a hit is answered from Redis
//!   (`{prefix}profile:v2:{id}`) in the caller's own task. A miss goes to the
//!   actor as `Load`, which loads the profile through the [`ProfileSource`]
//!   it was given (the users' handle: the UserActor, MongoDB), stores it with
//!   `ttl` and answers. An unknown id is cached as a tombstone for
//!   `negative_ttl`. Only what the source hands over is cached: the users
//!   give the public profile (no e-mail, no age); the owner's view is read
//!   from MongoDB.
//! - **Rate limit:** [`CacheClient::get_limited`] counts the lookup against
//!   a per-address [`FixedWindow`](crate::limits::FixedWindow) in the same
//!   Redis pipeline as the read, so a hit still costs one round trip; a
//!   refused lookup loads nothing.
//! - **Single-flight:** concurrent misses for one id cause one load; every
//!   waiter gets its result (errors too: [`LoadError`] is cheap to clone).
//!   A load first looks in Redis once more, so a miss that reaches the actor
//!   just after the previous load landed is answered from Redis, not loaded
//!   again.
//! - **Invalidation:** through an [`Invalidator`] (what a writer of profiles
//!   holds). It deletes the key and answers only when no load that started
//!   before it can still write an older value: a load in flight is marked
//!   stale, its result is not served from the cache, the key is deleted
//!   again once it lands, and only then is the invalidation answered.
//! - **Fail-open:** every Redis command has a short timeout. When Redis is
//!   down or slow, reads go to the source (through the same single-flight),
//!   the cache is marked degraded (a warning on the transition, a counter,
//!   and `/health/ready` says so) and recovers on the first successful command.
//!
//! # Throughput
//! A hit needs none of the actor's state (the in-flight table matters only to
//! misses and invalidations), so it does not pass through the mailbox: that
//! hop, a task switch each way, was the largest cost of a cached read after
//! Redis itself. The actor never awaits Redis or the source in its message
//! loop: loads and deletes run in tasks of their own, held in a `JoinSet` in
//! its state.
//!
//! # Failure and shutdown
//! The actor holds only the in-flight table and its tasks. If it dies, its
//! tasks are aborted with its state: waiting callers' reply ports are dropped
//! (they get a prompt 503), an invalidation in flight is not confirmed (its
//! writer logs it; the old value expires within `ttl`), and the restarted
//! actor starts with an empty table; Redis keeps the cached values, and hits
//! are served throughout. A graceful stop lets its tasks finish within the
//! shutdown grace, then aborts the rest.
//!
//! # Dependencies
//! The cache knows nothing of users: it is keyed by the profile document's
//! [`ObjectId`], loads through a [`ProfileSource`] it defines, and is told of
//! changes through the [`Invalidator`] it hands out.

mod actor;
mod client;
mod config;
mod entries;
mod local;
mod source;
mod stats;
mod tracking;

pub(crate) use self::actor::{CacheActor, CacheArgs, CacheMsg};
pub(crate) use self::local::LocalTier;
pub use self::client::{CacheClient, CacheError, Invalidator};
pub use self::config::CacheConfig;
pub use self::source::{LoadError, ProfileJson, ProfileSource};
pub use self::stats::CacheStats;

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
mod entries;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;

use crate::supervision::slot::CallError;

pub(crate) use self::actor::{CacheActor, CacheArgs, CacheMsg};
pub use self::client::{CacheClient, Invalidator};

/// `[cache]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct CacheConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
}

/// Counters and the degraded flag, shared with readiness and metrics.
#[derive(Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Profile loads from the source (one per single-flight group).
    pub loads: AtomicU64,
    pub sets: AtomicU64,
    pub invalidations: AtomicU64,
    /// Redis commands that failed or timed out.
    pub errors: AtomicU64,
    degraded: AtomicBool,
}

impl CacheStats {
    /// Whether the last Redis command failed.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn redis_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "cache", "redis answers again; cache recovered");
        }
    }

    fn redis_failed(&self, err: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "cache", error = %err, "redis unavailable; serving from the source (cache degraded)");
        }
    }
}

/// A public profile as JSON, exactly as cached: a hit is answered without
/// parsing and re-serialising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileJson(pub Arc<str>);

/// Where the cache loads a profile it does not hold.
pub trait ProfileSource: Send + Sync + 'static {
    /// The public profile of `id` as JSON (`None`: no such profile, cached
    /// as a tombstone); an error is answered to every waiter and not cached.
    fn public_profile(
        &self,
        id: ObjectId,
    ) -> BoxFuture<'static, Result<Option<ProfileJson>, LoadError>>;
}

/// A [`ProfileSource`] failed. Shared by every waiter of one load, hence
/// the `Arc` around the cause; `source()` is the cause itself, so callers
/// can downcast it.
#[derive(Debug, Clone)]
pub struct LoadError(Arc<dyn std::error::Error + Send + Sync>);

impl LoadError {
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(cause))
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the profile source failed")
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Why a lookup through the [`CacheClient`] gave no profile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The client made too many lookups; retry after this long.
    #[error("too many lookups")]
    Throttled(Duration),
    /// The CacheActor is not running or did not answer in time.
    #[error("the cache could not load")]
    Unavailable(#[source] CallError),
    #[error("the profile could not be loaded")]
    Load(#[source] LoadError),
}

/// What a load answers its waiters.
type Lookup = Result<Option<ProfileJson>, LoadError>;

//! CacheActor: a two-tier read-through cache of public user profiles — an
//! in-process tier in front of Redis, coherent across the fleet.
//!
//! # Contract
//! - Callers read through a [`CacheClient`], in their own task. The
//!   **in-process tier** (`cache.local_entries`, quick_cache, per-entry TTL as in
//!   Redis) answers first; otherwise Redis (`{prefix}profile:v3:{id}`), and a
//!   Redis hit is kept in the tier. A miss goes to the actor as `Load`, which
//!   loads the profile through the [`ProfileSource`] it was given (the users'
//!   handle: the UserActor, MongoDB), stores it with `ttl` and answers. An
//!   unknown id is cached as a tombstone for `negative_ttl`. Only what the
//!   source hands over is cached: the users give the public profile (no
//!   e-mail, no age); the owner's view is read from MongoDB.
//! - **Rate limit:** not here: the users' handle decides a lookup's
//!   per-address limit in-process ([`crate::limits`]) before asking the
//!   cache, so a refused lookup reads nothing.
//! - **Coherence of the tier, paid by the writer:** an instance serves
//!   from its tier only while it holds a lease, renewed every quarter lease
//!   on a RESP3 connection subscribed to the fleet's invalidations (see
//!   `subscription.rs`, `lease.rs`). An invalidation fences the key, then
//!   publishes (one script) and answers once every instance holding a lease
//!   has applied it and acknowledged, waiting at most one lease and a margin
//!   (`fanout.rs`, `acks.rs`). A reader's insert is guarded by invalidation
//!   generations (an invalidation applied between its GET and its insert
//!   wins; see `local.rs`). Off on a Redis Cluster.
//! - **Single-flight:** concurrent misses for one id that found the same
//!   thing in Redis (nothing, or the same fence) cause one load; every waiter
//!   gets its result (errors too: [`LoadError`] is cheap to clone). A load
//!   first looks in Redis once more, so a miss that reaches the actor just
//!   after the previous load landed is answered from Redis, not loaded again.
//! - **Invalidation:** through an [`Invalidator`] (what a writer of profiles
//!   holds). It replaces the key with a fresh fence (`cache.fence_ttl`) and
//!   answers once it is written and acknowledged by the fleet (above). A
//!   load fills Redis only if the key still holds what it saw before reading
//!   the source (a Lua compare-and-set), so a load on any instance that read the old profile can never store it over
//!   the invalidation; a miss that sees the new fence does not join a load
//!   that started before it (nor, on this instance, one in flight when the
//!   invalidation came).
//! - **Fail-open:** every Redis command has a short timeout. When Redis is
//!   down or slow, reads go to the source (through the same single-flight),
//!   the cache is marked degraded (a warning on the transition, a counter,
//!   and `/health/ready` says so) and recovers on the first successful command.
//!
//! # Throughput
//! A hit needs none of the actor's state (the in-flight table matters only to
//! misses and invalidations), so it does not pass through the mailbox. A hit
//! in the tier sends no command at all (a clock read checks the lease). The
//! actor never awaits Redis or the source in its message loop: loads and
//! fences (with their wait for acknowledgements) run in tasks of their own,
//! held in a `JoinSet` in its state; the subscription task in a second one.
//!
//! # Failure and shutdown
//! The actor holds only the in-flight table and its tasks. If it dies, its
//! tasks are aborted with its state: waiting callers' reply ports are dropped
//! (they get a prompt 503), an invalidation in flight is not confirmed (its
//! writer logs it; the old value expires within `ttl`), the subscription
//! task's end revokes the lease until the restarted actor's renews it, and
//! the restarted actor starts with an empty table; Redis keeps the cached
//! values, and Redis hits are served throughout. A graceful stop ends the
//! subscription at once, lets its other tasks finish within the shutdown
//! grace, then aborts the rest.
//!
//! # Dependencies
//! The cache knows nothing of users: it is keyed by the profile document's
//! [`ObjectId`], loads through a [`ProfileSource`] it defines, and is told of
//! changes through the [`Invalidator`] it hands out.

mod acks;
mod actor;
mod client;
mod config;
mod entries;
mod fanout;
mod lease;
mod local;
mod source;
mod stats;
mod striped;
mod subscription;

pub(crate) use self::actor::{CacheActor, CacheArgs, CacheMsg};
pub use self::client::{CacheClient, CacheError, Invalidator};
pub use self::config::CacheConfig;
pub(crate) use self::local::LocalTier;
pub use self::source::{LoadError, ProfileJson, ProfileSource};
pub use self::stats::CacheStats;
pub use self::striped::Striped;

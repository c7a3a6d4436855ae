//! CacheActor: a Redis read-through cache of public user profiles.
//!
//! # Contract
//! - Callers read through a [`CacheClient`]: a hit is answered from Redis
//!   (`{prefix}profile:v2:{id}`) in the caller's own task. A miss goes to the actor
//!   as `Load`, which loads the profile through the UserActor (MongoDB),
//!   stores it with `ttl` and answers. An unknown id is cached as a tombstone
//!   for `negative_ttl`. Only the [`PublicProfile`] is ever cached (no
//!   e-mail, no age): the owner's view is read from MongoDB.
//! - **Rate limit:** [`CacheClient::get_limited`] counts the lookup against
//!   a per-address [`FixedWindow`] in the same Redis pipeline as the read, so
//!   a hit still costs one round trip; a refused lookup loads nothing.
//! - **Single-flight:** concurrent misses for one id cause one load; every
//!   waiter gets its result.
//! - **Invalidation:** `Invalidate` deletes the key and answers only when no
//!   load that started before it can still write an older value: a load in
//!   flight is marked stale, its result is not served from the cache, the key
//!   is deleted again once it lands, and only then is the invalidation answered.
//! - **Fail-open:** every Redis command has a short timeout. When Redis is
//!   down or slow, reads go to MongoDB (through the same single-flight), the
//!   cache is marked degraded (a warning on the transition, a counter, and
//!   `/health/ready` says so) and recovers on the first successful command.
//!
//! # Throughput
//! A hit needs none of the actor's state (the in-flight table matters only to
//! misses and invalidations), so it does not pass through the mailbox: that
//! hop, a task switch each way, was the largest cost of a cached read after
//! Redis itself. The actor never awaits Redis or MongoDB in its message loop:
//! loads and deletes run in tasks of their own.
//!
//! # Failure
//! The actor holds only the in-flight table. If it dies, waiting callers'
//! reply ports are dropped (they get a prompt 503) and the restarted actor
//! starts with an empty table; Redis keeps the cached values, and hits are
//! served throughout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Deserialize;

use crate::limits::FixedWindow;
use crate::store::RedisStore;
use crate::supervision::slot::{ActorSlot, CallError};
use crate::supervision::stats::ActorStats;
use crate::users::{PublicProfile, UserError, UserMsg};

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
    /// Profile loads from MongoDB (one per single-flight group).
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
            tracing::warn!(target: "cache", error = %err, "redis unavailable; serving from MongoDB (cache degraded)");
        }
    }
}

/// A public profile as JSON, exactly as cached: a hit is answered without
/// parsing and re-serialising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileJson(pub Arc<str>);

pub type Lookup = Result<Option<ProfileJson>, UserError>;

pub enum CacheMsg {
    /// `id` is not in Redis (or Redis is down): join or start its single
    /// load, and answer the public profile (`None`: no such user).
    Load {
        id: ObjectId,
        reply: RpcReplyPort<Lookup>,
    },
    /// Forget `id`; answered once no older value can reappear.
    Invalidate {
        id: ObjectId,
        reply: RpcReplyPort<()>,
    },
    /// Internal: a load finished (and, unless it failed, was stored).
    Loaded { id: ObjectId, result: Lookup },
}

#[derive(Clone)]
pub struct CacheArgs {
    pub redis: RedisStore,
    pub users: ActorSlot<UserMsg>,
    pub config: CacheConfig,
    pub stats: Arc<CacheStats>,
    pub call_timeout: Duration,
    pub actor_stats: Arc<ActorStats>,
}

struct Inflight {
    waiters: Vec<RpcReplyPort<Lookup>>,
    /// Set when an invalidation arrived while loading.
    stale: bool,
    /// Invalidations waiting for this load to land.
    invalidations: Vec<RpcReplyPort<()>>,
}

pub struct CacheState {
    shared: Arc<Shared>,
    actor_stats: Arc<ActorStats>,
    inflight: HashMap<ObjectId, Inflight>,
}

/// How the rest of the service reads profiles. Cheap to clone.
#[derive(Clone)]
pub struct CacheClient {
    shared: Arc<Shared>,
    actor: ActorSlot<CacheMsg>,
}

impl CacheClient {
    /// A client of the actor in `actor`, reading what `args` describe.
    pub fn new(args: &CacheArgs, actor: ActorSlot<CacheMsg>) -> Self {
        Self {
            shared: Arc::new(Shared::new(args)),
            actor,
        }
    }

    /// The public profile of `id` (`None`: no such user).
    pub async fn get(&self, id: ObjectId) -> Result<Lookup, CallError> {
        match self.shared.read(&id).await {
            Ok(Some(hit)) => Ok(hit),
            // Miss, or Redis down: join (or start) the single load.
            _ => self.load(id).await,
        }
    }

    /// Like [`Self::get`], counted against `limit` for `client`: a refused
    /// lookup answers `Err(UserError::Throttled(wait))` and loads nothing.
    /// The count and the read travel in one pipeline, so a hit costs one
    /// Redis round trip, as without the limit; with Redis down the lookup
    /// is served (both fail open).
    pub async fn get_limited(
        &self,
        id: ObjectId,
        limit: &FixedWindow,
        client: IpAddr,
    ) -> Result<Lookup, CallError> {
        let key = self.shared.key(&id);
        let mut pipe = redis::pipe();
        limit.count_in(&mut pipe, client);
        pipe.cmd("GET").arg(&key);
        let replies = self
            .shared
            .redis
            .run_pipe::<(u64, i64, Option<String>)>(&pipe)
            .await;
        let read = match replies {
            Ok((count, ttl_ms, value)) => {
                self.shared.stats.redis_ok();
                if let Some(wait) = limit.verdict(count, ttl_ms) {
                    return Ok(Err(UserError::Throttled(wait)));
                }
                self.shared.parse(&key, value)
            }
            Err(err) => {
                limit.unavailable(&err);
                self.shared.stats.redis_failed(&err);
                None
            }
        };
        match read {
            Some(hit) => Ok(hit),
            None => self.load(id).await,
        }
    }

    /// Join (or start) the single load of `id` in the actor.
    async fn load(&self, id: ObjectId) -> Result<Lookup, CallError> {
        self.actor
            .call(
                |reply| CacheMsg::Load { id, reply },
                self.shared.call_timeout,
            )
            .await
    }
}

/// What the actor, its tasks and its clients share.
struct Shared {
    redis: RedisStore,
    users: ActorSlot<UserMsg>,
    config: CacheConfig,
    stats: Arc<CacheStats>,
    call_timeout: Duration,
}

/// What is stored under a key: the profile, or a tombstone for an unknown id.
const TOMBSTONE: &str = "null";

impl Shared {
    fn new(args: &CacheArgs) -> Self {
        Self {
            redis: args.redis.clone(),
            users: args.users.clone(),
            config: args.config.clone(),
            stats: Arc::clone(&args.stats),
            call_timeout: args.call_timeout,
        }
    }

    /// The key of `id`'s cached profile. `v2`: until the public profile lost
    /// its e-mail and age, profiles were cached under `user:{id}` with both;
    /// the new namespace means no such value is ever read after an upgrade
    /// (the old keys expire within their TTL). Change it again whenever the
    /// cached JSON's shape changes.
    fn key(&self, id: &ObjectId) -> String {
        self.redis.key(&format!("profile:v2:{id}"))
    }

    /// `Ok(Some(lookup))` on a hit, `Ok(None)` on a miss, `Err` when Redis failed.
    async fn read(&self, id: &ObjectId) -> Result<Option<Lookup>, ()> {
        let key = self.key(id);
        match self
            .redis
            .run::<Option<String>>(redis::cmd("GET").arg(&key))
            .await
        {
            Ok(value) => {
                self.stats.redis_ok();
                Ok(self.parse(&key, value))
            }
            Err(err) => {
                self.stats.redis_failed(&err);
                Err(())
            }
        }
    }

    /// A hit (counted and logged) from what `GET key` answered, or `None`.
    fn parse(&self, key: &str, value: Option<String>) -> Option<Lookup> {
        let value = value?;
        // Only this actor writes these keys: a profile's JSON or the tombstone.
        let lookup = if value == TOMBSTONE {
            Some(Ok(None))
        } else if value.starts_with('{') {
            Some(Ok(Some(ProfileJson(value.into()))))
        } else {
            None
        };
        if lookup.is_some() {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "cache", %key, "HIT");
        }
        lookup
    }

    /// Load from MongoDB through the UserActor and store the result.
    async fn load(&self, id: ObjectId) -> Lookup {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let result = match self
            .users
            .call(|reply| UserMsg::Profile { id, reply }, self.call_timeout)
            .await
        {
            Ok(result) => result,
            Err(err) => Err(UserError::Store(err.to_string())),
        };
        // Only the public part is cached and served.
        let result = result.map(|profile| {
            profile.map(|owner| {
                let public: PublicProfile = owner.public();
                ProfileJson(
                    serde_json::to_string(&public)
                        .expect("profile serialises")
                        .into(),
                )
            })
        });
        if let Ok(profile) = &result {
            let (value, ttl) = match profile {
                Some(json) => (json.0.to_string(), self.config.ttl),
                None => (TOMBSTONE.to_string(), self.config.negative_ttl),
            };
            let key = self.key(&id);
            let set = redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .clone();
            match self.redis.run::<()>(&set).await {
                Ok(()) => {
                    self.stats.redis_ok();
                    self.stats.sets.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "cache", %key, ttl = %humantime::format_duration(ttl), "SET");
                }
                Err(err) => self.stats.redis_failed(&err),
            }
        }
        result
    }

    async fn delete(&self, id: &ObjectId) {
        let key = self.key(id);
        match self.redis.run::<()>(redis::cmd("DEL").arg(&key)).await {
            Ok(()) => {
                self.stats.redis_ok();
                tracing::info!(target: "cache", %key, "INVALIDATE");
            }
            // Fail-open: the value (if any) expires within the TTL.
            Err(err) => self.stats.redis_failed(&err),
        }
    }
}

#[derive(Clone, Copy, Default)]
pub struct CacheActor;

impl Actor for CacheActor {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = CacheArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CacheMsg>,
        args: CacheArgs,
    ) -> Result<CacheState, ActorProcessingErr> {
        Ok(CacheState {
            shared: Arc::new(Shared::new(&args)),
            inflight: HashMap::new(),
            actor_stats: args.actor_stats,
        })
    }

    #[tracing::instrument(skip_all, name = "cache_actor")]
    async fn handle(
        &self,
        myself: ActorRef<CacheMsg>,
        message: CacheMsg,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.actor_stats.begin(&myself.get_cell()).await;
        match message {
            CacheMsg::Load { id, reply } => {
                if let Some(flight) = state.inflight.get_mut(&id) {
                    flight.waiters.push(reply);
                    return Ok(());
                }
                state.shared.stats.misses.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: "cache", key = %state.shared.key(&id), "MISS");
                state.inflight.insert(
                    id,
                    Inflight {
                        waiters: vec![reply],
                        stale: false,
                        invalidations: vec![],
                    },
                );
                let (shared, actor_stats) =
                    (Arc::clone(&state.shared), Arc::clone(&state.actor_stats));
                tokio::spawn(async move {
                    let result = shared.load(id).await;
                    actor_stats.sent();
                    let _ = myself.cast(CacheMsg::Loaded { id, result });
                });
            }
            CacheMsg::Loaded { id, result } => {
                let Some(flight) = state.inflight.remove(&id) else {
                    return Ok(());
                };
                for waiter in flight.waiters {
                    let _ = waiter.send(result.clone());
                }
                if flight.stale {
                    // The load may have stored a value older than the write
                    // that invalidated it: delete again, then acknowledge.
                    let shared = Arc::clone(&state.shared);
                    tokio::spawn(async move {
                        shared.delete(&id).await;
                        for reply in flight.invalidations {
                            let _ = reply.send(());
                        }
                    });
                }
            }
            CacheMsg::Invalidate { id, reply } => {
                state
                    .shared
                    .stats
                    .invalidations
                    .fetch_add(1, Ordering::Relaxed);
                let shared = Arc::clone(&state.shared);
                let wait_for_load = match state.inflight.get_mut(&id) {
                    Some(flight) => {
                        flight.stale = true;
                        flight.invalidations.push(reply);
                        None
                    }
                    None => Some(reply),
                };
                tokio::spawn(async move {
                    shared.delete(&id).await;
                    if let Some(reply) = wait_for_load {
                        let _ = reply.send(());
                    }
                });
            }
        }
        Ok(())
    }
}

//! [`FleetStore`]: the instance registry in Redis.
//!
//! # Keys (all under the service's prefix, all in the hash tag `{fleet}`, so
//! a pipeline or script that uses several lands in one Redis Cluster slot)
//! - `{fleet}:instance:<id>`: the instance's [`Heartbeat`] (JSON), expiring
//!   after `fleet.heartbeat_ttl`. Exists exactly while the instance is live.
//! - `{fleet}:tree:<id>`: its actor tree ([`PublishedTree`]), same TTL; apart
//!   from the heartbeat so that listing the fleet does not read every tree.
//! - `{fleet}:instances`: sorted set, member = id, score = last heartbeat
//!   (ms since the epoch). Outlives the keys above, which is how a dead
//!   instance is found after its heartbeat vanished; the member is removed
//!   when the instance leaves or is taken over.

use std::time::Duration;

use crate::fleet::error::FleetError;
use crate::fleet::heartbeat::{Heartbeat, PublishedTree};
use crate::store::RedisStore;

/// Most instances listed (the registry is read in O(instances)).
pub const MAX_INSTANCES: isize = 1000;

/// Removes `ARGV[1]` from the instance set (`KEYS[1]`) unless its heartbeat
/// (`KEYS[2]`) exists: 1 for the one caller that took the instance over, 0
/// for everyone else (or if it is alive after all). Atomic in Redis.
const TAKE_OVER: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// The registry's keys in Redis.
#[derive(Clone)]
pub struct FleetStore {
    redis: RedisStore,
}

impl FleetStore {
    pub fn new(redis: RedisStore) -> Self {
        Self { redis }
    }

    fn instances_key(&self) -> String {
        self.redis.key("{fleet}:instances")
    }

    fn heartbeat_key(&self, id: &str) -> String {
        self.redis.key(&format!("{{fleet}}:instance:{id}"))
    }

    fn tree_key(&self, id: &str) -> String {
        self.redis.key(&format!("{{fleet}}:tree:{id}"))
    }

    /// Write `beat` (and `tree`, JSON, if any) for `ttl`, and the instance's
    /// last-seen score, in one pipeline (one slot; no MULTI, which the
    /// cluster client does not route: a partial write is mended by the next
    /// beat). `true` if the instance was not in the set (its first
    /// heartbeat, or someone took it for dead).
    pub async fn beat(
        &self,
        beat: &Heartbeat,
        tree: Option<&str>,
        ttl: Duration,
    ) -> Result<bool, FleetError> {
        let ttl_ms = ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.heartbeat_key(&beat.id))
            .arg(serde_json::to_string(beat)?)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        if let Some(tree) = tree {
            pipe.cmd("SET")
                .arg(self.tree_key(&beat.id))
                .arg(tree)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        pipe.cmd("ZADD")
            .arg(self.instances_key())
            .arg(beat.at.timestamp_millis())
            .arg(&beat.id);
        let (added,): (i64,) = self.redis.run_pipe(&pipe).await?;
        Ok(added == 1)
    }

    /// Remove instance `id` from the registry now (it is shutting down).
    /// The member first: should the pipeline break after it, the instance
    /// stays listed until its heartbeat expires but is never taken for dead
    /// (its jobs may still be finishing).
    pub async fn leave(&self, id: &str) -> Result<(), FleetError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.instances_key())
            .arg(id)
            .ignore()
            .cmd("DEL")
            .arg(self.heartbeat_key(id))
            .arg(self.tree_key(id))
            .ignore();
        let () = self.redis.run_pipe(&pipe).await?;
        Ok(())
    }

    /// Every member of the instance set with its last-seen score, live or
    /// not (at most [`MAX_INSTANCES`]).
    pub async fn members(&self) -> Result<Vec<(String, f64)>, FleetError> {
        let members = self
            .redis
            .run(
                redis::cmd("ZRANGE")
                    .arg(self.instances_key())
                    .arg(0)
                    .arg(MAX_INSTANCES - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(members)
    }

    /// The live instances' heartbeats, by id: two commands whatever the
    /// size of the fleet. A heartbeat that does not parse is left out.
    pub async fn live(&self) -> Result<Vec<Heartbeat>, FleetError> {
        let members = self.members().await?;
        if members.is_empty() {
            return Ok(vec![]);
        }
        let mut mget = redis::cmd("MGET");
        for (id, _) in &members {
            mget.arg(self.heartbeat_key(id));
        }
        let found: Vec<Option<String>> = self.redis.run(&mget).await?;
        let mut live: Vec<Heartbeat> = found
            .into_iter()
            .flatten()
            .filter_map(|json| {
                serde_json::from_str(&json)
                    .inspect_err(|err| tracing::debug!(target: "system", error = %err, "unreadable heartbeat"))
                    .ok()
            })
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// The live instance `id`'s heartbeat and its last published tree.
    pub async fn instance(
        &self,
        id: &str,
    ) -> Result<Option<(Heartbeat, Option<PublishedTree>)>, FleetError> {
        let (beat, tree): (Option<String>, Option<String>) = self
            .redis
            .run(
                redis::cmd("MGET")
                    .arg(self.heartbeat_key(id))
                    .arg(self.tree_key(id)),
            )
            .await?;
        let Some(beat) = beat else {
            return Ok(None);
        };
        let tree = tree.and_then(|tree| serde_json::from_str(&tree).ok());
        Ok(Some((serde_json::from_str(&beat)?, tree)))
    }

    /// Take over the instance `id`, whose heartbeat is gone: `true` for
    /// exactly one caller (it releases the instance's jobs).
    pub async fn take_over(&self, id: &str) -> Result<bool, FleetError> {
        let taken: i64 = self
            .redis
            .run(
                redis::cmd("EVAL")
                    .arg(TAKE_OVER)
                    .arg(2)
                    .arg(self.instances_key())
                    .arg(self.heartbeat_key(id))
                    .arg(id),
            )
            .await?;
        Ok(taken == 1)
    }

    /// Put `id` back in the set as last seen at `score` (unless it is there
    /// again): its take-over failed half-way, so a later tick retries it.
    pub async fn restore(&self, id: &str, score: f64) -> Result<(), FleetError> {
        let _: i64 = self
            .redis
            .run(
                redis::cmd("ZADD")
                    .arg(self.instances_key())
                    .arg("NX")
                    .arg(score)
                    .arg(id),
            )
            .await?;
        Ok(())
    }
}

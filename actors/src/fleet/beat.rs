//! [`Beat`]: one heartbeat of this instance and the take-overs that follow
//! it — the work the FleetActor runs in its task every tick — and leaving
//! the registry at shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::fleet::config::FleetConfig;
use crate::fleet::heartbeat::{age_ms, suspects, Heartbeat, PoolFigures, MAX_TREE_BYTES};
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::registry::FleetStore;
use crate::queue::types::JobTypes;
use crate::queue::QueueHandle;

/// What the fleet publishes that only the layers above know: the actor tree
/// in the shape `/ops/actors` answers, and readiness. The HTTP layer
/// implements it and hands it over with [`crate::fleet::Fleet::publish`].
pub trait LocalView: Send + Sync + 'static {
    /// The actor tree as `/ops/actors` renders it; `None` if it could not
    /// be taken.
    fn tree(&self) -> BoxFuture<'static, Option<serde_json::Value>>;
    /// Whether this instance reports itself ready.
    fn ready(&self) -> bool;
}

/// Where the [`LocalView`] is put once the layers above exist.
pub(crate) type LocalSlot = Arc<OnceLock<Arc<dyn LocalView>>>;

/// Who this instance is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub id: Arc<str>,
    pub host: String,
    pub started_at: DateTime<Utc>,
}

/// Everything a heartbeat needs. Shared by every incarnation of the actor.
pub(crate) struct Beat {
    pub store: FleetStore,
    pub me: Identity,
    pub queue: QueueHandle,
    /// This instance's job types (published) and the fleet's (read back).
    pub types: Arc<JobTypes>,
    pub local: LocalSlot,
    pub config: FleetConfig,
    pub metrics: FleetMetrics,
    /// Held while writing this instance's keys; `true` once it has left, after
    /// which nothing writes them again.
    pub left: Mutex<bool>,
    /// Heartbeats written, and whether the last one failed (so an outage is
    /// logged once, not every tick).
    pub beats: AtomicU64,
    pub failing: AtomicBool,
}

impl Beat {
    /// What heartbeats of `me` need: the registry, the queue (its pool, and
    /// releasing a dead instance's jobs), the intervals. The [`LocalView`]
    /// comes later ([`crate::fleet::Fleet::publish`]).
    pub fn new(
        store: FleetStore,
        me: Identity,
        (queue, types): (QueueHandle, Arc<JobTypes>),
        config: FleetConfig,
        metrics: FleetMetrics,
    ) -> Self {
        Self {
            store,
            me,
            queue,
            types,
            local: LocalSlot::default(),
            config,
            metrics,
            left: Mutex::new(false),
            beats: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// Publish this instance, read the live instances' job types back,
    /// then take over the instances found dead. Fails open: a Redis error is
    /// counted and logged, and the next tick tries again.
    pub async fn run(&self) {
        if *self.left.lock().await {
            return;
        }
        let (beat, tree) = self.describe().await;
        if self.publish(&beat, tree.as_deref()).await {
            // At once, so reading the types adds no round trip to a beat
            // (the next tick's beat waits for this one).
            tokio::join!(self.read_job_types(), self.fail_over());
        }
    }

    /// Set the fleet's job types ([`JobTypes::set_fleet`]) to the union of
    /// the live instances', and its size. On failure the last read stays.
    async fn read_job_types(&self) {
        match self.store.live().await {
            Ok(live) => {
                self.metrics.instances.set(live.len() as i64);
                let types = live.iter().flat_map(|beat| beat.job_types.iter());
                self.types.set_fleet(types);
            }
            Err(err) => {
                tracing::debug!(target: "system", error = %err, "could not read the fleet's job types")
            }
        }
    }

    /// This instance as it is now, each part bounded by the heartbeat
    /// interval (a part that takes longer is left out).
    async fn describe(&self) -> (Heartbeat, Option<String>) {
        let bound = self.config.heartbeat_interval;
        let local = self.local.get().cloned();
        let tree = async {
            let view = local.as_ref()?;
            tokio::time::timeout(bound, view.tree()).await.ok()?
        };
        let (pool, tree) = tokio::join!(tokio::time::timeout(bound, self.queue.pool()), tree);
        let pool = pool.ok().and_then(Result::ok);
        let beat = Heartbeat {
            id: self.me.id.to_string(),
            host: self.me.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: self.me.started_at,
            at: Utc::now(),
            ready: local.is_some_and(|view| view.ready()),
            pool: pool.as_ref().map(|p| PoolFigures {
                size: p.size,
                busy: p.busy,
            }),
            jobs: pool
                .iter()
                .flat_map(|p| p.executors.iter().filter_map(|e| e.job.clone()))
                .collect(),
            job_types: self.types.local().iter().cloned().collect(),
        };
        let tree = tree.and_then(|tree| self.bounded(&beat.id, tree));
        (beat, tree)
    }

    /// The tree as JSON, unless it is larger than [`MAX_TREE_BYTES`].
    fn bounded(&self, id: &str, tree: serde_json::Value) -> Option<String> {
        let published = crate::fleet::heartbeat::PublishedTree {
            at: Utc::now(),
            tree,
        };
        let json = serde_json::to_string(&published).ok()?;
        if json.len() > MAX_TREE_BYTES {
            tracing::warn!(target: "system", instance = id, bytes = json.len(), "actor tree too large to publish");
            return None;
        }
        Some(json)
    }

    /// Write the heartbeat, unless the instance has left. `false` if it was
    /// not written.
    async fn publish(&self, beat: &Heartbeat, tree: Option<&str>) -> bool {
        let left = self.left.lock().await;
        if *left {
            return false;
        }
        match self.store.beat(beat, tree, self.config.heartbeat_ttl).await {
            Ok(added) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "system", "heartbeat written again");
                }
                if added && self.beats.load(Ordering::Relaxed) > 0 {
                    tracing::warn!(target: "system", instance = %self.me.id,
                        "this instance was taken for dead (its heartbeat had lapsed); the jobs it held were released");
                }
                self.beats.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(err) => {
                self.metrics.heartbeat_failures.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "system", error = %err, "heartbeat failed; retrying every tick");
                }
                false
            }
        }
    }

    /// Take over every instance whose heartbeat has lapsed and release its
    /// jobs. Exactly one live instance takes each over (see
    /// [`FleetStore::take_over`]).
    async fn fail_over(&self) {
        let members = match self.store.members().await {
            Ok(members) => members,
            Err(err) => {
                tracing::debug!(target: "system", error = %err, "could not read the instance set");
                return;
            }
        };
        let now = Utc::now();
        let ttl = self.config.heartbeat_ttl;
        for (id, seen) in suspects(&members, &self.me.id, now.timestamp_millis(), ttl) {
            match self.store.take_over(id).await {
                Ok(true) => self.release(id, seen, now).await,
                Ok(false) => {}
                Err(err) => {
                    tracing::debug!(target: "system", instance = id, error = %err, "take-over failed");
                    return;
                }
            }
        }
    }

    /// Release the jobs of `id`, which this instance took over; on failure
    /// put it back in the set, so that a later tick (anyone's) retries.
    async fn release(&self, id: &str, seen: f64, now: DateTime<Utc>) {
        self.metrics.failovers.inc();
        let silent_ms = DateTime::from_timestamp_millis(seen as i64).map(|at| age_ms(at, now));
        tracing::warn!(target: "system", instance = id, silent_ms, "instance presumed dead; releasing its jobs");
        match self.queue.release_instance(id).await {
            Ok(released) => {
                self.metrics.jobs_released.inc_by(released);
                tracing::info!(target: "system", instance = id, released, "dead instance taken over");
            }
            Err(err) => {
                tracing::warn!(target: "system", instance = id, error = %err, "could not release the dead instance's jobs; retrying later");
                if let Err(err) = self.store.restore(id, seen).await {
                    tracing::warn!(target: "system", instance = id, error = %err,
                        "could not put it back in the registry; its jobs come back when their leases expire");
                }
            }
        }
    }

    /// Leave the registry (shutdown): no heartbeat is written after this.
    /// Bounded by twice the Redis timeout; if Redis does not answer, the
    /// heartbeat expires by itself (and the fleet finds no jobs to release:
    /// shutdown gave them back).
    pub async fn leave(&self, bound: Duration) {
        let mut left = self.left.lock().await;
        if *left {
            return;
        }
        *left = true;
        match tokio::time::timeout(bound, self.store.leave(&self.me.id)).await {
            Ok(Ok(())) => {
                tracing::info!(target: "system", instance = %self.me.id, "left the fleet")
            }
            Ok(Err(err)) => {
                tracing::warn!(target: "system", error = %err, "could not leave the registry; the heartbeat expires by itself")
            }
            Err(_) => {
                tracing::warn!(target: "system", "leaving the registry timed out; the heartbeat expires by itself")
            }
        }
    }
}

//! [`Fleet`]: how the HTTP layer reads the registry (`/ops/cluster`, another
//! instance's tree), hands over its [`LocalView`], and makes this instance
//! leave at shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::beat::{Beat, LocalView};
use crate::fleet::error::FleetError;
use crate::fleet::heartbeat::{Heartbeat, PublishedTree};
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::registry::FleetStore;

/// Longest instance id looked up: ids are `host-pid-suffix`; anything longer
/// is unknown without asking Redis.
const MAX_ID_LEN: usize = 256;

/// The fleet's registry, for this instance. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    /// What the FleetActor's heartbeats use (shared with it).
    beat: Arc<Beat>,
    /// Longest wait for Redis when leaving.
    leave_within: Duration,
}

impl Fleet {
    pub(crate) fn new(beat: Arc<Beat>, leave_within: Duration) -> Self {
        Self { beat, leave_within }
    }

    fn store(&self) -> &FleetStore {
        &self.beat.store
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.beat.me.id
    }

    /// Heartbeat failures and take-overs, for `/metrics`.
    pub fn metrics(&self) -> &FleetMetrics {
        &self.beat.metrics
    }

    /// Publish `view` (the tree and readiness) with every heartbeat from now
    /// on. Once only: later calls are ignored.
    pub fn publish(&self, view: Arc<dyn LocalView>) {
        let _ = self.beat.local.set(view);
    }

    /// The live instances (their heartbeat exists), by id.
    pub async fn instances(&self) -> Result<Vec<Heartbeat>, FleetError> {
        self.store().live().await
    }

    /// The live instance `id`'s heartbeat and last published tree; `None`
    /// if no live instance has that id.
    pub async fn instance_of(
        &self,
        id: &str,
    ) -> Result<Option<(Heartbeat, Option<PublishedTree>)>, FleetError> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        self.store().instance(id).await
    }

    /// Leave the registry now (shutdown has begun): the other instances stop
    /// listing this one at once (and never take it for dead), and it writes
    /// no heartbeat again. From the caller's task, after a heartbeat being
    /// written; bounded by twice the Redis timeout. Idempotent.
    pub async fn leave(&self) {
        self.beat.leave(self.leave_within).await;
    }
}

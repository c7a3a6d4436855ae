//! [`Fleet`]: how the HTTP layer reads the registry (`/ops/cluster`, another
//! instance's tree), hands over its [`LocalView`], and makes this instance
//! leave at shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::actor::FleetMsg;
use crate::fleet::beat::{LocalSlot, LocalView};
use crate::fleet::error::FleetError;
use crate::fleet::heartbeat::{Heartbeat, PublishedTree};
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::registry::FleetStore;
use crate::supervision::slot::ActorSlot;

/// Longest instance id looked up: ids are `host-pid-suffix`; anything longer
/// is unknown without asking Redis.
const MAX_ID_LEN: usize = 256;

/// The fleet's registry, for this instance. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    store: FleetStore,
    me: Arc<str>,
    actor: ActorSlot<FleetMsg>,
    local: LocalSlot,
    metrics: FleetMetrics,
    /// How long `leave` waits for the actor.
    timeout: Duration,
}

impl Fleet {
    pub(crate) fn new(
        store: FleetStore,
        me: Arc<str>,
        actor: ActorSlot<FleetMsg>,
        local: LocalSlot,
        metrics: FleetMetrics,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            me,
            actor,
            local,
            metrics,
            timeout,
        }
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.me
    }

    /// Heartbeat failures and take-overs, for `/metrics`.
    pub fn metrics(&self) -> &FleetMetrics {
        &self.metrics
    }

    /// Publish `view` (the tree and readiness) with every heartbeat from now
    /// on. Once only: later calls are ignored.
    pub fn publish(&self, view: Arc<dyn LocalView>) {
        let _ = self.local.set(view);
    }

    /// The live instances (their heartbeat exists), by id.
    pub async fn instances(&self) -> Result<Vec<Heartbeat>, FleetError> {
        self.store.live().await
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
        self.store.instance(id).await
    }

    /// Leave the registry now (shutdown has begun): the other instances stop
    /// listing this one at once, and it writes no heartbeat again.
    pub async fn leave(&self) {
        let left = self.actor.call(FleetMsg::Leave, self.timeout).await;
        if let Err(err) = left {
            tracing::warn!(target: "system", error = %err, "could not leave the fleet; the heartbeat expires by itself");
        }
    }
}

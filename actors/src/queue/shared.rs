//! [`Queue`]: what the QueuePollerActor and its JobExecutors share.

use std::sync::Arc;

use crate::events::Events;
use crate::queue::cancel::Cancellations;
use crate::queue::config::QueueConfig;
use crate::queue::flow::Flows;
use crate::queue::handlers::JobHandlers;
use crate::queue::metrics::QueueMetrics;
use crate::queue::snapshot::QueueSnapshot;
use crate::queue::store::JobStore;
use crate::queue::store::PauseStore;
use crate::queue::types::JobTypes;

/// The queue's store, settings, handlers and figures, built once by the
/// actor system and shared (behind an `Arc`) by the poller and every
/// executor, across their restarts.
pub(crate) struct Queue {
    pub metrics: QueueMetrics,
    pub store: JobStore,
    /// Pauses, read by the poller every tick and written by operators.
    pub pauses: PauseStore,
    /// The cancellation tokens of the jobs running here.
    pub cancellations: Cancellations,
    /// JobCompleted / JobFailed / JobCancelled are published here.
    pub events: Events,
    pub handlers: JobHandlers,
    /// This instance's job types and the fleet's (the poller's pause
    /// check, stats).
    pub types: Arc<JobTypes>,
    pub config: QueueConfig,
    /// The queue's figures for `/metrics`, refreshed by the poller.
    pub snapshot: Arc<QueueSnapshot>,
}

impl Queue {
    /// The flows' release of waiting jobs, on this queue's store and bus.
    pub fn flows(&self) -> Flows<'_> {
        Flows {
            store: &self.store,
            aging: self.config.priority_aging,
            events: &self.events,
        }
    }
}

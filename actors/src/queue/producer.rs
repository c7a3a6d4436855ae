//! [`JobQueue`]: how other capabilities put jobs in the queue.
//!
//! A producer writes its job (durably, before it answers its own caller),
//! then — once whatever the job depends on is written too — tells this
//! instance's poller with [`JobQueue::claim_soon`], which claims the job by
//! id without waiting for a tick or listing the queue.

use mongodb::bson::{oid::ObjectId, Document};

use crate::queue::poller::PollerMsg;
use crate::queue::store::JobStore;
use crate::supervision::slot::ActorSlot;

#[derive(Clone)]
pub struct JobQueue {
    store: JobStore,
    poller: ActorSlot<PollerMsg>,
}

impl JobQueue {
    pub(crate) fn new(store: JobStore, poller: ActorSlot<PollerMsg>) -> Self {
        Self { store, poller }
    }

    /// Insert a pending job of type `kind`, due now; its id once the write
    /// is acknowledged.
    pub async fn enqueue(&self, kind: &str, payload: Document) -> mongodb::error::Result<ObjectId> {
        self.store.enqueue(kind, payload).await
    }

    /// Delete a job that must never run (its producer gave up on it).
    pub async fn withdraw(&self, id: ObjectId) -> mongodb::error::Result<()> {
        self.store.delete(id).await
    }

    /// Ask this instance's poller to claim `id` now. If the poller is down
    /// the job waits for the next listing (any instance's).
    pub fn claim_soon(&self, id: ObjectId) {
        let _ = self.poller.cast(PollerMsg::Enqueued(id));
    }
}

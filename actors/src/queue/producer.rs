//! [`JobQueue`]: how other capabilities put jobs in the queue.
//!
//! A producer writes its job (durably, before it answers its own caller),
//! then — once whatever the job depends on is written too — tells this
//! instance's poller with [`JobQueue::claim_soon`], which claims the job by
//! id without waiting for a tick or listing the queue.
//!
//! A job written *ahead* of its precondition (the welcome job is written
//! before its user, so that no crash can leave a user without one) is
//! enqueued held ([`JobQueue::enqueue_held`]): due only `queue.hold` from
//! now, so no instance's listing finds it while the precondition is still
//! being written. Once it is, the producer [`release`](JobQueue::release)s
//! it (due now) and has it claimed. A producer that dies in between leaves
//! the job held until the hold ends; then it runs like any other (and fails
//! after its retries if its precondition never came).

use std::time::Duration;

use mongodb::bson::{oid::ObjectId, Document};

use crate::queue::poller::PollerMsg;
use crate::queue::store::JobStore;
use crate::supervision::slot::ActorSlot;

#[derive(Clone)]
pub struct JobQueue {
    store: JobStore,
    poller: ActorSlot<PollerMsg>,
    /// `queue.hold`.
    hold: Duration,
}

impl JobQueue {
    pub(crate) fn new(store: JobStore, poller: ActorSlot<PollerMsg>, hold: Duration) -> Self {
        Self {
            store,
            poller,
            hold,
        }
    }

    /// Insert a pending job of type `kind`, due now; its id once the write
    /// is acknowledged.
    pub async fn enqueue(&self, kind: &str, payload: Document) -> mongodb::error::Result<ObjectId> {
        self.store.enqueue(kind, payload).await
    }

    /// Insert a pending job of type `kind` that no instance claims before
    /// [`release`](Self::release) or the end of `queue.hold`; its id once
    /// the write is acknowledged.
    pub async fn enqueue_held(
        &self,
        kind: &str,
        payload: Document,
    ) -> mongodb::error::Result<ObjectId> {
        self.store.enqueue_held(kind, payload, self.hold).await
    }

    /// Make the held job `id` due now (its precondition holds). `false`: it
    /// was not held any more (due already, or gone).
    pub async fn release(&self, id: ObjectId) -> mongodb::error::Result<bool> {
        self.store.release(id).await
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

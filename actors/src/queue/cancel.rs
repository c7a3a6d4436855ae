//! The cancellation tokens of the jobs this instance runs: how a cancel
//! reaches a running handler at once. The store's side (the marker that
//! keeps a cancelled job from ever running) is [`crate::queue::store::cancel`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use mongodb::bson::oid::ObjectId;
use tokio_util::sync::CancellationToken;

/// The cancellation tokens of the jobs this instance runs, by job id: a
/// cancel that comes through this instance fires the token at once,
/// without waiting for the executor's next lease renewal.
#[derive(Default)]
pub(crate) struct Cancellations {
    running: Mutex<HashMap<ObjectId, CancellationToken>>,
}

impl Cancellations {
    /// `token` is the cancellation of `id`, running here, until the guard
    /// is dropped.
    pub fn register(&self, id: ObjectId, token: CancellationToken) -> Registered<'_> {
        self.lock().insert(id, token);
        Registered { owner: self, id }
    }

    /// Fire the cancellation of `id` if it runs here; `true` if it did.
    pub fn cancel(&self, id: ObjectId) -> bool {
        let token = self.lock().get(&id).cloned();
        token.inspect(|token| token.cancel()).is_some()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectId, CancellationToken>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes its job from [`Cancellations`] when dropped.
pub(crate) struct Registered<'a> {
    owner: &'a Cancellations,
    id: ObjectId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

//! Pruning the history: FerretDB has no TTL indexes, so old documents go
//! by a periodic delete (the `queue.prune` job, see [`crate::queue::scheduler`]).

use std::time::Duration;

use mongodb::bson::doc;

use super::JobStore;
use crate::queue::error::QueueError;

impl JobStore {
    /// Delete completed (and cancelled) jobs and finished attempt records
    /// older than `retention`. (FerretDB has no TTL indexes, so this is a
    /// periodic delete: the `queue.prune` job, see [`crate::queue::scheduler`].)
    pub async fn prune(&self, retention: Duration) -> Result<u64, QueueError> {
        let cutoff = self.clock.before(retention);
        let jobs = self
            .jobs
            .delete_many(doc! { "$or": [
                { "status": "completed", "completedAt": { "$lt": cutoff } },
                { "status": "cancelled", "cancelledAt": { "$lt": cutoff } },
            ] })
            .await?;
        self.attempts
            .delete_many(doc! { "finishedAt": { "$lt": cutoff } })
            .await?;
        Ok(jobs.deleted_count)
    }
}

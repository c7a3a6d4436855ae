//! What bulk operations (`POST /jobs/bulk`, [`crate::queue::bulk`]) read and
//! delete: the matching jobs, and the deletion of finished ones with their
//! history. Retries and cancels go through the single-job operations.

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::JobStatus;

/// The statuses a job may be deleted in: it holds no lease and no unique key.
const FINISHED: [&str; 3] = [
    JobStatus::Completed.as_str(),
    JobStatus::Failed.as_str(),
    JobStatus::Cancelled.as_str(),
];

impl JobStore {
    /// How many jobs `query` matches.
    pub async fn count_matching(&self, query: Document) -> Result<u64, QueueError> {
        Ok(self.jobs.count_documents(query).await?)
    }

    /// The ids of up to `limit` jobs `query` matches, oldest first.
    pub async fn matching_ids(
        &self,
        query: Document,
        limit: u32,
    ) -> Result<Vec<ObjectId>, QueueError> {
        let found: Vec<Document> = self
            .jobs
            .clone_with_type::<Document>()
            .find(query)
            .projection(doc! { "_id": 1 })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        Ok(found
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect())
    }

    /// Delete those of `ids` that are still finished, then the history of
    /// every one of `ids` that is gone; how many jobs this call deleted.
    ///
    /// Three commands for the whole batch. A job retried between the listing
    /// and the delete is not deleted and keeps its history (the history goes
    /// only for jobs no longer there). A crash between the two deletes leaves
    /// attempt records without a job, which the prune job removes with the
    /// rest of the old history.
    pub async fn delete_finished(&self, ids: &[ObjectId]) -> Result<u64, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .jobs
            .delete_many(doc! { "_id": { "$in": ids }, "status": { "$in": FINISHED.to_vec() } })
            .await?
            .deleted_count;
        let left: Vec<Document> = self
            .jobs
            .clone_with_type::<Document>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        let left: HashSet<ObjectId> = left
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let gone: Vec<ObjectId> = ids
            .iter()
            .filter(|id| !left.contains(id))
            .copied()
            .collect();
        if !gone.is_empty() {
            self.attempts
                .delete_many(doc! { "jobId": { "$in": gone } })
                .await?;
        }
        Ok(deleted)
    }
}

//! What flows ([`crate::queue::flow`]) read and write: dependencies'
//! states, waiting jobs, their release (or failure) fenced on
//! `status: waiting`, and the reads of a flow's tree.
//!
//! `dependsOn` is a flat array of ObjectIds (FerretDB v1 stores it; no
//! nested arrays). Jobs are read by equalities only (`_id: <id>`,
//! `dependsOn: <id>`), one read each, a few in flight: FerretDB v1.24
//! pushes an equality down to PostgreSQL but not `$in`, which reads every
//! job into FerretDB (measured over 10,000 jobs on the loaded test machine:
//! `_id: {$in: [one id]}` 7.2 s a read; `_id: <id>` 27 ms, `dependsOn:
//! <id>` 22–87 ms). Dependents are found by it (`dependsOn: <id>`), never
//! written on the dependency: a second writer of the dependency's document
//! could undo its end on FerretDB, which writes whole documents.

use std::collections::HashMap;
use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use serde::Deserialize;

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{Job, JobStatus};
use crate::queue::priority;

/// Reads of a flow's jobs in flight at once.
pub const READS_IN_FLIGHT: usize = 8;

/// A job as a flow's tree shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: JobStatus,
    #[serde(default)]
    pub depends_on: Vec<ObjectId>,
}

/// The fields a [`FlowRecord`] reads.
fn flow_projection() -> Document {
    doc! { "_id": 1, "type": 1, "status": 1, "dependsOn": 1 }
}

impl JobStore {
    /// The status and type of each of `ids` that exists (a read by `_id`
    /// each, [`READS_IN_FLIGHT`] at a time: see the module doc).
    pub async fn dependency_states(
        &self,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, (JobStatus, String)>, QueueError> {
        let found = self.flow_nodes(ids).await?;
        Ok((found.into_iter())
            .map(|r| (r.id, (r.status, r.kind)))
            .collect())
    }

    /// Up to `limit` waiting jobs that depend on `of`.
    pub async fn waiting_dependents(
        &self,
        of: ObjectId,
        limit: i64,
    ) -> Result<Vec<Job>, QueueError> {
        let filter = doc! { "status": JobStatus::Waiting.as_str(), "dependsOn": of };
        Ok(self
            .jobs
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Up to `limit` waiting jobs, in `_id` order, after `cursor`.
    pub async fn waiting_after(
        &self,
        cursor: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<Job>, QueueError> {
        let mut filter = doc! { "status": JobStatus::Waiting.as_str() };
        if let Some(cursor) = cursor {
            filter.insert("_id", doc! { "$gt": cursor });
        }
        Ok(self
            .jobs
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Release the waiting `job`: `pending`, due at its own `runAt` or
    /// now (the later), ranked from then by its priority (`aging`:
    /// `queue.priority_aging`). `false`: it was not waiting any more.
    pub async fn release_waiting(&self, job: &Job, aging: Duration) -> Result<bool, QueueError> {
        let now = self.clock.now();
        let due = job.run_at.max(now);
        let rank = priority::rank(due, job.created_at, job.priority, aging);
        let released = self
            .jobs
            .update_one(
                doc! { "_id": job.id, "status": JobStatus::Waiting.as_str() },
                doc! { "$set": {
                    "status": JobStatus::Pending.as_str(), "runAt": due, "rank": rank, "updatedAt": now,
                } },
            )
            .await?;
        Ok(released.modified_count == 1)
    }

    /// Fail the waiting `job` for `reason` (a dependency failed). `false`:
    /// it was not waiting any more.
    pub async fn fail_waiting(&self, job: &Job, reason: &str) -> Result<bool, QueueError> {
        let now = self.clock.now();
        let failed = self
            .jobs
            .update_one(
                doc! { "_id": job.id, "status": JobStatus::Waiting.as_str() },
                doc! { "$set": {
                    "status": JobStatus::Failed.as_str(), "lastError": reason, "runAt": now,
                    "updatedAt": now,
                } },
            )
            .await?;
        Ok(failed.modified_count == 1)
    }

    /// The jobs of `ids` that exist, as a flow's tree shows them (a read
    /// by `_id` each, [`READS_IN_FLIGHT`] at a time).
    pub async fn flow_nodes(&self, ids: &[ObjectId]) -> Result<Vec<FlowRecord>, QueueError> {
        let filters = ids.iter().map(|id| doc! { "_id": id }).collect();
        self.each_read(filters, 1).await
    }

    /// Up to `limit` jobs that depend on any of `ids`, oldest first (a read
    /// per id, [`READS_IN_FLIGHT`] at a time).
    pub async fn flow_dependents(
        &self,
        ids: &[ObjectId],
        limit: i64,
    ) -> Result<Vec<FlowRecord>, QueueError> {
        let filters = ids.iter().map(|id| doc! { "dependsOn": id }).collect();
        let mut found = self.each_read(filters, limit).await?;
        found.sort_by_key(|r| r.id);
        found.dedup_by_key(|r| r.id);
        found.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(found)
    }

    /// The records each of `filters` finds (at most `limit` each), the
    /// reads [`READS_IN_FLIGHT`] at a time.
    async fn each_read(
        &self,
        filters: Vec<Document>,
        limit: i64,
    ) -> Result<Vec<FlowRecord>, QueueError> {
        let reads: Vec<Result<Vec<FlowRecord>, QueueError>> = stream::iter(filters)
            .map(|filter| self.flow_records(filter, limit))
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut found = Vec::new();
        for read in reads {
            found.extend(read?);
        }
        Ok(found)
    }

    async fn flow_records(
        &self,
        filter: Document,
        limit: i64,
    ) -> Result<Vec<FlowRecord>, QueueError> {
        let raw: Vec<Document> = self
            .jobs
            .clone_with_type::<Document>()
            .find(filter)
            .projection(flow_projection())
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        // A document of a foreign shape is left out, not an error.
        Ok(raw
            .into_iter()
            .filter_map(|d| mongodb::bson::from_bson(Bson::Document(d)).ok())
            .collect())
    }
}

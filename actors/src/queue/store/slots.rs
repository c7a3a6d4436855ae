//! The periodic jobs' slots (`queue_slots`): one document per fired slot,
//! whose unique `_id` makes each slot fire once across the fleet (the
//! protocol is [`crate::queue::scheduler`]'s), and the insert of a slot's job.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime as BsonDateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{JobStore, SLOTS};
use crate::queue::error::QueueError;
use crate::queue::job::Job;
use crate::queue::schedule::Schedule;
use crate::store::{ensure_indexes, index, is_duplicate_key, StoreError};

/// A fired slot, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlotDoc {
    /// `<name>@<slot time>`.
    #[serde(rename = "_id")]
    id: String,
    schedule: String,
    slot: BsonDateTime,
    /// The job this slot enqueues.
    job_id: ObjectId,
    created_at: BsonDateTime,
}

/// The `queue_slots` collection.
#[derive(Clone)]
pub struct SlotStore {
    slots: Collection<SlotDoc>,
}

impl SlotStore {
    pub fn new(db: &Database) -> Self {
        Self {
            slots: db.collection(SLOTS),
        }
    }

    pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
        ensure_indexes(
            &db.collection::<Document>(SLOTS),
            vec![
                index(doc! { "schedule": 1, "slot": -1 }, false),
                index(doc! { "slot": 1 }, false),
            ],
        )
        .await
        .map_err(StoreError::from)
    }

    /// Take the slot `id` for a new job; the id of the slot's job (this
    /// one's if the insert won, else the winner's).
    pub(crate) async fn take(
        &self,
        schedule: &Schedule,
        at: DateTime<Utc>,
    ) -> Result<Option<ObjectId>, QueueError> {
        let now = BsonDateTime::now();
        let slot = SlotDoc {
            id: schedule.slot_id(at),
            schedule: schedule.name.clone(),
            slot: BsonDateTime::from_millis(at.timestamp_millis()),
            job_id: ObjectId::new(),
            created_at: now,
        };
        match self.slots.insert_one(&slot).await {
            Ok(_) => Ok(Some(slot.job_id)),
            Err(err) if is_duplicate_key(&err) => {
                let found = self.slots.find_one(doc! { "_id": &slot.id }).await?;
                Ok(found.map(|slot| slot.job_id))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The job id of the latest slot of `schedule` taken, if any.
    pub(crate) async fn latest_job(&self, schedule: &str) -> Result<Option<ObjectId>, QueueError> {
        let latest: Vec<SlotDoc> = self
            .slots
            .find(doc! { "schedule": schedule })
            .sort(doc! { "slot": -1 })
            .limit(1)
            .await?
            .try_collect()
            .await?;
        Ok(latest.first().map(|slot| slot.job_id))
    }

    /// Delete the slots before `cutoff`.
    pub async fn prune(&self, cutoff: BsonDateTime) -> Result<u64, QueueError> {
        let pruned = self
            .slots
            .delete_many(doc! { "slot": { "$lt": cutoff } })
            .await?;
        Ok(pruned.deleted_count)
    }
}

impl JobStore {
    /// Insert a pending job of `schedule`'s under `id`, due now; `false`
    /// if a job has that id already.
    pub(crate) async fn insert_scheduled(
        &self,
        id: ObjectId,
        schedule: &Schedule,
    ) -> Result<bool, QueueError> {
        let (payload, now) = (schedule.payload.clone(), self.clock.now());
        let mut job = Job::new_at(&schedule.kind, payload, self.max_attempts, now);
        job.id = id;
        match self.jobs.insert_one(&job).await {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

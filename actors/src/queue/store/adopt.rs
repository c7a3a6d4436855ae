//! What migrations read and write of the queue's collections: whether the
//! database holds jobs (and NestJS ones), and the NestJS service's jobs
//! carried over into Troupe's shape ([`crate::migrate`]'s `adopt-nestjs`
//! decides the shape; this room only reads and writes).
//!
//! A NestJS job is recognised by shape: it has no `attempts`. Every write
//! here is guarded by that shape, so a run killed half-way is finished by
//! the next and a job already adopted is left alone.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::{Collection, Database};

use super::{ATTEMPTS, JOBS};
use crate::queue::job::{Attempt, Job};
use crate::store::{is_duplicate_key, StoreError};

/// A NestJS job: no `attempts`.
fn nest_job() -> Document {
    doc! { "attempts": { "$exists": false } }
}

/// The jobs collection as migrations see it: raw documents of any shape.
#[derive(Clone)]
pub struct Adoption {
    raw: Collection<Document>,
    jobs: Collection<Job>,
    attempts: Collection<Attempt>,
}

impl Adoption {
    pub fn new(db: &Database) -> Self {
        Self {
            raw: db.collection(JOBS),
            jobs: db.collection(JOBS),
            attempts: db.collection(ATTEMPTS),
        }
    }

    /// Whether any job is stored (of any shape).
    pub async fn holds_jobs(&self) -> Result<bool, StoreError> {
        self.holds(doc! {}).await
    }

    /// Whether any job in the NestJS service's shape is stored.
    pub async fn holds_nest_jobs(&self) -> Result<bool, StoreError> {
        self.holds(nest_job()).await
    }

    async fn holds(&self, filter: Document) -> Result<bool, StoreError> {
        let one = self
            .raw
            .find_one(filter)
            .projection(doc! { "_id": 1 })
            .await?;
        Ok(one.is_some())
    }

    /// Every NestJS job, as stored, one at a time (a cursor: the database
    /// may hold many).
    pub async fn nest_jobs(
        &self,
    ) -> Result<BoxStream<'static, Result<Document, StoreError>>, StoreError> {
        let cursor = self.raw.find(nest_job()).await?;
        Ok(cursor.map_err(StoreError::from).boxed())
    }

    /// Store `job`, the Troupe shape of the NestJS job of its `_id`, and
    /// the record of its interrupted `attempt` if it has one. The record
    /// first (a duplicate is one a killed run wrote), then the job, replaced
    /// only while still in the NestJS shape.
    pub async fn adopt(&self, job: &Job, attempt: Option<&Attempt>) -> Result<(), StoreError> {
        if let Some(attempt) = attempt {
            match self.attempts.insert_one(attempt).await {
                Err(err) if !is_duplicate_key(&err) => return Err(err.into()),
                _ => {}
            }
        }
        let mut filter = nest_job();
        filter.insert("_id", job.id);
        self.jobs.replace_one(filter, job).await?;
        Ok(())
    }
}

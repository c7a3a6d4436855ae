//! The persistent job queue's documents and the enqueue side.
//!
//! A job is a document in the `jobs` collection; producers insert it
//! `pending` and the queue poller claims it. Dates are BSON dates.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

pub const COLLECTION: &str = "jobs";

/// Attempts a job gets by default before it is `failed`.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// A job document, field names as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Document,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime>,
    pub last_error: Option<String>,
    pub result: Option<Document>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub completed_at: Option<DateTime>,
}

impl Job {
    /// A new pending job, due now.
    pub fn new(kind: &str, payload: Document) -> Self {
        let now = DateTime::now();
        Self {
            id: ObjectId::new(),
            kind: kind.into(),
            payload,
            status: JobStatus::Pending,
            attempts: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            result: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }
}

pub fn collection(db: &Database) -> Collection<Job> {
    db.collection(COLLECTION)
}

/// Insert a pending job; returns its id once the write is acknowledged.
pub async fn enqueue(
    jobs: &Collection<Job>,
    kind: &str,
    payload: Document,
) -> mongodb::error::Result<ObjectId> {
    let job = Job::new(kind, payload);
    jobs.insert_one(&job).await?;
    Ok(job.id)
}

/// Indexes for the claim query: due pending jobs in FIFO order, and expired leases.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    collection(db)
        .create_indexes([
            IndexModel::builder()
                .keys(doc! { "status": 1, "runAt": 1, "createdAt": 1 })
                .build(),
            IndexModel::builder()
                .keys(doc! { "status": 1, "lockedUntil": 1 })
                .build(),
        ])
        .await?;
    Ok(())
}

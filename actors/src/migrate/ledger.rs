//! [`Ledger`]: the runner's small store seam (the applied records, the lock
//! generations, whether the database holds data), and [`MongoLedger`], the
//! service's.

use futures::future::BoxFuture;
use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::FindOneOptions;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use crate::queue::store::adopt::Adoption;
use crate::store::{is_duplicate_key, StoreError};

/// The applied migrations.
pub const RECORDS: &str = "migrations";
/// The lock's generations (see [`super::lock`]).
pub const LOCKS: &str = "migration_locks";

/// Whether binaries that predate a migration may keep serving a database it
/// was applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// They may (new indexes, new optional fields, new collections).
    Additive,
    /// They may not: a binary that does not know it refuses to serve.
    Breaking,
}

impl Compat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Additive => "additive",
            Self::Breaking => "breaking",
        }
    }
}

/// The record of one applied migration (`migrations`, `_id` its version).
/// A binary reads the records of migrations it does not know, so everything
/// it needs to decide (the compatibility) is stored, not looked up in code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    #[serde(rename = "_id")]
    pub version: i32,
    pub name: String,
    pub description: String,
    pub compat: Compat,
    pub applied_at: DateTime,
    /// The instance (host-pid-random) that applied it.
    pub by: String,
    /// What it changed, as its summary printed it.
    #[serde(default)]
    pub summary: Vec<String>,
}

/// One generation of the lock (`migration_locks`, `_id` the generation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    #[serde(rename = "_id")]
    pub generation: i64,
    pub holder: String,
    pub acquired_at: DateTime,
    pub expires_at: DateTime,
    #[serde(default)]
    pub released: bool,
}

/// What the data in a database looks like (its `users` and `jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No user, no job.
    Empty,
    /// Troupe's own documents.
    Troupe,
    /// At least one document in the NestJS service's shape (a user with a
    /// `hash`, a job without `attempts`).
    Nestjs,
}

type Fut<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// What [`Ledger::update_lock`] sets on a lock its holder still holds: a
/// renewal moves `expires_at` on; a release ends it (`released`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockEnd {
    pub expires_at: DateTime,
    pub released: bool,
}

/// What the runner reads and writes. Every write is a unique-key insert or
/// an update by `_id`: atomic on MongoDB and on FerretDB v1 alike.
pub trait Ledger: Send + Sync {
    /// Every applied record, by version.
    fn applied(&self) -> Fut<'_, Vec<Applied>>;
    /// Insert `record`; an existing record of its version is kept (`Ok`).
    fn record<'a>(&'a self, record: &'a Applied) -> Fut<'a, ()>;
    /// What the database's users and jobs look like.
    fn shape(&self) -> Fut<'_, Shape>;
    /// The newest lock generation.
    fn latest_lock(&self) -> Fut<'_, Option<LockRecord>>;
    /// Insert `lock`; `false` when its generation exists already.
    fn insert_lock<'a>(&'a self, lock: &'a LockRecord) -> Fut<'a, bool>;
    /// Set `end` on `generation` if `holder` holds it (not yet released);
    /// `false` otherwise.
    fn update_lock<'a>(&'a self, generation: i64, holder: &'a str, end: LockEnd) -> Fut<'a, bool>;
    /// The database's clock, as far as leases are concerned.
    fn now(&self) -> DateTime {
        DateTime::now()
    }
}

/// The service's ledger: MongoDB (or FerretDB).
#[derive(Clone)]
pub struct MongoLedger {
    db: Database,
    records: Collection<Applied>,
    locks: Collection<LockRecord>,
}

impl MongoLedger {
    pub fn new(db: &Database) -> Self {
        Self {
            db: db.clone(),
            records: db.collection(RECORDS),
            locks: db.collection(LOCKS),
        }
    }

    /// The database the migrations' steps change.
    pub fn db(&self) -> &Database {
        &self.db
    }
}

impl Ledger for MongoLedger {
    fn applied(&self) -> Fut<'_, Vec<Applied>> {
        Box::pin(async move {
            let mut all: Vec<Applied> = self.records.find(doc! {}).await?.try_collect().await?;
            all.sort_by_key(|a| a.version);
            Ok(all)
        })
    }

    fn record<'a>(&'a self, record: &'a Applied) -> Fut<'a, ()> {
        Box::pin(async move {
            match self.records.insert_one(record).await {
                Err(err) if !is_duplicate_key(&err) => Err(err.into()),
                _ => Ok(()),
            }
        })
    }

    fn shape(&self) -> Fut<'_, Shape> {
        Box::pin(async move {
            let any = |name: &'static str, filter: Document| async move {
                let one = self
                    .db
                    .collection::<Document>(name)
                    .find_one(filter)
                    .projection(doc! { "_id": 1 })
                    .await?;
                Ok::<_, StoreError>(one.is_some())
            };
            // The jobs through the queue's store, the only reader of its collections.
            let jobs = Adoption::new(&self.db);
            if any("users", doc! { "hash": { "$exists": true } }).await?
                || jobs.holds_nest_jobs().await?
            {
                Ok(Shape::Nestjs)
            } else if any("users", doc! {}).await? || jobs.holds_jobs().await? {
                Ok(Shape::Troupe)
            } else {
                Ok(Shape::Empty)
            }
        })
    }

    fn latest_lock(&self) -> Fut<'_, Option<LockRecord>> {
        Box::pin(async move {
            let newest = FindOneOptions::builder().sort(doc! { "_id": -1 }).build();
            Ok(self.locks.find_one(doc! {}).with_options(newest).await?)
        })
    }

    fn insert_lock<'a>(&'a self, lock: &'a LockRecord) -> Fut<'a, bool> {
        Box::pin(async move {
            match self.locks.insert_one(lock).await {
                Ok(_) => Ok(true),
                Err(err) if is_duplicate_key(&err) => Ok(false),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn update_lock<'a>(&'a self, generation: i64, holder: &'a str, end: LockEnd) -> Fut<'a, bool> {
        let LockEnd {
            expires_at,
            released,
        } = end;
        Box::pin(async move {
            let updated = self
                .locks
                .update_one(
                    doc! { "_id": generation, "holder": holder, "released": false },
                    doc! { "$set": { "expiresAt": expires_at, "released": released } },
                )
                .await?;
            Ok(updated.matched_count == 1)
        })
    }
}

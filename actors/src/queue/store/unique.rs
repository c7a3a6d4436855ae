//! Unique jobs: at most one job of a type with a given unique key is
//! pending or processing, across every instance.
//!
//! # How
//! A key is a document in `job_keys` whose `_id` is `"<type>\u{1f}<key>"`
//! and which names the job holding it (`jobId`). Taking a key is inserting
//! that document: a unique `_id` insert, atomic on MongoDB and FerretDB
//! alike (FerretDB has no partial indexes, so a unique index over `jobs`
//! could not leave ended jobs out). The key is released (its document
//! deleted, guarded by `jobId`) when its job ends: completed, failed for
//! good, or cancelled ([`JobStore::release_unique`]).
//!
//! # Write order
//! **Key first, then the job** (with the id the key names). A crash between
//! the two leaves a key naming no job, never a job without its key; such a
//! key is *stale* once older than `queue.hold` (its producer wrote it and
//! died), and the next enqueue with that key takes it over. Job first would
//! let another instance claim and run the job before its key is known to be
//! ours, or leave a running job whose key someone else holds.
//!
//! At its end, **the job's final status first, then the release**: a
//! duplicate arriving in between sees an ended job and waits for the
//! release, rather than finding the key free while the job still runs.
//!
//! # Stale keys
//! A key whose job ended (or is gone) is stale once that end (or the key)
//! is `queue.hold` old: its release was lost to a crash. A duplicate takes
//! it over with a compare-and-delete (`_id` and `jobId`), then inserts its
//! own. Younger, the release (or the job's write) is presumably in flight,
//! milliseconds away: the duplicate waits for it a little (about 3 s),
//! then gives up with [`QueueError::UniqueKeyBusy`].
//!
//! The grace also keeps the release and a takeover apart: FerretDB v1
//! deletes by reading the matches and then deleting their `_id`s, so a
//! guarded delete racing a delete-and-insert of the same `_id` could remove
//! the new document. Two duplicates taking over the same stale key within
//! milliseconds of each other can still meet that on FerretDB (not on
//! MongoDB, whose delete is atomic); it needs a crash first.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{JobStore, KEYS};
use crate::queue::clock::Clock;
use crate::queue::error::QueueError;
use crate::queue::job::{Job, JobStatus};
use crate::store::is_duplicate_key;

/// How often, and after what pause, a duplicate re-reads a key whose job
/// is being written or released: 10 ms doubling to 1 s, about 3.3 s in all
/// (a loaded store can take a second or more between the two writes).
const WAITS: [u64; 9] = [10, 20, 40, 80, 160, 320, 640, 1000, 1000];

/// Most tries at inserting a key that keeps changing hands under us.
const ROUNDS: usize = 16;

/// A unique key, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyDoc {
    /// `"<type>\u{1f}<key>"`.
    #[serde(rename = "_id")]
    id: String,
    job_id: ObjectId,
    created_at: DateTime,
}

/// Who holds a key, as [`UniqueKeys::take`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The key now names the job asked for.
    Ours,
    /// Another job, pending or processing, holds it.
    HeldBy(ObjectId),
}

/// What the holder of a key is doing.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    Live,
    /// Ended or gone long enough ago: the release was lost.
    Stale,
    /// Not written yet, or ended a moment ago: its write or release is on
    /// its way.
    InFlight,
}

/// The `job_keys` collection.
#[derive(Clone)]
pub(crate) struct UniqueKeys {
    keys: Collection<KeyDoc>,
    jobs: Collection<Job>,
    /// The store's clock (set by [`JobStore::with_clock`]).
    pub(crate) clock: Clock,
}

/// What the holder of a key is doing, given its job's status and last
/// write (`None`: no such job), when the key was written, now, and the
/// `grace` after which an ended (or unwritten) holder is stale.
fn holder_state(
    job: Option<(JobStatus, DateTime)>,
    key_written: DateTime,
    now: DateTime,
    grace: Duration,
) -> Holder {
    let since = match job {
        Some((JobStatus::Waiting | JobStatus::Pending | JobStatus::Processing, _)) => {
            return Holder::Live
        }
        Some((_, ended)) => ended,
        None => key_written,
    };
    let stale_before = now.timestamp_millis() - grace.as_millis() as i64;
    if since.timestamp_millis() <= stale_before {
        Holder::Stale
    } else {
        Holder::InFlight
    }
}

/// The stored `_id` of `key` for jobs of type `kind`.
fn key_id(kind: &str, key: &str) -> String {
    format!("{kind}\u{1f}{key}")
}

impl UniqueKeys {
    pub fn new(db: &Database, jobs: Collection<Job>) -> Self {
        Self {
            keys: db.collection(KEYS),
            jobs,
            clock: Clock::system(),
        }
    }

    /// Take `key` of type `kind` for the job `job` (not written yet, or
    /// being retried), unless a live job holds it. `grace`: how old an
    /// ended holder (or a key naming no job) must be to count as stale
    /// (`queue.hold`).
    pub async fn take(
        &self,
        kind: &str,
        key: &str,
        job: ObjectId,
        grace: Duration,
    ) -> Result<Taken, QueueError> {
        let id = key_id(kind, key);
        let mut waits = WAITS.iter();
        for _ in 0..ROUNDS {
            if self.insert(&id, job).await? {
                return Ok(Taken::Ours);
            }
            let Some(holder) = self.keys.find_one(doc! { "_id": &id }).await? else {
                continue; // released meanwhile: try again
            };
            if holder.job_id == job {
                return Ok(Taken::Ours);
            }
            match self.holder(&holder, grace).await? {
                Holder::Live => return Ok(Taken::HeldBy(holder.job_id)),
                Holder::Stale => {
                    tracing::warn!(target: "worker", key = %id.replace('\u{1f}', "/"), job = %holder.job_id,
                        "taking over a unique key whose job ended without releasing it");
                    self.keys
                        .delete_one(doc! { "_id": &id, "jobId": holder.job_id })
                        .await?;
                }
                Holder::InFlight => match waits.next() {
                    Some(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
                    None => break,
                },
            }
        }
        Err(QueueError::UniqueKeyBusy)
    }

    /// Insert the key naming `job`; `false` if it exists.
    async fn insert(&self, id: &str, job: ObjectId) -> Result<bool, QueueError> {
        let key = KeyDoc {
            id: id.to_owned(),
            job_id: job,
            created_at: self.clock.now(),
        };
        match self.keys.insert_one(&key).await {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether the job `key` names still holds it.
    async fn holder(&self, key: &KeyDoc, grace: Duration) -> Result<Holder, QueueError> {
        let job = self.jobs.find_one(doc! { "_id": key.job_id }).await?;
        let job = job.as_ref().map(|job| (job.status, job.updated_at));
        Ok(holder_state(job, key.created_at, self.clock.now(), grace))
    }

    /// Release `key` of type `kind` if `job` still holds it.
    pub async fn release(&self, kind: &str, key: &str, job: ObjectId) -> Result<(), QueueError> {
        self.keys
            .delete_one(doc! { "_id": key_id(kind, key), "jobId": job })
            .await?;
        Ok(())
    }
}

impl JobStore {
    /// Take `job`'s unique key for it (see [`crate::queue::unique`]); `grace`
    /// is `queue.hold`.
    pub(crate) async fn take_unique(
        &self,
        job: &Job,
        key: &str,
        grace: Duration,
    ) -> Result<Taken, QueueError> {
        self.keys.take(&job.kind, key, job.id, grace).await
    }

    /// Release `job`'s unique key, if it has one and still holds it. Call
    /// it once the job has ended for good (completed, failed for good,
    /// cancelled), *after* writing that end: a duplicate enqueued in
    /// between then sees the ended job and waits for the release. A release
    /// lost to a crash is taken over by the next duplicate after `queue.hold`.
    pub async fn release_unique(&self, job: &Job) -> Result<(), QueueError> {
        match &job.unique_key {
            Some(key) => self.release_key(job.id, &job.kind, key).await,
            None => Ok(()),
        }
    }

    /// [`release_unique`](Self::release_unique) for the job `id` of type
    /// `kind` holding `key`.
    pub async fn release_key(&self, id: ObjectId, kind: &str, key: &str) -> Result<(), QueueError> {
        self.keys.release(kind, key, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn at(secs: i64) -> DateTime {
        DateTime::from_millis(1_800_000_000_000 + secs * 1000)
    }

    #[test]
    fn a_waiting_pending_or_processing_holder_is_live_however_old() {
        for status in [
            JobStatus::Waiting,
            JobStatus::Pending,
            JobStatus::Processing,
        ] {
            let holder = holder_state(Some((status, at(0))), at(0), at(86_400), GRACE);
            assert_eq!(holder, Holder::Live, "{status:?}");
        }
    }

    #[test]
    fn an_ended_holder_is_stale_once_its_end_is_grace_old() {
        for status in [
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            let ended = Some((status, at(100)));
            assert_eq!(holder_state(ended, at(0), at(129), GRACE), Holder::InFlight);
            assert_eq!(holder_state(ended, at(0), at(130), GRACE), Holder::Stale);
        }
    }

    #[test]
    fn a_key_naming_no_job_is_stale_once_the_key_is_grace_old() {
        // Its producer wrote the key and died before the job (or is writing it).
        assert_eq!(holder_state(None, at(0), at(29), GRACE), Holder::InFlight);
        assert_eq!(holder_state(None, at(0), at(30), GRACE), Holder::Stale);
    }

    #[test]
    fn a_key_is_stored_under_its_type_and_key() {
        assert_eq!(key_id("report.build", "a-17"), "report.build\u{1f}a-17");
        // The separator is a control character no valid key holds.
        assert_ne!(key_id("a", "b/c"), key_id("a/b", "c"));
    }
}

//! The lot take: the jobs of a batch whose attempts this claimer reserved,
//! taken with one `updateMany` per shape and read back with one `find`,
//! instead of one `findAndModify` each ([`super::batch`], step 2).
//!
//! # The protocol
//! The reserved jobs are grouped by what their take's filter says of them
//! besides their `_id`: listed `pending` (due) or `processing` (lease
//! expired), their attempt count `k-1`, their type. Each group is taken by
//! one `updateMany {_id: {$in: group}, status, attempts: k-1, type, runAt ≤
//! now | lockedUntil < now}` → `processing`, this instance's lease,
//! `attempts: k`, and `lot: <a fresh id for this batch>`; then one `find
//! {_id: {$in: reserved}, lot}` reads back what the batch took. A reserved
//! job not read back moved on since it was listed (cancelled, paused, taken
//! for another attempt): its reservation is given back, as after a single
//! take.
//!
//! # Exactly once without an atomic `updateMany`
//! FerretDB v1's `updateMany` reads the matching documents, then writes
//! each back by `_id`: two statements can both pass one filter. It is safe
//! because every `_id` in a group is one whose attempt `k` this claimer
//! holds (the unique record `"<jobId>:<k>"` it inserted), and the filter
//! names that attempt (`attempts: k-1`): no other claimer holds `k`, so no
//! other statement may take the job at `k`, and a claimer after attempt
//! `k+1` lists the job only once this write has landed. The same argument
//! as for one `findAndModify` per job, which is no more atomic on FerretDB.
//!
//! # What it costs
//! One command per group (a batch of one type: one) and one read, whatever
//! the batch's size. On MongoDB each is an `_id` index seek per job. On
//! FerretDB v1.24.2 an `_id: {$in}` is not pushed down to PostgreSQL; the
//! equalities are (`status`, `attempts`, `type`, `lot`), so the
//! `updateMany` reads that type's pending jobs at that attempt count into
//! FerretDB (one FerretDB scan of the backlog per batch) and the `find` the
//! batch's own jobs (one PostgreSQL scan). A `findAndModify` by `_id` costs
//! a PostgreSQL scan per job, much cheaper per row: so the lot take pays
//! only from some batch size on, `queue.lot_min` (see `docs/job-queue.md`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Candidate, Job, JobStatus};
use crate::queue::pause::Pauses;

/// What the jobs of one `updateMany` share: their listed status (`true`:
/// `processing` with an expired lease), attempt count and type (`None`:
/// not listed, e.g. a job claimed by id).
type Shape<'a> = (bool, i32, Option<&'a str>);

impl JobStore {
    /// Take the jobs `ours` (indices into `batch`, each with its reserved
    /// `attempts[i]`) as one lot: each job taken, with its index. A
    /// reservation whose job was not taken is given back; a reservation too
    /// old to take ([`JobStore::take_reserved`]) likewise, untaken. `Err`:
    /// a write or the read-back failed (what it took, if anything, is
    /// reclaimed after its lease; the reservations stay, as after a failed
    /// single take).
    pub(super) async fn take_lot(
        &self,
        batch: &[(Candidate, String)],
        attempts: &[Attempt],
        ours: Vec<usize>,
        lease: Duration,
        paused: &Pauses,
    ) -> Result<Vec<(usize, Job)>, QueueError> {
        let now = self.clock.now().timestamp_millis();
        let (fresh, old): (Vec<usize>, Vec<usize>) = (ours.into_iter()).partition(|&i| {
            now - attempts[i].started_at.timestamp_millis() <= lease.as_millis() as i64
        });
        if !old.is_empty() {
            tracing::warn!(target: "worker", jobs = old.len(), "reservations too old to take; giving them back");
            self.unreserve_all(old.iter().map(|&i| &attempts[i])).await;
        }
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let lot = ObjectId::new();
        let mut groups: BTreeMap<Shape, Vec<ObjectId>> = BTreeMap::new();
        for &i in &fresh {
            let candidate = &batch[i].0;
            let shape = (
                candidate.status == JobStatus::Processing,
                candidate.attempts,
                candidate.kind.as_deref(),
            );
            groups.entry(shape).or_default().push(candidate.id);
        }
        for (shape, ids) in groups {
            if let Some(filter) = self.lot_filter(shape, ids, paused) {
                self.jobs
                    .update_many(filter, self.lot_update(lot, lease))
                    .await?;
            }
        }
        let ids: Vec<ObjectId> = fresh.iter().map(|&i| batch[i].0.id).collect();
        let mut taken: HashMap<ObjectId, Job> = (self.jobs)
            .find(doc! { "_id": { "$in": ids }, "lot": lot })
            .await?
            .map_ok(|job| (job.id, job))
            .try_collect()
            .await?;
        let mut won = Vec::new();
        let mut lost = Vec::new();
        for i in fresh {
            match taken.remove(&batch[i].0.id) {
                Some(job) => won.push((i, job)),
                None => lost.push(&attempts[i]),
            }
        }
        self.unreserve_all(lost).await;
        let mut reclaimed = Vec::new();
        for (i, job) in &won {
            let candidate = &batch[*i].0;
            if candidate.status == JobStatus::Processing {
                reclaimed.push(self.close_abandoned_attempt(job.id, candidate.attempts));
            }
        }
        futures::future::join_all(reclaimed).await;
        Ok(won)
    }

    /// The filter of one group's take: still as listed; `None` if its type
    /// may not be claimed (paused, or not handled here).
    fn lot_filter(
        &self,
        (expired, attempts, kind): Shape,
        ids: Vec<ObjectId>,
        paused: &Pauses,
    ) -> Option<Document> {
        let now = self.clock.now();
        let mut filter = if expired {
            doc! {
                "_id": { "$in": ids }, "status": "processing", "attempts": attempts,
                "lockedUntil": { "$lt": now },
            }
        } else {
            doc! {
                "_id": { "$in": ids }, "status": "pending", "attempts": attempts,
                "runAt": { "$lte": now },
            }
        };
        match kind {
            // An equality, which FerretDB pushes down to PostgreSQL, where
            // the pauses' `$in`/`$nin` is not.
            Some(kind) if paused.allows(self.handled.as_deref(), kind) => {
                filter.insert("type", kind);
            }
            Some(_) => return None,
            None => paused.restrict(self.handled.as_deref(), &mut filter),
        }
        Some(filter)
    }

    /// The take's update: `processing` under this instance's lease, the
    /// next attempt, and the lot's id (what the read-back finds).
    fn lot_update(&self, lot: ObjectId, lease: Duration) -> Document {
        doc! {
            "$set": {
                "status": "processing",
                "lockedBy": &self.instance,
                "lockedUntil": self.clock.after(lease),
                "updatedAt": self.clock.now(),
                "lot": lot,
            },
            "$inc": { "attempts": 1 },
        }
    }

    /// Give back every reservation of `attempts` (a few at a time); a
    /// failure is logged, and the record is replaced once abandoned.
    async fn unreserve_all<'a>(&self, attempts: impl IntoIterator<Item = &'a Attempt>) {
        // Built first, then streamed (see `super::batch`: a stream of
        // closures over borrowed attempts is not `Send` for every lifetime).
        let mut deletes = Vec::new();
        for attempt in attempts {
            deletes.push(async move {
                if let Err(err) = self.unreserve(attempt).await {
                    tracing::warn!(target: "worker", job = %attempt.job_id, error = %err, "giving a reservation back failed");
                }
            });
        }
        stream::iter(deletes)
            .buffer_unordered(super::batch::TAKES_IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
    }
}

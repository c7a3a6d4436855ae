//! Batch claims: one poll claims up to `queue.claim_batch` listed jobs in a
//! constant number of store round trips per job, not one claim each.
//!
//! # The protocol (the single claim's, [`super::claim`], in bulk)
//! 1. **Reserve** every listed job's next attempt with one unordered
//!    `insertMany` of the attempt records `"<jobId>:<n>"`. The unique `_id`
//!    stays the arbiter: the records this call inserted are this claimer's
//!    attempts, and nobody else's. The others come back as duplicate-key
//!    write errors by index (someone else reserved the attempt, or a
//!    cancellation's marker is in); any other write error leaves that job
//!    unreserved and is logged. Unordered, so one refused record never
//!    keeps the rest from being inserted.
//! 2. **Take** the reserved jobs: a batch of at least `queue.lot_min` of
//!    them as one lot ([`super::lot`]: one `updateMany` per shape, one read
//!    back), a smaller one (or one with limited types) job by job, each by
//!    `_id` with the single claim's fenced `findOneAndUpdate` (still as
//!    listed, not paused), [`TAKES_IN_FLIGHT`] at a time. Why not always a
//!    lot: FerretDB v1.24.2 pushes an `_id` *equality* down to PostgreSQL
//!    but not `$in`, so a lot's `updateMany` reads the backlog's pending jobs
//!    into FerretDB — measured 1.5–2.7 s over 10,000 jobs whatever the
//!    batch's size, against 10–30 ms for a take by `_id`
//!    (`results/claim-shapes-2026-12-07.md`, `results/lots-2026-12-07.md`).
//!    Nor one `update` command of a statement per job: FerretDB runs them
//!    one after another, half the speed of 8 takes in flight; and never a
//!    large one (256 statements in one hung FerretDB v1.24.2). A job
//!    that moved on since it was listed (cancelled, paused, taken for another
//!    attempt) gets its reservation deleted, as a single claim does.
//! 3. **Look into** the first [`DUPLICATES_LOOKED_INTO`] duplicates (in
//!    line order), one read by `_id` each: a cancellation's marker settles
//!    its job `cancelled`; a reservation abandoned by a claimer that died is
//!    replaced and the job taken. Only a few per batch, so that a race
//!    between instances (where most duplicates are fresh reservations of
//!    the winner) costs no read per lost job; a job held up by a stale
//!    record stays first in line, so a later batch reaches it.
//!
//! So a batch of N jobs nobody contests costs one `insert` and, as a lot,
//! one `update` and one `find`; job by job, N `findAndModify`, at most
//! [`TAKES_IN_FLIGHT`] in flight: ⌈N/8⌉ rounds.

use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use mongodb::error::ErrorKind;

use super::tokens::Gate;
use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{Attempt, Candidate, Job};
use crate::queue::pause::Pauses;
use crate::store::error_chain;

/// How many jobs of a batch are taken at once.
pub const TAKES_IN_FLIGHT: usize = 8;

/// How many duplicate reservations of one batch are looked into.
pub const DUPLICATES_LOOKED_INTO: usize = 8;

/// The duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// What step 1 did for one job of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    /// This claimer inserted the attempt's record.
    Ours,
    /// The record exists already (another claimer's, or a marker).
    Taken,
    /// The store refused the record for another reason.
    Refused,
}

impl JobStore {
    /// Claim `batch` (listed candidates, each with the name of the executor
    /// that is to run it): what each came to, in the batch's order (`None`:
    /// not this claimer's). See the module doc for the protocol; `Err` only
    /// if the reservation itself failed (then nothing was taken).
    pub async fn claim_batch(
        &self,
        batch: &[(Candidate, String)],
        lease: Duration,
        paused: &Pauses,
    ) -> Result<Vec<Option<Job>>, QueueError> {
        let claimed = Mutex::new(vec![None; batch.len()]);
        let keep = |i: usize, job: Job| claimed.lock().expect("claimed")[i] = Some(job);
        self.claim_batch_each(batch, lease, paused, keep).await?;
        Ok(claimed.into_inner().expect("claimed"))
    }

    /// [`claim_batch`](Self::claim_batch), handing each job this claimer
    /// takes to `taken` (with its index in `batch`) the moment it is taken:
    /// its lease runs from then, so its executor should start it then, not
    /// once the whole batch is taken.
    ///
    /// Jobs of a type with a concurrency limit are claimed only with a
    /// token of their group ([`crate::queue::limit`]), taken first; a token
    /// whose job this claimer does not get is given back.
    pub async fn claim_batch_each(
        &self,
        batch: &[(Candidate, String)],
        lease: Duration,
        paused: &Pauses,
        taken: impl Fn(usize, Job) + Sync,
    ) -> Result<(), QueueError> {
        let candidates: Vec<&Candidate> = batch.iter().map(|(c, _)| c).collect();
        let gates = self.gates(&candidates, lease).await?;
        if gates.iter().all(|gate| *gate == Gate::OPEN) {
            return (self.claim_batch_open(batch, (lease, true), paused, taken)).await;
        }
        let (open, index): (Vec<(Candidate, String)>, Vec<usize>) = (batch.iter().cloned())
            .zip(0..)
            .filter(|(_, i)| gates[*i] != Gate::Closed)
            .unzip();
        let won = Mutex::new(vec![false; open.len()]);
        let claimed = self
            .claim_batch_open(&open, (lease, false), paused, |j, mut job| {
                let i = index[j];
                if let Gate::Go { token, .. } = &gates[i] {
                    job.token = token.clone();
                }
                won.lock().expect("won")[j] = true;
                taken(i, job);
            })
            .await;
        let won = won.into_inner().expect("won");
        let unused = (index.iter().zip(won))
            .filter(|(_, won)| !won)
            .flat_map(|(&i, _)| gates[i].unused(batch[i].0.id))
            .collect();
        self.give_back_unused(unused).await;
        claimed
    }

    /// [`claim_batch_each`](Self::claim_batch_each) once the limits let
    /// every job of `batch` run; `lots`: its reserved jobs may be taken as
    /// one lot ([`super::lot`]) when there are at least `queue.lot_min`.
    async fn claim_batch_open(
        &self,
        batch: &[(Candidate, String)],
        (lease, lots): (Duration, bool),
        paused: &Pauses,
        taken: impl Fn(usize, Job) + Sync,
    ) -> Result<(), QueueError> {
        let attempts: Vec<Attempt> = (batch.iter())
            .map(|(candidate, executor)| self.next_attempt(candidate, executor))
            .collect();
        let reserved = self.reserve_batch(&attempts).await?;
        let ours: Vec<usize> = (0..batch.len())
            .filter(|&i| reserved[i] == Reserved::Ours)
            .collect();
        let as_lot = lots && self.lot_min > 0 && ours.len() >= self.lot_min;
        if as_lot {
            let took = self.take_lot(batch, &attempts, ours, lease, paused).await;
            let took = took.inspect_err(|err| tracing::warn!(target: "worker", error = %error_chain(err), "taking a lot failed"));
            for (i, job) in took.unwrap_or_default() {
                taken(i, job);
            }
        }
        // The futures are built first and only then streamed: a stream of
        // closures over borrowed candidates is not `Send` for every lifetime.
        let (taken, mut takes, mut looks) = (&taken, Vec::new(), Vec::new());
        for (i, (candidate, _)) in batch.iter().enumerate() {
            let attempt = &attempts[i];
            match reserved[i] {
                Reserved::Ours if as_lot => {}
                Reserved::Ours => takes.push(async move {
                    let job = self.take_reserved(candidate, attempt, lease, paused).await;
                    if let Some(job) = logged(candidate, job) {
                        taken(i, job);
                    }
                }),
                Reserved::Taken if looks.len() < DUPLICATES_LOOKED_INTO => looks.push(async move {
                    let job = self.retake(candidate, attempt, lease, paused).await;
                    if let Some(job) = logged(candidate, job) {
                        taken(i, job);
                    }
                }),
                Reserved::Taken | Reserved::Refused => {}
            }
        }
        stream::iter(takes)
            .buffer_unordered(TAKES_IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        stream::iter(looks)
            .buffer_unordered(TAKES_IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        Ok(())
    }

    /// Step 1: insert every record in one unordered `insertMany`; what
    /// became of each, by index.
    async fn reserve_batch(&self, attempts: &[Attempt]) -> Result<Vec<Reserved>, QueueError> {
        let mut reserved = vec![Reserved::Ours; attempts.len()];
        if attempts.is_empty() {
            return Ok(reserved);
        }
        let err = match self.attempts.insert_many(attempts).ordered(false).await {
            Ok(_) => return Ok(reserved),
            Err(err) => err,
        };
        // Only the per-document failures say which records went in; any
        // other error (the command failed, a write concern unmet) leaves it
        // unknown, and a record left behind is replaced once abandoned.
        let ErrorKind::InsertMany(failure) = err.kind.as_ref() else {
            return Err(err.into());
        };
        if failure.write_concern_error.is_some() {
            return Err(err.into());
        }
        for write in failure.write_errors.iter().flatten() {
            let Some(slot) = reserved.get_mut(write.index) else {
                continue;
            };
            *slot = if write.code == DUPLICATE_KEY {
                Reserved::Taken
            } else {
                // By code only: a server may quote the document.
                tracing::warn!(target: "worker", code = write.code, "the store refused an attempt record");
                Reserved::Refused
            };
        }
        Ok(reserved)
    }

    /// Step 3 for one duplicate: the record may be a marker to settle or an
    /// abandoned reservation to replace ([`reserve_taken`](Self::reserve_taken));
    /// the job, if this claimer holds the attempt after all.
    async fn retake(
        &self,
        candidate: &Candidate,
        attempt: &Attempt,
        lease: Duration,
        paused: &Pauses,
    ) -> Result<Option<Job>, QueueError> {
        if !self.reserve_taken(attempt, candidate, lease).await? {
            return Ok(None);
        }
        self.take_reserved(candidate, attempt, lease, paused).await
    }
}

/// A failed take or look is logged and counts as not claimed: the job stays
/// as it was (or under this claimer's lease, should the failed write have
/// landed after all), and comes back to a listing either way.
fn logged(candidate: &Candidate, result: Result<Option<Job>, QueueError>) -> Option<Job> {
    result
        .inspect_err(|err| tracing::warn!(target: "worker", job = %candidate.id, error = %error_chain(err), "taking a reserved job failed"))
        .ok()
        .flatten()
}

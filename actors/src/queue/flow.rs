//! Flows: jobs that run only after other jobs complete.
//!
//! # Contract
//! - A job enqueued with `dependsOn` (at most [`MAX_DEPENDENCIES`] existing
//!   jobs; [`crate::queue::spec::JobSpec::depends_on`]) is `waiting` while
//!   one of them has not completed: never listed, never claimed, on any
//!   instance (listings and claims take only `pending` jobs). One whose
//!   dependencies have all completed already is `pending` at once.
//! - **Release** is one update fenced on `status: waiting` (→ `pending`,
//!   due at its own `runAt` or now, whichever is later, ranked from then):
//!   of two instances releasing the same job, one changes it and the other
//!   matches nothing, so a release twice is harmless.
//! - A dependency that failed, was cancelled or is gone applies the
//!   dependent's [`DependencyPolicy`]: `fail` (the default) ends it `failed`
//!   (fenced the same way), its `lastError` naming the dependency, and its
//!   own dependents then settle in turn; `hold` leaves it waiting until an
//!   operator retries the dependency (which then completes and releases
//!   it) or cancels the dependent.
//! - **Fast path**: the instance that ends a job for good (its executor,
//!   once the end is written; a cancel) settles the job's waiting dependents
//!   at once ([`Flows::after_end`]) — while it knows of waiting jobs (it
//!   enqueued one, or its last sweep saw one): a queue without flows pays
//!   nothing per job.
//! - **Safety net**: every instance's poller sweeps the waiting jobs every
//!   `queue.flow_sweep` ([`Flows::sweep`]: one page of at most
//!   [`SWEEP_PAGE`] waiting jobs and a read by `_id` of each of their
//!   dependencies per sweep, a cursor moving through them), so a job whose dependencies
//!   finished while the instance that ended them died (SIGKILL between the
//!   end and the release) is released, or failed, by any live instance.
//! - An enqueue writes the dependent `waiting` *then* reads its
//!   dependencies again: a dependency ending in between is either seen by
//!   that read or finds the dependent on its own fast path (and if both
//!   miss it, the sweep does not).
//! - Retrying a failed dependent makes it `waiting` again (its dependencies
//!   decide anew), never `pending` past them.
//!
//! # Failure
//! Every step is a fenced write by `_id`; a crash between any two leaves
//! states the sweep repairs. An error of the fast path is logged: the
//! sweep settles those jobs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use crate::events::{Event, Events};
pub use crate::queue::dependency::{DependencyPolicy, MAX_DEPENDENCIES};
use crate::queue::error::QueueError;
use crate::queue::job::{Job, JobStatus};
use crate::queue::store::JobStore;

/// Waiting jobs one sweep looks at.
pub const SWEEP_PAGE: i64 = 20;

/// Waiting dependents one end settles, cascades included (the sweep
/// settles any beyond).
pub const MAX_SETTLED_PER_END: usize = 500;

/// What a waiting job's dependencies, as read, make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every dependency completed: pending.
    Release,
    /// A dependency failed, was cancelled or is gone, and the policy is
    /// `fail`: failed, with this reason.
    Fail(String),
    /// Not yet (or held).
    Wait,
}

/// A dependency as read: its status and type (`None`: no such job).
pub type DependencyState<'a> = Option<&'a (JobStatus, String)>;

/// The verdict for a job of `policy` whose dependencies are `deps`.
pub fn verdict<'a>(
    policy: DependencyPolicy,
    deps: impl IntoIterator<Item = (ObjectId, DependencyState<'a>)>,
) -> Verdict {
    let mut all_completed = true;
    for (id, state) in deps {
        let why = match state {
            Some((JobStatus::Completed, _)) => continue,
            Some((JobStatus::Failed, kind)) => format!("{kind} job {id} failed"),
            Some((JobStatus::Cancelled, kind)) => format!("{kind} job {id} was cancelled"),
            None => format!("job {id} no longer exists"),
            Some(_) => {
                all_completed = false;
                continue;
            }
        };
        return match policy {
            DependencyPolicy::Fail => Verdict::Fail(format!("dependency {why}")),
            DependencyPolicy::Hold => Verdict::Wait,
        };
    }
    match all_completed {
        true => Verdict::Release,
        false => Verdict::Wait,
    }
}

/// What settling waiting jobs did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Made pending.
    pub released: usize,
    /// Failed by a dependency.
    pub failed: usize,
}

impl std::ops::AddAssign for Settled {
    fn add_assign(&mut self, other: Self) {
        self.released += other.released;
        self.failed += other.failed;
    }
}

/// One sweep: what it settled, and where the next one starts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub settled: Settled,
    /// The last waiting job looked at (`None`: the sweep reached the end;
    /// the next starts over).
    pub cursor: Option<ObjectId>,
}

/// Settles waiting jobs: the fast path and the sweep share it.
pub(crate) struct Flows<'a> {
    pub store: &'a JobStore,
    /// `queue.priority_aging`, to rank a released job.
    pub aging: Duration,
    /// Where `JobFailed` is published for a job a dependency failed.
    pub events: &'a Events,
}

impl Flows<'_> {
    /// Settle `jobs` (waiting, as read) by their dependencies' states;
    /// what it did, and the ids of those it failed.
    pub async fn settle(&self, jobs: &[Job]) -> Result<(Settled, Vec<ObjectId>), QueueError> {
        let ids: BTreeSet<ObjectId> = jobs.iter().flat_map(|j| j.depends_on.clone()).collect();
        let ids: Vec<ObjectId> = ids.into_iter().collect();
        let states: HashMap<ObjectId, (JobStatus, String)> =
            self.store.dependency_states(&ids).await?;
        let (mut settled, mut failed) = (Settled::default(), Vec::new());
        for job in jobs {
            let policy = job.on_dependency_failure.unwrap_or_default();
            let deps = job.depends_on.iter().map(|id| (*id, states.get(id)));
            match verdict(policy, deps) {
                Verdict::Release => {
                    if self.store.release_waiting(job, self.aging).await? {
                        tracing::info!(target: "worker", job = %job.id, kind = %job.kind, "dependencies completed; job released");
                        settled.released += 1;
                    }
                }
                Verdict::Fail(reason) => {
                    if self.store.fail_waiting(job, &reason).await? {
                        self.failed(job, reason).await;
                        settled.failed += 1;
                        failed.push(job.id);
                    }
                }
                Verdict::Wait => {}
            }
        }
        Ok((settled, failed))
    }

    /// `job` was failed by a dependency (written): its unique key is free,
    /// `JobFailed` published.
    async fn failed(&self, job: &Job, reason: String) {
        tracing::warn!(target: "worker", job = %job.id, kind = %job.kind, %reason, "job failed by its dependency");
        if let Err(err) = self.store.release_unique(job).await {
            tracing::warn!(target: "worker", job = %job.id, error = %err, "could not release the unique key");
        }
        self.events.publish(Event::JobFailed {
            job_id: job.id.to_hex(),
            job_type: job.kind.clone(),
            attempt: job.attempts,
            error: reason,
        });
    }

    /// The job `id` ended for good (its end is written): settle its waiting
    /// dependents, then those of any it failed, at most
    /// [`MAX_SETTLED_PER_END`] jobs in all.
    pub async fn after_end(&self, id: ObjectId) -> Result<Settled, QueueError> {
        let (mut ends, mut total, mut looked) = (vec![id], Settled::default(), 0);
        while let Some(end) = ends.pop() {
            let left = MAX_SETTLED_PER_END.saturating_sub(looked);
            if left == 0 {
                break;
            }
            let dependents = self.store.waiting_dependents(end, left as i64).await?;
            looked += dependents.len();
            let (settled, failed) = self.settle(&dependents).await?;
            total += settled;
            ends.extend(failed);
        }
        Ok(total)
    }

    /// [`after_end`](Self::after_end) if this instance knows of waiting
    /// jobs; an error is logged (the sweep settles them).
    pub async fn after_end_logged(&self, id: ObjectId) {
        if !self.store.flows_seen().get() {
            return;
        }
        if let Err(err) = self.after_end(id).await {
            tracing::warn!(target: "worker", job = %id, error = %err, "could not settle the job's dependents; the sweep will");
        }
    }

    /// One sweep step: up to [`SWEEP_PAGE`] waiting jobs after `cursor`
    /// (from the first with `None`), settled, with the dependents of any it
    /// failed. Tells this instance whether waiting jobs exist.
    pub async fn sweep(&self, cursor: Option<ObjectId>) -> Result<Swept, QueueError> {
        let page = self.store.waiting_after(cursor, SWEEP_PAGE).await?;
        if cursor.is_none() {
            self.store.flows_seen().set(!page.is_empty());
        } else if !page.is_empty() {
            self.store.flows_seen().set(true);
        }
        let next = (page.len() as i64 == SWEEP_PAGE)
            .then(|| page.last().map(|j| j.id))
            .flatten();
        let (mut settled, failed) = self.settle(&page).await?;
        for id in failed {
            settled += self.after_end(id).await?;
        }
        Ok(Swept {
            settled,
            cursor: next,
        })
    }

    /// Sweep every waiting job, page by page (tests, tools).
    pub async fn sweep_all(&self) -> Result<Settled, QueueError> {
        let (mut cursor, mut total) = (None, Settled::default());
        loop {
            let swept = self.sweep(cursor).await?;
            total += swept.settled;
            cursor = swept.cursor;
            if cursor.is_none() {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 12])
    }

    fn state(status: JobStatus) -> (JobStatus, String) {
        (status, "t".into())
    }

    #[test]
    fn a_job_is_released_only_once_every_dependency_completed() {
        let done = state(JobStatus::Completed);
        let all = [(id(1), Some(&done)), (id(2), Some(&done))];
        assert_eq!(verdict(DependencyPolicy::Fail, all), Verdict::Release);
        for status in [
            JobStatus::Waiting,
            JobStatus::Pending,
            JobStatus::Processing,
        ] {
            let running = state(status);
            let some = [(id(1), Some(&done)), (id(2), Some(&running))];
            assert_eq!(verdict(DependencyPolicy::Fail, some), Verdict::Wait);
        }
        assert_eq!(verdict(DependencyPolicy::Fail, []), Verdict::Release);
    }

    #[test]
    fn a_failed_cancelled_or_gone_dependency_fails_the_dependent_naming_it_or_holds_it() {
        let (done, running) = (state(JobStatus::Completed), state(JobStatus::Processing));
        for (bad, says) in [
            (Some(state(JobStatus::Failed)), "failed"),
            (Some(state(JobStatus::Cancelled)), "was cancelled"),
            (None, "no longer exists"),
        ] {
            let deps = [
                (id(1), Some(&done)),
                (id(2), Some(&running)),
                (id(3), bad.as_ref()),
            ];
            let Verdict::Fail(reason) = verdict(DependencyPolicy::Fail, deps) else {
                panic!("fails on {says}");
            };
            assert!(reason.contains(&id(3).to_hex()), "{reason}");
            assert!(reason.ends_with(says), "{reason}");
            assert_eq!(verdict(DependencyPolicy::Hold, deps), Verdict::Wait);
        }
    }

    #[test]
    fn policies_read_as_they_are_written() {
        for policy in [DependencyPolicy::Fail, DependencyPolicy::Hold] {
            assert_eq!(DependencyPolicy::parse(policy.as_str()), Some(policy));
            let stored = mongodb::bson::to_bson(&policy).unwrap();
            assert_eq!(stored.as_str(), Some(policy.as_str()));
        }
        assert_eq!(DependencyPolicy::parse("Fail"), None);
        assert_eq!(DependencyPolicy::default(), DependencyPolicy::Fail);
    }
}

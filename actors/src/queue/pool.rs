//! [`Pool`]: the poller's executor slots — which actor runs in each, what it
//! is doing — and [`PoolInfo`], the pool as introspection shows it.

use std::ops::{Index, IndexMut};

use mongodb::bson::oid::ObjectId;
use ractor::{ActorCell, ActorRef};
use serde::Serialize;

use crate::queue::executor::ExecutorMsg;
use crate::queue::job::Job;
use crate::supervision::place::{ActorSnapshot, Place};

/// The executors' actor kind, as introspection and `/metrics` name it.
pub const EXECUTOR_KIND: &str = "JobExecutor";

/// The executor pool, for introspection.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    pub size: usize,
    pub busy: usize,
    pub idle: usize,
    pub executors: Vec<ExecutorInfo>,
}

/// One executor of the pool: the actor, and the job it holds if busy.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorInfo {
    #[serde(flatten)]
    pub actor: ActorSnapshot,
    pub job: Option<String>,
}

/// A claimed attempt: enough to give it back ([`crate::queue::store::JobStore::fail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub id: ObjectId,
    pub attempt: i32,
    pub max_attempts: i32,
    /// It holds a concurrency-limit token ([`crate::queue::limit`]).
    pub limited: bool,
}

impl Held {
    /// The attempt `job` was claimed for.
    pub fn of(job: &Job) -> Self {
        Self {
            id: job.id,
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            limited: job.token.is_some(),
        }
    }
}

/// What one executor slot is doing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Work {
    Idle,
    /// The claim task with this id is claiming a job for it.
    Claiming(tokio::task::Id),
    /// Its claim won this attempt, but the poller has not handled the
    /// claim's `Claimed` message yet (it still holds nobody's job).
    Handing(Held),
    /// Its executor runs this attempt.
    Busy(Held),
}

/// One executor place of the pool.
pub(crate) struct Slot {
    /// `None` while the executor is dead (between a crash and its restart,
    /// or for good once its restart budget is spent).
    pub actor: Option<ActorRef<ExecutorMsg>>,
    pub work: Work,
    /// Its stats, restart budget and last failure, kept across restarts.
    pub place: Place,
}

impl Slot {
    /// A live executor with nothing to do.
    pub fn is_idle(&self) -> bool {
        self.actor.is_some() && self.work == Work::Idle
    }
}

pub(crate) struct Pool {
    slots: Vec<Slot>,
}

impl Pool {
    pub fn new(slots: Vec<Slot>) -> Self {
        Self { slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut()
    }

    /// The slot whose executor is `cell`.
    pub fn index_of(&self, cell: &ActorCell) -> Option<usize> {
        self.slots.iter().position(|slot| {
            slot.actor
                .as_ref()
                .is_some_and(|actor| actor.get_id() == cell.get_id())
        })
    }

    /// The claim task `task` finished, winning `won` (executor, attempt).
    /// Each slot that still waits for that claim has not had its `Claimed`
    /// message handled yet: remember what it won ([`Work::Handing`]), so
    /// that shutdown can give it back should the message never be handled.
    pub fn claim_finished(&mut self, task: tokio::task::Id, won: &[(usize, Held)]) {
        for &(executor, held) in won {
            let slot = &mut self.slots[executor];
            if slot.work == Work::Claiming(task) {
                slot.work = Work::Handing(held);
            }
        }
    }

    /// The claim task `task` died (a bug): its `Claimed` never comes, so
    /// its slots are idle again (whatever it reserved is abandoned, and
    /// replaced after a lease by the next claimer).
    pub fn claim_failed(&mut self, task: tokio::task::Id) {
        for slot in &mut self.slots {
            if slot.work == Work::Claiming(task) {
                slot.work = Work::Idle;
            }
        }
    }

    /// Whether a claim is under way (its `Claimed` not handled yet).
    pub fn claiming(&self) -> bool {
        (self.slots.iter()).any(|slot| matches!(slot.work, Work::Claiming(_) | Work::Handing(_)))
    }

    /// The attempts claims won whose `Claimed` was never handled: no
    /// executor will run them.
    pub fn claimed_too_late(&self) -> Vec<Held> {
        self.slots
            .iter()
            .filter_map(|slot| match slot.work {
                Work::Handing(held) => Some(held),
                _ => None,
            })
            .collect()
    }

    /// The pool as introspection shows it.
    pub fn info(&self) -> PoolInfo {
        let executors: Vec<ExecutorInfo> = self
            .slots
            .iter()
            .map(|slot| ExecutorInfo {
                actor: slot
                    .place
                    .snapshot(slot.actor.as_ref().map(|a| a.get_id().to_string())),
                job: match &slot.work {
                    Work::Busy(held) => Some(held.id.to_hex()),
                    _ => None,
                },
            })
            .collect();
        let busy = executors.iter().filter(|e| e.job.is_some()).count();
        let running = executors.iter().filter(|e| e.actor.running).count();
        PoolInfo {
            size: executors.len(),
            busy,
            idle: running - busy,
            executors,
        }
    }
}

impl Index<usize> for Pool {
    type Output = Slot;
    fn index(&self, index: usize) -> &Slot {
        &self.slots[index]
    }
}

impl IndexMut<usize> for Pool {
    fn index_mut(&mut self, index: usize) -> &mut Slot {
        &mut self.slots[index]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::supervision::budget::RestartPolicy;

    fn pool(size: usize) -> Pool {
        let policy = RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(60),
        };
        let slots = (0..size)
            .map(|i| Slot {
                actor: None,
                work: Work::Idle,
                place: Place::new(
                    format!("executor-{i}"),
                    EXECUTOR_KIND,
                    Arc::default(),
                    policy,
                ),
            })
            .collect();
        Pool::new(slots)
    }

    fn held(attempt: i32) -> Held {
        Held {
            id: ObjectId::new(),
            attempt,
            max_attempts: 5,
            limited: false,
        }
    }

    /// Two distinct task ids.
    async fn task_ids() -> (tokio::task::Id, tokio::task::Id) {
        let (a, b) = (tokio::spawn(async {}), tokio::spawn(async {}));
        (a.id(), b.id())
    }

    #[tokio::test]
    async fn a_won_claim_whose_message_is_not_handled_is_given_back_at_shutdown() {
        let (task, _) = task_ids().await;
        let mut pool = pool(2);
        pool[0].work = Work::Claiming(task);
        pool[1].work = Work::Claiming(task);
        let won = held(1);
        pool.claim_finished(task, &[(1, won)]);
        assert_eq!(pool[1].work, Work::Handing(won));
        assert_eq!(pool.claimed_too_late(), [won]);
        assert_eq!(
            pool[0].work,
            Work::Claiming(task),
            "lost: waits for its message"
        );
        assert!(pool.claiming());
    }

    #[tokio::test]
    async fn a_lost_claim_or_one_whose_message_was_handled_leaves_nothing_to_give_back() {
        let (first, second) = task_ids().await;
        let mut pool = pool(2);
        pool[0].work = Work::Claiming(first);
        pool.claim_finished(first, &[]);
        assert_eq!(
            pool[0].work,
            Work::Claiming(first),
            "lost: still waiting for its message"
        );
        // Handled already: the slot went busy and now waits for another claim.
        let running = held(2);
        pool[1].work = Work::Busy(running);
        pool.claim_finished(first, &[(1, held(1))]);
        assert_eq!(pool[1].work, Work::Busy(running));
        pool[1].work = Work::Claiming(second);
        pool.claim_finished(first, &[(1, held(1))]);
        assert_eq!(pool[1].work, Work::Claiming(second));
        assert!(pool.claimed_too_late().is_empty());
    }

    #[tokio::test]
    async fn the_slots_of_a_claim_task_that_died_are_idle_again_and_no_claim_is_under_way() {
        let (dead, other) = task_ids().await;
        let mut pool = pool(3);
        pool[0].work = Work::Claiming(dead);
        pool[1].work = Work::Claiming(dead);
        pool[2].work = Work::Claiming(other);
        pool.claim_failed(dead);
        assert_eq!((&pool[0].work, &pool[1].work), (&Work::Idle, &Work::Idle));
        assert_eq!(pool[2].work, Work::Claiming(other));
        pool.claim_failed(other);
        assert!(!pool.claiming());
    }
}

//! Shutdown: running jobs get most of the grace period; then what still
//! runs is killed and given back, and the store work in flight is waited
//! for until 95% of the period (see the poller's Shutdown section).

use ractor::ActorStatus;
use tokio::task::JoinSet;

use super::PollerState;
use crate::queue::pool::{Held, Work};

/// Of the shutdown grace period, the share running jobs get to finish. The
/// root supervisor kills the poller once the whole period is over (and a
/// killed actor's `post_stop` stops where it is), so the rest is kept for
/// what shutdown must still write: giving back the jobs still running or
/// claimed too late to run.
pub(super) const JOBS_SHARE_OF_GRACE: f64 = 0.75;
/// By this share of the grace period, shutdown aborts what is still in flight.
pub(super) const WIND_DOWN_SHARE_OF_GRACE: f64 = 0.95;

/// What a job still running at shutdown is recorded as.
const SHUT_DOWN: &str = "the instance shut down before the job finished";

/// Wait for every task of `tasks` until `deadline`, then abort the rest.
/// Returns what the tasks that finished returned.
async fn drain<T: 'static>(
    tasks: &mut JoinSet<T>,
    deadline: tokio::time::Instant,
) -> Vec<(tokio::task::Id, T)> {
    let mut done = Vec::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await
    {
        if let Ok(finished) = joined {
            done.push(finished);
        }
    }
    tasks.shutdown().await;
    done
}

/// Shutdown.
impl PollerState {
    /// After the executors had their share of the grace period: kill those
    /// still running and give their jobs back, give back the jobs claims won
    /// too late, and wait for the store work in flight until `deadline`,
    /// aborting the rest. Nothing of the poller runs after this.
    pub(super) async fn wind_down(&mut self, deadline: tokio::time::Instant) {
        for held in self.kill_the_busy() {
            self.start_release(held, SHUT_DOWN.into());
        }
        for (task, done) in drain(&mut self.claims, deadline).await {
            self.pool.claim_finished(task, &done.won);
        }
        for held in self.pool.claimed_too_late() {
            self.start_release(held, SHUT_DOWN.into());
        }
        drain(&mut self.tasks, deadline).await;
        self.snapshot.stop().await;
    }

    /// Kill the executors still running; the attempts they held.
    fn kill_the_busy(&mut self) -> Vec<Held> {
        let mut held = Vec::new();
        for slot in self.pool.slots_mut() {
            let (Some(actor), Work::Busy(job)) = (slot.actor.take(), &slot.work) else {
                continue;
            };
            if actor.get_status() != ActorStatus::Stopped {
                actor.kill();
                held.push(*job);
            }
            slot.work = Work::Idle;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tokio::time::{sleep, Instant};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn draining_waits_for_tasks_until_the_deadline_then_aborts_the_rest() {
        let mut tasks = JoinSet::new();
        let (alive, aborted) = oneshot::channel::<()>();
        tasks.spawn(async {
            sleep(Duration::from_secs(1)).await;
            1
        });
        tasks.spawn(async move {
            let _alive = alive; // dropped when the task ends, or is aborted
            sleep(Duration::from_secs(60)).await;
            2
        });
        let started = Instant::now();
        let done = drain(&mut tasks, started + Duration::from_secs(5)).await;
        assert_eq!(done.into_iter().map(|(_, n)| n).collect::<Vec<_>>(), [1]);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(tasks.is_empty());
        assert!(aborted.await.is_err(), "the slow task is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_returns_as_soon_as_every_task_is_done() {
        let mut tasks = JoinSet::new();
        for n in 1..=3 {
            tasks.spawn(async move {
                sleep(Duration::from_millis(n * 100)).await;
                n
            });
        }
        let started = Instant::now();
        let mut done: Vec<u64> = drain(&mut tasks, started + Duration::from_secs(5))
            .await
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        done.sort();
        assert_eq!(done, [1, 2, 3]);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }
}

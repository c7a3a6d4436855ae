//! What a supervisor keeps about each place it supervises, and the one
//! snapshot type introspection shows for every actor of the tree.
//!
//! A *place* outlives the incarnations of its actor: the root supervisor's
//! `user` place, the queue poller's `executor-3` place. Its figures (stats,
//! restart budget, last failure) belong to the place, so they survive
//! restarts.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::budget::{RestartBudget, RestartPolicy};
use super::mailbox::DeadLetter;
use super::stats::{ActorStats, Timings};

/// A failure a supervisor saw.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// One actor of the tree as its supervisor sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ActorSnapshot {
    pub name: String,
    /// The actor's type (`UserActor`, `JobExecutor`, …).
    pub kind: &'static str,
    /// ractor's id of the current incarnation (changes on restart).
    pub id: Option<String>,
    pub running: bool,
    pub started_at: DateTime<Utc>,
    pub restarts: u64,
    pub restart_budget_left: u32,
    pub last_failure: Option<Failure>,
    /// Messages whose work is done.
    pub messages_handled: u64,
    /// Messages sent and not yet taken from the mailbox.
    pub mailbox_backlog: u64,
    /// Messages taken whose work is not done yet.
    pub in_flight: u64,
    /// Time from taking a message to finishing the work it caused (see
    /// [`crate::supervision::stats`]).
    pub handling: Option<Timings>,
    /// Time from sending a message to taking it from the mailbox (see
    /// [`crate::supervision::mailbox`]).
    pub wait: Option<Timings>,
    /// Messages that never reached the actor, and the last few of them.
    pub dead_letters: u64,
    pub recent_dead_letters: Vec<DeadLetter>,
}

/// A supervised place: its stats, its restart budget, when its current
/// incarnation started and the last failure.
pub struct Place {
    name: String,
    kind: &'static str,
    stats: Arc<ActorStats>,
    budget: RestartBudget,
    started_at: DateTime<Utc>,
    last_failure: Option<Failure>,
}

/// What a supervisor does after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start a new incarnation; the place's restarts so far, this one included.
    Restart(u64),
    /// The budget is spent: leave the place down and escalate with this reason.
    GiveUp(String),
}

impl Place {
    pub fn new(
        name: impl Into<String>,
        kind: &'static str,
        stats: Arc<ActorStats>,
        policy: RestartPolicy,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            stats,
            budget: RestartBudget::new(policy),
            started_at: Utc::now(),
            last_failure: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }

    /// The place's actor died for `reason`: remember it, and spend a restart
    /// if the budget has one (counted in the shared stats, which `/metrics`
    /// reads without asking the supervisor).
    pub fn failed(&mut self, reason: &str) -> Verdict {
        self.last_failure = Some(Failure {
            reason: reason.to_owned(),
            at: Utc::now(),
        });
        if self.budget.try_spend() {
            return Verdict::Restart(self.stats.note_restart());
        }
        let policy = self.budget.policy();
        Verdict::GiveUp(format!(
            "actor {} exceeded its restart limit ({} in {}); last failure: {reason}",
            self.name,
            policy.max_restarts,
            humantime::format_duration(policy.within)
        ))
    }

    /// A new incarnation runs from now.
    pub fn started(&mut self) {
        self.started_at = Utc::now();
    }

    /// The place as introspection shows it; `id` is the current
    /// incarnation's, `None` while it is down.
    pub fn snapshot(&self, id: Option<String>) -> ActorSnapshot {
        ActorSnapshot {
            name: self.name.clone(),
            kind: self.kind,
            running: id.is_some(),
            id,
            started_at: self.started_at,
            restarts: self.stats.restarts(),
            restart_budget_left: self.budget.left(),
            last_failure: self.last_failure.clone(),
            messages_handled: self.stats.handled(),
            mailbox_backlog: self.stats.backlog(),
            in_flight: self.stats.in_flight(),
            handling: self.stats.timings(),
            wait: self.stats.waits(),
            dead_letters: self.stats.dead_letters(),
            recent_dead_letters: self.stats.recent_dead_letters(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn place(max_restarts: u32) -> Place {
        let policy = RestartPolicy {
            max_restarts,
            within: Duration::from_secs(60),
        };
        Place::new("user", "UserActor", Arc::default(), policy)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_restart_within_the_budget_then_give_up_naming_the_actor() {
        let mut p = place(2);
        assert_eq!(p.failed("panicked"), Verdict::Restart(1));
        assert_eq!(p.failed("panicked again"), Verdict::Restart(2));
        let Verdict::GiveUp(reason) = p.failed("and again") else {
            panic!("a third failure within 60 s gives up");
        };
        assert!(
            reason.contains("user") && reason.contains("2 in 1m") && reason.contains("and again"),
            "{reason}"
        );
        let snapshot = p.snapshot(None);
        assert_eq!(snapshot.restarts, 2);
        assert_eq!(snapshot.restart_budget_left, 0);
        assert!(!snapshot.running);
        assert_eq!(snapshot.last_failure.unwrap().reason, "and again");
    }
}

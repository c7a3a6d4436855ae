//! The restart budget: how often one supervised place may be restarted
//! before its supervisor gives up on it. One type for every supervisor (the
//! root supervisor's children, the queue poller's executors).

use std::collections::VecDeque;
use std::time::Duration;

use crate::validate::{ConfigErrors, Validate};
use serde::Deserialize;
use tokio::time::Instant;

/// `[actors.restart]`: at most `max_restarts` restarts within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RestartPolicy {
    /// Restarts allowed within `within`.
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// The restarts one place has had within its policy's sliding window.
///
/// Times are tokio's, so tests drive the window with `tokio::time::pause`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Spend one restart if the window has one left: `true` means restart,
    /// `false` means the budget is used up and the supervisor gives up.
    pub fn try_spend(&mut self) -> bool {
        self.forget_old();
        if self.recent.len() as u32 >= self.policy.max_restarts {
            return false;
        }
        self.recent.push_back(Instant::now());
        true
    }

    /// Restarts still allowed within the window.
    pub fn left(&self) -> u32 {
        let used = self
            .recent
            .iter()
            .filter(|at| at.elapsed() < self.policy.within)
            .count() as u32;
        self.policy.max_restarts.saturating_sub(used)
    }

    pub fn policy(&self) -> RestartPolicy {
        self.policy
    }

    fn forget_old(&mut self) {
        let within = self.policy.within;
        self.recent.retain(|at| at.elapsed() < within);
    }
}

/// Restarts are counted in a sliding window, so a zero window would never
/// spend the budget (a crashing child restarted forever), and a budget of
/// none would end readiness at a child's first failure.
impl Validate for RestartPolicy {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(self.max_restarts >= 1, "max_restarts", "must be at least 1");
        errors.ensure(!self.within.is_zero(), "within", "must be positive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_restarts: u32, within_secs: u64) -> RestartBudget {
        RestartBudget::new(RestartPolicy {
            max_restarts,
            within: Duration::from_secs(within_secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_gets_max_restarts_within_the_window_then_none() {
        let mut b = budget(3, 60);
        assert_eq!(b.left(), 3);
        assert!(b.try_spend() && b.try_spend() && b.try_spend());
        assert_eq!(b.left(), 0);
        assert!(!b.try_spend(), "a fourth restart within 60 s is refused");
        assert_eq!(b.left(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_older_than_the_window_are_given_back() {
        let mut b = budget(2, 60);
        assert!(b.try_spend());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.try_spend());
        assert!(!b.try_spend());
        // The first restart leaves the window at t = 60 s.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.left(), 1);
        assert!(b.try_spend());
        assert!(!b.try_spend());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.left(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_never_restarts() {
        let mut b = budget(0, 60);
        assert_eq!(b.left(), 0);
        assert!(!b.try_spend());
    }

    #[test]
    fn the_restart_budget_allows_a_restart_in_a_positive_window() {
        use crate::validate::refused_after;
        let policy = RestartPolicy {
            max_restarts: 5,
            within: Duration::from_secs(60),
        };
        assert!(refused_after(policy, |_| {}).is_empty());
        assert_eq!(
            refused_after(policy, |p| p.max_restarts = 0),
            ["max_restarts"]
        );
        assert!(refused_after(policy, |p| p.max_restarts = 1).is_empty());
        assert_eq!(
            refused_after(policy, |p| p.within = Duration::ZERO),
            ["within"]
        );
        assert!(refused_after(policy, |p| p.within = Duration::from_millis(1)).is_empty());
    }
}

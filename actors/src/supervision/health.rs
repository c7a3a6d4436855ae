//! [`TreeHealth`]: what supervisors report (restarts, escalations) and the
//! tree's health flag, shared with the readiness probe.
//!
//! Supervisors do not know the EventBus (the bus is itself supervised): they
//! report to a [`TreeEvent`] hook, which the actor system wires to it.

use std::sync::{Arc, Mutex};

/// What a supervisor tells the rest of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEvent {
    /// A place's actor was restarted; `restarts` so far, this one included.
    Restarted {
        actor: String,
        reason: String,
        restarts: u64,
    },
    /// A supervisor gave up on a place (its restart budget is spent).
    Escalated { actor: String, reason: String },
}

type Hook = Arc<dyn Fn(TreeEvent) + Send + Sync>;

/// Shared by every supervisor of one tree and by the readiness probe.
#[derive(Clone)]
pub struct TreeHealth {
    escalated: Arc<Mutex<Option<String>>>,
    hook: Hook,
}

impl Default for TreeHealth {
    /// A tree whose reports go nowhere but the logs.
    fn default() -> Self {
        Self::new(|_| {})
    }
}

impl TreeHealth {
    /// A tree whose supervisors report to `hook`.
    pub fn new(hook: impl Fn(TreeEvent) + Send + Sync + 'static) -> Self {
        Self {
            escalated: Arc::default(),
            hook: Arc::new(hook),
        }
    }

    /// `Some(reason)` once a supervisor has given up on a place.
    pub fn escalated(&self) -> Option<String> {
        self.escalated.lock().expect("tree health lock").clone()
    }

    /// A place's actor was restarted.
    pub fn restarted(&self, actor: &str, reason: &str, restarts: u64) {
        tracing::warn!(target: "system", actor, %reason, restarts, "actor restarted");
        (self.hook)(TreeEvent::Restarted {
            actor: actor.into(),
            reason: reason.into(),
            restarts,
        });
    }

    /// A supervisor gave up on `actor`: the tree is unhealthy from now on
    /// (readiness answers 503 so an orchestrator replaces the process).
    pub fn escalate(&self, actor: &str, reason: String) {
        tracing::error!(target: "system", actor, "{reason}; not restarting");
        self.escalated
            .lock()
            .expect("tree health lock")
            .get_or_insert(reason.clone());
        (self.hook)(TreeEvent::Escalated {
            actor: actor.into(),
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_reach_the_hook_and_the_first_escalation_is_kept() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let health = TreeHealth::new(move |event| sink.lock().unwrap().push(event));
        assert_eq!(health.escalated(), None);
        health.restarted("cache", "panicked", 1);
        health.escalate("cache", "first".into());
        health.escalate("user", "second".into());
        assert_eq!(health.escalated().as_deref(), Some("first"));
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(
            seen.lock().unwrap()[0],
            TreeEvent::Restarted {
                actor: "cache".into(),
                reason: "panicked".into(),
                restarts: 1
            }
        );
    }
}

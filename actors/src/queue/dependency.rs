//! What a job depending on others ([`crate::queue::flow`]) carries: its
//! [`DependencyPolicy`], the bound on its dependencies, and whether an
//! instance knows of waiting jobs ([`FlowsSeen`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The most jobs one job may depend on.
pub const MAX_DEPENDENCIES: usize = 100;

/// What a failed, cancelled or vanished dependency does to its dependent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyPolicy {
    /// The dependent ends `failed`, its error naming the dependency.
    #[default]
    Fail,
    /// The dependent stays `waiting` until the dependency is retried and
    /// completes, or an operator cancels it.
    Hold,
}

impl DependencyPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Hold => "hold",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Fail, Self::Hold]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// Whether this instance knows of waiting jobs (the fast path runs only
/// then). Shared by the store's clones.
#[derive(Debug, Clone, Default)]
pub struct FlowsSeen(Arc<AtomicBool>);

impl FlowsSeen {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, seen: bool) {
        self.0.store(seen, Ordering::Relaxed);
    }
}

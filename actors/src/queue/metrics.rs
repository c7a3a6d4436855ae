//! [`QueueMetrics`]: how long the queue's work takes, recorded by the poller
//! and its executors and exported on `/metrics`.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Claim and execution durations, in seconds (exported on `/metrics`).
#[derive(Clone)]
pub struct QueueMetrics {
    /// One observation per listing of claimable jobs (its count is the
    /// number of listings: the queue's costliest query).
    pub listing_seconds: Histogram,
    pub claim_seconds: Histogram,
    pub execution_seconds: Histogram,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        let buckets = || exponential_buckets(0.0005, 2.0, 16);
        Self {
            listing_seconds: Histogram::new(buckets()),
            claim_seconds: Histogram::new(buckets()),
            execution_seconds: Histogram::new(buckets()),
        }
    }
}

//! [`FleetMetrics`]: what the registry counts, exported on `/metrics`.

use prometheus_client::metrics::counter::Counter;

/// Heartbeats that failed, and instances taken over.
#[derive(Clone, Default)]
pub struct FleetMetrics {
    /// Heartbeats not written (Redis down or slow); retried on the next tick.
    pub heartbeat_failures: Counter,
    /// Dead instances this instance took over.
    pub failovers: Counter,
    /// Jobs of dead instances this instance released.
    pub jobs_released: Counter,
}

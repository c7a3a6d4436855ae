//! [`FleetMetrics`]: what the registry counts, exported on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Heartbeats that failed, instances taken over, and the fleet's size.
#[derive(Clone, Default)]
pub struct FleetMetrics {
    /// Heartbeats not written (Redis down or slow); retried on the next tick.
    pub heartbeat_failures: Counter,
    /// Dead instances this instance took over.
    pub failovers: Counter,
    /// Jobs of dead instances this instance released.
    pub jobs_released: Counter,
    /// The live instances as the last heartbeat read them (0 before the
    /// first read): what the per-address limits divide their budgets by.
    pub instances: Gauge,
}

//! `[events]` in the configuration: the relay that carries events between
//! the instances of a fleet (see [`crate::events::relay`]).

use std::time::Duration;

use serde::Deserialize;

/// `[events]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    /// Entries the fleet's stream keeps, approximately (`XADD … MAXLEN ~`):
    /// how far back a relay that lost touch for a moment can catch up.
    pub fleet_stream_len: u64,
    /// Events of this instance waiting to be written to the stream; past it
    /// they are dropped for the fleet (and counted), never waited for.
    pub relay_buffer: usize,
    /// Longest wait between two attempts to reach Redis again (the waits
    /// double from 100 ms up to this).
    #[serde(with = "humantime_serde")]
    pub relay_retry_max: Duration,
}

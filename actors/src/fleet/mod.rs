//! The fleet: every instance sharing one MongoDB and one Redis.
//!
//! - [`registry`]: [`registry::FleetStore`], the instance registry in Redis
//!   (heartbeats with a TTL, and the set that outlives them).
//! - [`heartbeat`]: what an instance publishes, and the pure rules on it.
//! - [`actor`] / [`beat`]: the FleetActor, which heartbeats and takes over
//!   dead instances (their jobs released through [`crate::queue::QueueHandle`]).
//! - [`handle`]: [`Fleet`], how the HTTP layer reads the registry.
//! - [`config`]: `[fleet]` in the configuration; [`metrics`]: its counters.
//!
//! Imports `queue`, `supervision` and `store`; what only the layers above
//! know (the tree as `/ops/actors` renders it, readiness) comes through the
//! [`LocalView`] hook it defines.

pub(crate) mod actor;
pub(crate) mod beat;
pub mod config;
pub mod error;
pub mod handle;
pub mod heartbeat;
pub mod metrics;
pub mod registry;

pub use beat::LocalView;
pub use error::FleetError;
pub use handle::Fleet;

//! The events relay: domain events published on one instance reach every
//! instance's bus, through a Redis Stream — the [`EventRelay`] actor
//! ([`actor`]), its writer ([`outgoing`]) and reader ([`incoming`]) tasks,
//! the stream entries ([`entry`]) and its health and figures ([`status`]).

pub mod actor;
pub mod entry;
mod incoming;
pub mod link;
pub mod msg;
mod outgoing;
pub mod status;

pub use actor::{EventRelay, RelayArgs, NAME};
pub use msg::RelayMsg;
pub use status::{RelayFigures, RelayStatus};

//! Domain events: what they are ([`event`]), the bus that carries them to
//! subscribers ([`bus`]), and two subscribers: the audit log ([`audit`]) and
//! the counts by kind ([`counter`]).
//!
//! Publishers hold [`Events`] and call [`Events::publish`] with an
//! [`Event`]; subscribers register with the [`Registry`] for the
//! [`EventKind`]s they want and receive [`Published`] events.

pub mod audit;
pub mod bus;
pub mod counter;
pub mod event;

pub use bus::{Delivery, Events, Registry, SubscriptionStats};
pub use event::{Event, EventKind, Published};

//! Domain events: what they are ([`event`]), the bus that carries them to
//! subscribers ([`bus`]), two subscribers: the audit log ([`audit`]) and
//! the counts by kind ([`counter`]), and the relay that carries them
//! between the instances of a fleet ([`relay`], configured by [`config`]).
//!
//! Publishers hold [`Events`] and call [`Events::publish`] with an
//! [`Event`]; subscribers register with the [`Registry`] for the
//! [`EventKind`]s they want and receive [`Published`] events.

pub mod audit;
pub mod bus;
pub mod config;
pub mod counter;
pub mod event;
pub mod relay;

pub use bus::{Delivery, Events, Filter, Registry, Scope, SubscriptionStats};
pub use event::{Event, EventKind, Published};

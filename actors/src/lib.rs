//! Troupe's actors, their typed messages, the domain types, and the adapters
//! for MongoDB and Redis.

pub mod cache;
pub mod events;
pub mod limits;
pub mod mail;
pub mod queue;
pub mod store;
pub mod supervision;
pub mod system;
pub mod users;

pub use supervision::slot::{ActorSlot, CallError};

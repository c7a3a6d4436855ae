//! Troupe's actors, their typed messages, the domain types, and the adapters
//! for MongoDB and Redis.
//!
//! Every actor lives in a file of its own, which starts with the actor's
//! contract: what it owns, what it answers, and what happens when it fails.
//! The HTTP layer (the `troupe` crate) only ever talks to actors through the
//! [`slot::ActorSlot`]s handed out by [`supervisor::RootSupervisor`].

pub mod audit;
pub mod auth;
pub mod cache;
pub mod email;
pub mod event_counter;
pub mod events;
pub mod executor;
pub mod handlers;
pub mod idempotency;
pub mod jobs;
pub mod limits;
pub mod password;
pub mod poller;
pub mod queue_snapshot;
pub mod slot;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod throttle;
pub mod tokens;
pub mod user;

pub use slot::{ActorSlot, CallError};

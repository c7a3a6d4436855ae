//! The persistent job queue: its store, the poller that claims jobs, the
//! executors that run them, the handlers per job type.

pub mod executor;
pub mod handlers;
pub mod poller;
pub mod producer;
pub mod snapshot;
pub mod store;

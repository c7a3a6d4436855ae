//! The persistent job queue.
//!
//! - [`job`]: the domain types (a job, its attempts, [`JobId`], queries).
//! - [`store`]: [`store::JobStore`], every query on the two collections.
//! - [`poller`] / [`executor`]: the QueuePollerActor, which claims jobs, and
//!   its JobExecutors, which run them; they share a [`shared::Queue`] and
//!   keep their slots in a [`pool::Pool`] and their candidates in
//!   [`candidates::Candidates`].
//! - [`handlers`]: the registry of what each job type does, [`handlers::HandlerError`].
//! - [`types`]: [`types::JobTypes`], the types this instance claims and
//!   those the live fleet registers (what an enqueue accepts).
//! - [`producer`]: [`producer::JobQueue`], how other capabilities and
//!   embedding applications enqueue ([`spec::JobSpec`]: delays, priorities,
//!   unique keys; [`priority`]: the order of due jobs; [`unique`]: keys).
//! - [`handle`]: [`QueueHandle`], how the HTTP layer queries the queue,
//!   with results from [`report`] (no BSON) and errors as [`QueueError`].
//! - [`snapshot`]: the queue's figures for `/metrics`; [`metrics`]: its histograms.
//! - [`cancel`]: cancelling a job (its marker, the executor's tokens).
//! - [`pause`]: pausing a type or the whole queue, fleet-wide.
//! - [`schedule`]: periodic jobs' schedules and slots; [`scheduler`]: the
//!   QueueSchedulerActor that fires them once per slot across the fleet.
//! - [`config`]: `[queue]` in the configuration.

pub mod cancel;
pub(crate) mod candidates;
pub mod config;
pub mod error;
pub(crate) mod executor;
pub mod handle;
pub mod handlers;
pub mod job;
pub mod metrics;
pub mod pause;
pub(crate) mod poller;
pub mod pool;
pub mod priority;
pub mod producer;
pub mod report;
pub mod schedule;
pub(crate) mod scheduler;
pub(crate) mod shared;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod types;

pub use error::QueueError;
pub use handle::QueueHandle;
pub use job::JobId;
pub use producer::{Enqueued, JobQueue};
pub use spec::{JobSpec, SpecError};

//! The persistent job queue.
//!
//! - [`job`]: the domain types (a job, its attempts, [`JobId`], queries).
//! - [`store`]: [`store::JobStore`] and its rooms, the one home of every
//!   query on the queue's collections (jobs, attempts, unique keys, slots,
//!   pauses; migrations' reads and writes of jobs too).
//! - [`poller`] / [`executor`]: the QueuePollerActor, which only claims and
//!   dispatches jobs, and
//!   its JobExecutors, which run them and hand their outcomes to its
//!   [`finisher`], which writes them in bulk; they share a [`shared::Queue`] and
//!   keep their slots in a [`pool::Pool`] and their candidates in
//!   [`candidates::Candidates`].
//! - [`handlers`]: the registry of what each job type does, [`handlers::HandlerError`];
//!   [`controls`]: what a running handler can do (progress, snooze);
//!   [`result`]: how its result is stored; [`renewer`]: an attempt's lease
//!   renewal and progress writes.
//! - [`types`]: [`types::JobTypes`], the types this instance claims and
//!   those the live fleet registers (what an enqueue accepts).
//! - [`producer`]: [`producer::JobQueue`], how other capabilities and
//!   embedding applications enqueue ([`spec::JobSpec`]: delays, priorities,
//!   unique keys; [`priority`]: the order of due jobs).
//! - [`handle`]: [`QueueHandle`], how the HTTP layer queries and steers the
//!   queue (on the store, in the caller's task), with results from
//!   [`report`] (the one BSON-free view of a job) and errors as [`QueueError`].
//! - [`snapshot`]: the queue's figures for `/metrics`; [`metrics`]: its histograms.
//! - [`cancel`]: the running jobs' cancellation tokens (the marker that
//!   keeps a cancelled job from running is [`store::cancel`]).
//! - [`pause`]: pausing a type or the whole queue, fleet-wide.
//! - [`bulk`]: retrying, cancelling or deleting every job a filter matches.
//! - [`flow`]: jobs that wait for others to complete (`dependsOn`);
//!   [`flow_tree`]: a flow as a tree.
//! - [`schedule`]: periodic jobs' schedules; [`scheduler`]: the
//!   QueueSchedulerActor that fires them once per slot across the fleet.
//! - [`config`]: `[queue]` in the configuration.
//! - [`clock`]: [`clock::Clock`], the queue's "now" (a manual one in tests);
//!   [`worker`]: [`worker::Worker`], which runs due jobs on demand (tests).

pub mod bulk;
pub mod cancel;
pub(crate) mod candidates;
pub mod clock;
pub mod config;
pub mod controls;
pub mod dependency;
pub mod error;
pub(crate) mod executor;
pub(crate) mod finisher;
pub mod flow;
pub mod flow_tree;
pub mod handle;
pub mod handlers;
pub mod job;
pub mod limit;
pub mod metrics;
pub mod pause;
pub(crate) mod poller;
pub mod pool;
pub mod priority;
pub mod producer;
pub(crate) mod renewer;
pub mod report;
pub mod result;
pub mod schedule;
pub(crate) mod scheduler;
pub(crate) mod shared;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod types;
pub mod worker;

pub use error::QueueError;
pub use handle::QueueHandle;
pub use job::JobId;
pub use producer::{Enqueued, JobQueue};
pub use spec::{JobSpec, SpecError};

//! Troupe's actors: supervised ractor actors, the narrow handles the rest of
//! the service reaches them by, their domain types, and the store adapters.
//!
//! # Map
//! | module | what lives there |
//! |---|---|
//! | [`system`] | [`system::ActorSystem::start`]: the one place the tree is wired; [`system::Handles`], what the HTTP layer gets; [`system::tree::TreeView`], introspection |
//! | [`users`] | the UserActor (sign-up, login, sessions, profiles), its [`users::Users`] handle, tokens, the login throttle, `Email`, `Password`, idempotent sign-up, the `user.*` job types |
//! | [`cache`] | the CacheActor and [`cache::CacheClient`]: Redis read-through of public profiles, loaded through a [`cache::ProfileSource`] it defines |
//! | [`queue`] | the job queue: [`queue::QueueHandle`] for operators (cancel, pauses), [`queue::producer::JobQueue`] and [`queue::JobSpec`] for producers (delays, priorities, unique keys), the poller, the executors, the scheduler of periodic jobs, the store, the handler registry |
//! | [`events`] | domain events, the EventBus (scopes: this instance's or the fleet's), the EventRelay (a Redis Stream between instances), the audit log and the counter |
//! | [`fleet`] | the instance registry (heartbeats in Redis), [`fleet::Fleet`] for `/ops/cluster`, failover of dead instances' jobs |
//! | [`mail`] | outgoing e-mail (lettre) |
//! | [`limits`] | per-client-address limits decided in-process, their counts shared with the fleet through Redis |
//! | [`supervision`] | the root supervisor, restart budgets, [`ActorSlot`], actor stats and fault injection |
//! | [`migrate`] | versioned schema migrations: the ordered list, the runner, the lock in the database, start-up's readiness check |
//! | [`rfc3339`] | the one time format of the API, the event stream and the ops views |
//! | [`store`] | MongoDB and Redis (one server or a cluster) adapters |
//! | [`trace`] | trace context across mailboxes, the blocking pool and stored jobs (W3C `traceparent`) |
//!
//! # Rules
//! Dependencies point one way: `system` → the capabilities (`users` →
//! `cache`, `queue`, `events`, `mail`, `limits`; `queue`
//! → `events`; `fleet` → `queue`, `events`) → `supervision` and `store`. A capability never names
//! another's actor messages; it talks through a handle the callee defines.
//! Every actor's file opens with its contract: what it owns, what it
//! answers, what happens when it fails. `tests/architecture.rs` checks the
//! rules.

pub mod cache;
pub mod events;
pub mod fleet;
pub mod limits;
pub mod mail;
pub mod migrate;
pub mod queue;
pub mod rfc3339;
pub mod store;
pub mod supervision;
pub mod system;
pub mod trace;
pub mod users;
pub mod validate;

pub use supervision::slot::{ActorSlot, CallError};

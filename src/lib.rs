//! Troupe's HTTP service: configuration, the HTTP layer, the bootstrap.
//!
//! # Map
//! | module | what lives there |
//! |---|---|
//! | [`startup`] | [`Application`]: bind the listener, connect the stores, start the actor system (`troupe_actors::system`), serve, shut down in order |
//! | [`migrations`] | `troupe migrate [--dry-run]` and `troupe migrate status` as functions the command line calls |
//! | [`server`] | the HTTP/1.1 accept loop with its connection limits |
//! | [`http`] | one module per API area (`users`, `jobs`, `ops`, `cluster`, `health`, `metrics`, `logs`, `app`, and `console`, the ops console's page and embedded assets), each with its `router()`; `ApiError`; extractors; middleware; the OpenAPI document |
//! | [`cli`] | the command line (clap): `serve`, `config check`, `migrate`, `migrate status`, `--help`, `--version` |
//! | [`config`] | layered, typed settings and their validation |
//! | [`state`] | [`state::AppState`], what handlers reach |
//! | [`proxies`] | the trusted proxies, their forwarding header and the walk that finds a request's client address |
//! | [`probes`] | the readiness probe's pings, shared for a second |
//! | [`metrics`] | the Prometheus registry and its scrape-time gauges (served by `http::metrics`) |
//! | [`telemetry`] | logging to stdout and per-category daily files |
//!
//! Handlers parse and validate, call one typed handle of the actor crate, and
//! map its typed result to a response; they name no BSON type and no actor
//! message (`tests/architecture.rs`).

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod migrations;
pub mod probes;
pub mod proxies;
pub mod server;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;

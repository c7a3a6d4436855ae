//! Troupe's HTTP service: configuration, the HTTP layer and OpenAPI document,
//! and the bootstrap that wires the actor tree (in `troupe-actors`) to axum.

pub mod config;
pub mod http;
pub mod server;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;

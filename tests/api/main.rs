//! Integration tests against the real MongoDB-protocol server and Redis.
//! `scripts/test` starts them; every test gets its own database and key prefix.

mod cache;
mod chaos;
mod config;
mod crash;
mod events;
mod hardening;
mod health;
mod helpers;
mod http;
mod jobs;
mod metrics;
mod ops;
mod outage;
mod users;

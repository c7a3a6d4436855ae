//! Integration tests against the real MongoDB-protocol server and Redis.
//! `scripts/test` starts them; every test gets its own database and key prefix.

mod cache;
mod cache_lease;
mod cache_local;
mod cardinality;
mod chaos;
mod cli;
mod cluster;
mod config;
mod connections;
mod console;
mod crash;
mod credentials;
mod events;
mod fleet;
mod fleet_events;
mod fleet_jobs;
mod hardening;
mod health;
mod helpers;
mod http;
mod idempotency;
mod job_control;
mod jobs;
mod jobs_enqueue;
mod lifecycle;
mod metrics;
mod migrations;
mod nestjs;
mod nestjs_clients;
mod ops;
mod outage;
mod profiles;
mod queue_safety;
mod refresh;
mod users;

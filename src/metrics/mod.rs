//! The service's Prometheus registry (prometheus-client): what is recorded
//! as it happens ([`registry`]) and the gauges read from the actors' shared
//! counters at scrape time ([`gauges`]; by actor kind: [`actor_kinds`]). Below the HTTP layer, which serves
//! it at `GET /metrics` (`http::metrics`) and records each request into it;
//! the application's state holds one.

mod actor_kinds;
mod gauges;
mod registry;

pub use gauges::EVENT_STREAM_LABEL;
pub use registry::{Metrics, RequestLabels, Route, RouteLabels};

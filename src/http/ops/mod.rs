//! `/ops/*`: operator endpoints (ops token), one file per concern: the live
//! event stream ([`events`]), the supervision tree ([`actors`]), fault
//! injection ([`faults`]).

mod actors;
mod events;
mod faults;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub use actors::{
    tree, ActorNode, CacheView, DeadLetterView, FailureView, HandlingView, LocalTierView, PoolView,
    WaitView,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(events::router())
        .merge(actors::router())
        .merge(faults::router())
}

//! `GET /ops/events`: the fleet's domain events as Server-Sent Events,
//! narrowed by kind, instance or scope.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use troupe_actors::events::{EventKind, Filter, Scope};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{FromQuery, Params, ValidQuery};
use crate::metrics::EVENT_STREAM_LABEL;
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// A live stream's buffer: a client that falls this far behind loses events
/// (counted in the bus's figures) rather than slowing anything down.
const STREAM_BUFFER: usize = 1024;

/// Longest instance id `?instance=` accepts.
const MAX_INSTANCE_ID: usize = 128;

/// Query parameters of `GET /ops/events`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Comma-separated event kinds (default: all)
    #[param(value_type = Option<String>)]
    kinds: Option<Vec<EventKind>>,
    /// Only the events published on this instance (its id, as events show
    /// it under `instance`); not with `scope`
    #[param(value_type = Option<String>)]
    instance: Option<Scope>,
    /// `fleet` (the default: every instance's events) or `local` (this
    /// instance's only); not with `instance`
    #[param(value_type = Option<String>)]
    scope: Option<Scope>,
}

/// An instance id as `?instance=` takes it: 1 to 128 visible ASCII
/// characters other than `,` (ids are `host-pid-random`).
fn instance_id(value: &str) -> Result<Scope, InvalidInstanceId> {
    let visible = |c: char| c.is_ascii_graphic() && c != ',';
    if value.is_empty() || value.len() > MAX_INSTANCE_ID || !value.chars().all(visible) {
        return Err(InvalidInstanceId);
    }
    Ok(Scope::Instance(value.into()))
}

/// Why `?instance=` was refused (the problem's parameter message).
#[derive(Debug, thiserror::Error)]
#[error("must be an instance id: 1 to {} visible characters", MAX_INSTANCE_ID)]
struct InvalidInstanceId;

/// `?scope=`: `fleet` or `local`.
fn scope(value: &str) -> Result<Scope, &'static str> {
    match value {
        "fleet" => Ok(Scope::Fleet),
        "local" => Ok(Scope::Local),
        _ => Err("must be fleet or local"),
    }
}

impl FromQuery for EventsParams {
    fn from_query(q: &mut Params) -> Option<Self> {
        let kinds = event_kinds(q);
        let instance = q.optional("instance", instance_id);
        let scope = q.optional("scope", scope);
        if instance.is_some() && scope.is_some() {
            q.error("scope", "cannot be combined with instance");
            return None;
        }
        Some(Self {
            kinds,
            instance,
            scope,
        })
    }
}

impl EventsParams {
    /// What the stream's subscription takes: the fleet's events unless narrowed.
    fn filter(&self) -> Filter<'_> {
        let scope = self.instance.as_ref().or(self.scope.as_ref());
        Filter {
            kinds: self.kinds.as_deref(),
            scope: scope.cloned().unwrap_or(Scope::Fleet),
        }
    }
}

/// `?kinds=`: comma-separated event kinds.
fn event_kinds(q: &mut Params) -> Option<Vec<EventKind>> {
    q.optional("kinds", |value| {
        value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                name.parse::<EventKind>().map_err(|_| {
                    format!(
                        "unknown event kind {name:?}; known: {}",
                        EventKind::names().collect::<Vec<_>>().join(", ")
                    )
                })
            })
            .collect()
    })
}

/// Domain events as they happen on every instance of the fleet, as
/// Server-Sent Events (`event:` is the kind, `data:` the event as JSON, with
/// the `instance` it was published on; `id:` is `<instance>:<seq>`), with a
/// keep-alive comment every 15 s. `?kinds=UserCreated,JobFailed` narrows the
/// stream to those kinds, `?instance=<id>` to one instance, `?scope=local`
/// to this one. Other instances' events come through Redis: while it is
/// down, this instance's only.
#[utoipa::path(get, path = "/ops/events", tag = "Ops", security(("ops-token" = [])),
    params(EventsParams),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String,
            example = "event: UserCreated\nid: web-1-41-a1b2c3:7\ndata: {\"seq\":7,\"at\":\"2026-11-29T07:30:00.000Z\",\"instance\":\"web-1-41-a1b2c3\",\"kind\":\"UserCreated\",\"userId\":\"65f1c0ffee0000000000beef\"}\n\n"),
        (status = 400, description = "Unknown kind, malformed instance id or scope", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn events(
    State(state): State<AppState>,
    _operator: Operator,
    ValidQuery(params): ValidQuery<EventsParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Unique (the bus replaces a subscription of the same name); metrics
    // count every stream under the one label its prefix names.
    let name = format!("{EVENT_STREAM_LABEL}-{}", uuid::Uuid::new_v4().simple());
    // The subscription ends when this stream (and so its receiver) is dropped.
    let receiver = state
        .actors
        .registry
        .subscribe_channel(&name, params.filter(), STREAM_BUFFER);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        let sse = SseEvent::default()
            .event(event.kind().as_str())
            .id(format!("{}:{}", event.instance, event.seq))
            .json_data(&*event)
            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event"));
        Some((Ok(sse), receiver))
    });
    // The stream ends when the service starts shutting down, so the drain
    // of in-flight requests does not wait for it.
    let stream = stream.take_until(state.stopping.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

//! `/ops/*`: operator endpoints (ops token).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use troupe_actors::events::EventKind;

use super::auth::Operator;
use super::error::{ApiError, FieldError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// A live stream's buffer: a client that falls this far behind loses events
/// (counted in the bus's figures) rather than slowing anything down.
const STREAM_BUFFER: usize = 1024;

fn parse_kinds(raw: Option<String>) -> Result<Option<Vec<&'static str>>, ApiError> {
    let mut kinds = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if key != "kinds" || kinds.is_some() {
            return Err(ApiError::Validation(vec![FieldError::new(
                key.as_ref(),
                "only one `kinds` parameter is accepted",
            )]));
        }
        let mut wanted = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match EventKind::NAMES.iter().find(|k| **k == name) {
                Some(kind) => wanted.push(*kind),
                None => {
                    return Err(ApiError::Validation(vec![FieldError::new(
                        "kinds",
                        format!(
                            "unknown event kind {name:?}; known: {}",
                            EventKind::NAMES.join(", ")
                        ),
                    )]))
                }
            }
        }
        kinds = Some(wanted);
    }
    Ok(kinds)
}

/// Domain events as they happen, as Server-Sent Events (`event:` is the kind,
/// `data:` the event as JSON), with a keep-alive comment every 15 s.
/// `?kinds=UserCreated,JobFailed` narrows the stream.
#[utoipa::path(get, path = "/ops/events", tag = "Ops", security(("ops-token" = [])),
    params(("kinds" = Option<String>, Query, description = "Comma-separated event kinds (default: all)")),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String,
            example = "event: UserCreated\ndata: {\"seq\":7,\"at\":\"2026-11-29T07:30:00Z\",\"kind\":\"UserCreated\",\"user_id\":\"65f1c0ffee0000000000beef\"}\n\n"),
        (status = 400, description = "Unknown kind", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn events(
    State(state): State<AppState>,
    _operator: Operator,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let kinds = parse_kinds(query)?;
    let name = format!("sse-{}", uuid::Uuid::new_v4().simple());
    // The subscription ends when this stream (and so its receiver) is dropped.
    let receiver = state
        .actors
        .registry
        .subscribe_channel(&name, kinds.as_deref(), STREAM_BUFFER);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        let sse = SseEvent::default()
            .event(event.kind.name())
            .id(event.seq.to_string())
            .json_data(&*event)
            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event"));
        Some((Ok(sse), receiver))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

//! `/ops/*`: operator endpoints (ops token).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use troupe_actors::queue::pool::PoolInfo;
use troupe_actors::supervision::place::ActorSnapshot;
use troupe_actors::supervision::stats::{Fault, Timings};
use troupe_actors::supervision::supervisor::SupervisorMsg;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use troupe_actors::events::EventKind;

use super::auth::Operator;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(actors))
        .routes(routes!(actor))
        .routes(routes!(inject_fault))
}

/// A live stream's buffer: a client that falls this far behind loses events
/// (counted in the bus's figures) rather than slowing anything down.
const STREAM_BUFFER: usize = 1024;

fn parse_kinds(raw: Option<String>) -> Result<Option<Vec<&'static str>>, ApiError> {
    let mut kinds = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if key != "kinds" || kinds.is_some() {
            return Err(ApiError::InvalidQuery(vec![FieldError::new(
                key.as_ref(),
                "only one `kinds` parameter is accepted",
            )]));
        }
        let mut wanted = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match EventKind::NAMES.iter().find(|k| **k == name) {
                Some(kind) => wanted.push(*kind),
                None => {
                    return Err(ApiError::InvalidQuery(vec![FieldError::new(
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

/// A failure a supervisor saw.
#[derive(Serialize, ToSchema)]
pub struct FailureView {
    pub reason: String,
    pub at: String,
}

/// Handling time over the last 1,024 messages.
#[derive(Serialize, ToSchema)]
pub struct HandlingView {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The executor pool under the queue poller.
#[derive(Serialize, ToSchema)]
pub struct PoolView {
    pub size: usize,
    pub busy: usize,
    pub idle: usize,
    /// Job id held by each busy executor.
    pub jobs: Vec<String>,
}

/// One actor in the supervision tree.
#[derive(Serialize, ToSchema)]
#[schema(no_recursion)]
pub struct ActorNode {
    #[schema(example = "user")]
    pub name: String,
    #[schema(example = "UserActor")]
    pub kind: String,
    /// ractor's actor id (changes on restart).
    pub id: Option<String>,
    /// `running` or `down`.
    pub status: &'static str,
    pub supervisor: Option<String>,
    pub started_at: Option<String>,
    pub restarts: u64,
    pub restart_budget_left: Option<u32>,
    pub last_failure: Option<FailureView>,
    pub messages_handled: u64,
    /// Messages sent to it and not yet handled (counted by Troupe: ractor
    /// does not expose mailbox length).
    pub mailbox_backlog: u64,
    pub handling: Option<HandlingView>,
    pub pool: Option<PoolView>,
    pub children: Vec<ActorNode>,
}

fn handling(t: Option<Timings>) -> Option<HandlingView> {
    t.map(|t| HandlingView {
        p50_ms: t.p50_ms,
        p99_ms: t.p99_ms,
    })
}

impl ActorNode {
    /// One actor as its supervisor (`supervisor`) sees it.
    fn of(actor: ActorSnapshot, supervisor: &str) -> Self {
        Self {
            name: actor.name,
            kind: actor.kind.into(),
            status: if actor.running { "running" } else { "down" },
            id: actor.id,
            supervisor: Some(supervisor.into()),
            started_at: Some(actor.started_at.to_rfc3339()),
            restarts: actor.restarts,
            restart_budget_left: Some(actor.restart_budget_left),
            last_failure: actor.last_failure.map(|f| FailureView {
                reason: f.reason,
                at: f.at.to_rfc3339(),
            }),
            messages_handled: actor.messages_handled,
            mailbox_backlog: actor.mailbox_backlog,
            handling: handling(actor.handling),
            pool: None,
            children: vec![],
        }
    }

    /// The poller's node with its pool and executors.
    fn with_pool(mut self, pool: PoolInfo) -> Self {
        self.pool = Some(PoolView {
            size: pool.size,
            busy: pool.busy,
            idle: pool.idle,
            jobs: pool
                .executors
                .iter()
                .filter_map(|e| e.job.clone())
                .collect(),
        });
        let supervisor = self.name.clone();
        self.children = pool
            .executors
            .into_iter()
            .map(|e| ActorNode::of(e.actor, &supervisor))
            .collect();
        self
    }
}

/// The live tree, from the root supervisor and the poller's pool.
async fn tree(state: &AppState) -> Result<ActorNode, ApiError> {
    let timeout = state.call_timeout();
    let children = ractor::call_t!(
        state.actors.supervisor(),
        SupervisorMsg::Children,
        timeout.as_millis() as u64
    )
    .map_err(|_| ApiError::Unavailable("the root supervisor did not answer".into()))?;
    let mut pool = state.actors.queue.pool().await.ok();
    let poller = state.actors.queue.poller_name();
    let nodes = children
        .into_iter()
        .map(|child| {
            let is_poller = child.name == poller;
            let node = ActorNode::of(child, "root");
            match if is_poller { pool.take() } else { None } {
                Some(pool) => node.with_pool(pool),
                None => node,
            }
        })
        .collect();
    let escalated = state.actors.tree.escalated();
    Ok(ActorNode {
        name: "root".into(),
        kind: "RootSupervisor".into(),
        id: Some(state.actors.supervisor().get_id().to_string()),
        status: if escalated.is_some() {
            "escalated"
        } else {
            "running"
        },
        supervisor: None,
        started_at: chrono::Duration::from_std(state.started.elapsed())
            .ok()
            .map(|uptime| (chrono::Utc::now() - uptime).to_rfc3339()),
        restarts: 0,
        restart_budget_left: None,
        last_failure: escalated.map(|reason| FailureView {
            reason,
            at: String::new(),
        }),
        messages_handled: 0,
        mailbox_backlog: 0,
        handling: None,
        pool: None,
        children: nodes,
    })
}

fn find(node: ActorNode, name: &str) -> Option<ActorNode> {
    if node.name == name {
        return Some(node);
    }
    node.children
        .into_iter()
        .find_map(|child| find(child, name))
}

/// The live supervision tree: every actor with its status, restarts and
/// remaining restart budget, last failure, messages handled, mailbox backlog
/// and handling time; the executor pool under the queue poller.
#[utoipa::path(get, path = "/ops/actors", tag = "Ops", security(("ops-token" = [])), responses(
    (status = 200, body = ActorNode),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn actors(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<ActorNode>, ApiError> {
    Ok(Json(tree(&state).await?))
}

/// One actor of the tree, by name (`user`, `cache`, `queue-poller`, `executor-0`, …).
#[utoipa::path(get, path = "/ops/actors/{name}", tag = "Ops", security(("ops-token" = [])),
    params(("name" = String, Path, description = "The actor's name")),
    responses(
        (status = 200, body = ActorNode),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No actor of that name", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(actor = %name))]
async fn actor(
    State(state): State<AppState>,
    _operator: Operator,
    Path(name): Path<String>,
) -> Result<Json<ActorNode>, ApiError> {
    find(tree(&state).await?, &name)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no actor named {name:?}")))
}

/// A fault to inject.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"kind": "delay", "delay_ms": 500}))]
pub struct FaultRequest {
    /// `panic` (on its next message), `stop` (after its next message) or `delay`.
    pub kind: String,
    /// With `delay`: how long the next message stalls (1 to 60,000).
    pub delay_ms: Option<u64>,
}

impl FromJson for FaultRequest {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let kind: Option<String> = f.required("kind", "a string");
        let delay_ms: Option<u64> = f.optional("delay_ms", "a positive integer");
        if let Some(kind) = &kind {
            f.check(
                ["panic", "stop", "delay"].contains(&kind.as_str()),
                "kind",
                "must be panic, stop or delay",
            );
            if kind == "delay" {
                f.check(
                    delay_ms.is_some_and(|d| (1..=60_000).contains(&d)),
                    "delay_ms",
                    "must be 1 to 60000 with kind delay",
                );
            }
        }
        Some(Self {
            kind: kind?,
            delay_ms,
        })
    }
}

/// Acknowledgement of an injected fault.
#[derive(Serialize, ToSchema)]
pub struct FaultInjected {
    pub actor: String,
    pub fault: String,
}

/// Make an actor panic on its next message, stop after it, or stall it.
/// Only when `ops.fault_injection` is on (never under `production`); 404 otherwise.
#[utoipa::path(post, path = "/ops/actors/{name}/fault", tag = "Ops", security(("ops-token" = [])),
    params(("name" = String, Path, description = "The actor's name")),
    request_body = FaultRequest,
    responses(
        (status = 202, description = "Armed: applies to the actor's next message", body = FaultInjected),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Fault injection is off, or no such actor", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(actor = %name))]
async fn inject_fault(
    State(state): State<AppState>,
    _operator: Operator,
    Path(name): Path<String>,
    Valid(body): Valid<FaultRequest>,
) -> Result<(StatusCode, Json<FaultInjected>), ApiError> {
    if !state.settings.ops.fault_injection {
        return Err(ApiError::NotFound("no route matches this path".into()));
    }
    let stats = state
        .actors
        .stats_of(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no actor named {name:?}")))?;
    let fault = match body.kind.as_str() {
        "panic" => Fault::Panic,
        "stop" => Fault::Stop,
        _ => Fault::Delay {
            delay_ms: body.delay_ms.unwrap_or(1),
        },
    };
    stats.inject(fault);
    let description = format!("{fault:?}").to_lowercase();
    tracing::warn!(target: "system", actor = %name, fault = %description, "fault injected");
    state.actors.events.publish(EventKind::FaultInjected {
        actor: name.clone(),
        fault: description.clone(),
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(FaultInjected {
            actor: name,
            fault: description,
        }),
    ))
}

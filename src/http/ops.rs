//! `/ops/*`: operator endpoints (ops token).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use troupe_actors::cache::CacheStats;
use troupe_actors::queue::pool::PoolInfo;
use troupe_actors::supervision::fault::Fault;
use troupe_actors::supervision::place::ActorSnapshot;
use troupe_actors::supervision::stats::Timings;
use troupe_actors::system::tree::{ChildSnapshot, TreeSnapshot};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use troupe_actors::events::{EventKind, Filter, Scope};

use super::auth::Operator;
use super::error::{ApiError, Problem};
use super::extract::{Fields, FromJson, FromQuery, Params, Valid, ValidQuery};
use crate::metrics::EVENT_STREAM_LABEL;
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
            example = "event: UserCreated\nid: web-1-41-a1b2c3:7\ndata: {\"seq\":7,\"at\":\"2026-11-29T07:30:00Z\",\"instance\":\"web-1-41-a1b2c3\",\"kind\":\"UserCreated\",\"user_id\":\"65f1c0ffee0000000000beef\"}\n\n"),
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

/// A failure a supervisor saw.
#[derive(Serialize, ToSchema)]
pub struct FailureView {
    pub reason: String,
    pub at: String,
}

/// Handling time: from taking a message from the mailbox to the end of the
/// work it caused — also when the actor hands that work to a task of its own
/// (the user actor's bcrypt and MongoDB calls, the cache's loads, the
/// poller's claims), until that task ends. An injected delay counts. As
/// percentiles over the actor's last 1,024 messages.
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

/// The profile cache's figures, on the cache's node.
#[derive(Serialize, ToSchema)]
pub struct CacheView {
    /// Hits in either tier, and misses (loads started or joined).
    pub hits: u64,
    pub misses: u64,
    /// Loads from the source, and fills refused because an invalidation
    /// fenced the key while they loaded.
    pub loads: u64,
    pub fills_refused: u64,
    pub invalidations: u64,
    /// 1 while Redis is failing.
    pub degraded: bool,
    /// The in-process tier: served only while `tracking`.
    pub local: LocalTierView,
}

/// The cache's in-process tier.
#[derive(Serialize, ToSchema)]
pub struct LocalTierView {
    /// Whether Redis's invalidations reach it (it is served only then).
    pub tracking: bool,
    /// Entries held (as of the tracking task's last check).
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    /// Ids Redis invalidated, and whole flushes.
    pub invalidations: u64,
    pub flushes: u64,
}

impl CacheView {
    fn of(stats: &CacheStats) -> Self {
        let n = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        Self {
            hits: n(&stats.hits),
            misses: n(&stats.misses),
            loads: n(&stats.loads),
            fills_refused: n(&stats.fills_refused),
            invalidations: n(&stats.invalidations),
            degraded: stats.degraded(),
            local: LocalTierView {
                tracking: stats.tracking(),
                entries: n(&stats.local_size),
                hits: n(&stats.local_hits),
                misses: n(&stats.local_misses),
                invalidations: n(&stats.local_invalidations),
                flushes: n(&stats.local_flushes),
            },
        }
    }
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
    /// Messages whose work is done.
    pub messages_handled: u64,
    /// Messages sent to it and not yet taken from its mailbox (counted by
    /// Troupe: ractor does not expose mailbox length).
    pub mailbox_backlog: u64,
    /// Messages taken from the mailbox whose work is not done yet.
    pub in_flight: u64,
    pub handling: Option<HandlingView>,
    pub pool: Option<PoolView>,
    /// On the cache: its hit, miss and invalidation counts, both tiers.
    pub cache: Option<CacheView>,
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
            in_flight: actor.in_flight,
            handling: handling(actor.handling),
            pool: None,
            cache: None,
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

    /// A child of the root, with its pool if it has one.
    fn child(child: ChildSnapshot) -> Self {
        let node = ActorNode::of(child.actor, "root");
        match child.pool {
            Some(pool) => node.with_pool(pool),
            None => node,
        }
    }

    /// The root supervisor, started with the service, and its children.
    pub(crate) fn root(tree: TreeSnapshot, started: Instant) -> Self {
        let started_at = chrono::Duration::from_std(started.elapsed())
            .ok()
            .map(|uptime| (chrono::Utc::now() - uptime).to_rfc3339());
        ActorNode {
            name: "root".into(),
            kind: "RootSupervisor".into(),
            id: Some(tree.root_id),
            status: match tree.escalated {
                Some(_) => "escalated",
                None => "running",
            },
            supervisor: None,
            started_at,
            restarts: 0,
            restart_budget_left: None,
            last_failure: tree.escalated.map(|reason| FailureView {
                reason,
                at: String::new(),
            }),
            messages_handled: 0,
            mailbox_backlog: 0,
            in_flight: 0,
            handling: None,
            pool: None,
            cache: None,
            children: tree.children.into_iter().map(ActorNode::child).collect(),
        }
    }
}

/// The live tree, through the actor system's introspection handle.
pub(crate) async fn tree(state: &AppState) -> Result<ActorNode, ApiError> {
    let snapshot = state
        .actors
        .introspection()
        .snapshot()
        .await
        .map_err(|_| ApiError::Unavailable("the root supervisor did not answer".into()))?;
    let mut root = ActorNode::root(snapshot, state.started);
    let cache = state.actors.cache_name();
    if let Some(node) = root.children.iter_mut().find(|n| n.name == cache) {
        node.cache = Some(CacheView::of(&state.actors.cache_stats));
    }
    Ok(root)
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
    let fault = match body.kind.as_str() {
        "panic" => Fault::Panic,
        "stop" => Fault::Stop,
        _ => Fault::Delay {
            delay_ms: body.delay_ms.unwrap_or(1),
        },
    };
    // Logs it and publishes FaultInjected.
    state
        .actors
        .introspection()
        .inject(&name, fault)
        .map_err(|unknown| ApiError::NotFound(unknown.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(FaultInjected {
            actor: name,
            fault: fault.describe(),
        }),
    ))
}

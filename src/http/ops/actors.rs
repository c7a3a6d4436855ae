//! `GET /ops/actors` and `GET /ops/actors/{name}`: the live supervision
//! tree, each actor's view (status, restarts, handling time, the executor
//! pool, the cache's figures). The cluster view reuses [`tree`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use troupe_actors::cache::CacheStats;
use troupe_actors::queue::pool::PoolInfo;
use troupe_actors::rfc3339;
use troupe_actors::supervision::mailbox::{DeadLetter, DeadReason};
use troupe_actors::supervision::place::ActorSnapshot;
use troupe_actors::supervision::stats::Timings;
use troupe_actors::system::tree::{ChildSnapshot, TreeSnapshot};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::auth::Operator;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(actors))
        .routes(routes!(actor))
}

/// A failure a supervisor saw.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct HandlingView {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Wait in the mailbox: from a message's send to its taking by the actor
/// (every message, requests and timers alike). As percentiles over the
/// actor's last 1,024 messages.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitView {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A message that never reached its actor: no payload, only its type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    #[schema(example = "cache")]
    pub actor: String,
    /// The message's type.
    #[schema(example = "CacheMsg")]
    pub message: String,
    /// `notRunning`: sent while the actor was down; `leftInMailbox`: in the
    /// mailbox of an actor that stopped.
    #[schema(example = "notRunning")]
    pub reason: String,
    pub at: String,
}

impl DeadLetterView {
    fn of(letter: DeadLetter) -> Self {
        Self {
            actor: letter.actor.into(),
            message: letter.message.into(),
            reason: match letter.reason {
                DeadReason::NotRunning => "notRunning",
                DeadReason::LeftInMailbox => "leftInMailbox",
            }
            .into(),
            at: rfc3339::format(letter.at),
        }
    }
}

/// The executor pool under the queue poller.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub size: usize,
    pub busy: usize,
    pub idle: usize,
    /// Job id held by each busy executor.
    pub jobs: Vec<String>,
}

/// The profile cache's figures, on the cache's node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct LocalTierView {
    /// Whether it holds a lease, renewed on the connection that delivers
    /// the fleet's invalidations (it is served only then).
    pub tracking: bool,
    /// Entries held (as of the last renewal).
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
            hits: stats.hits.get(),
            misses: n(&stats.misses),
            loads: n(&stats.loads),
            fills_refused: n(&stats.fills_refused),
            invalidations: n(&stats.invalidations),
            degraded: stats.degraded(),
            local: LocalTierView {
                tracking: stats.tracking(),
                entries: n(&stats.local_size),
                hits: stats.local_hits.get(),
                misses: stats.local_misses.get(),
                invalidations: n(&stats.local_invalidations),
                flushes: n(&stats.local_flushes),
            },
        }
    }
}

/// One actor in the supervision tree.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
    pub wait: Option<WaitView>,
    /// Messages that never reached the actor since the service started.
    pub dead_letters: u64,
    /// The last 16 of them, oldest first.
    pub recent_dead_letters: Vec<DeadLetterView>,
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
            started_at: Some(rfc3339::format(actor.started_at)),
            restarts: actor.restarts,
            restart_budget_left: Some(actor.restart_budget_left),
            last_failure: actor.last_failure.map(|f| FailureView {
                reason: f.reason,
                at: rfc3339::format(f.at),
            }),
            messages_handled: actor.messages_handled,
            mailbox_backlog: actor.mailbox_backlog,
            in_flight: actor.in_flight,
            handling: handling(actor.handling),
            wait: actor.wait.map(|t| WaitView {
                p50_ms: t.p50_ms,
                p99_ms: t.p99_ms,
            }),
            dead_letters: actor.dead_letters,
            recent_dead_letters: (actor.recent_dead_letters.into_iter())
                .map(DeadLetterView::of)
                .collect(),
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
            .map(|uptime| rfc3339::format(chrono::Utc::now() - uptime));
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
            wait: None,
            dead_letters: 0,
            recent_dead_letters: vec![],
            pool: None,
            cache: None,
            children: tree.children.into_iter().map(ActorNode::child).collect(),
        }
    }
}

/// The live tree, through the actor system's introspection handle.
pub async fn tree(state: &AppState) -> Result<ActorNode, ApiError> {
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
/// remaining restart budget, last failure, messages handled, mailbox backlog,
/// wait in the mailbox, handling time and dead letters; the executor pool
/// under the queue poller.
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

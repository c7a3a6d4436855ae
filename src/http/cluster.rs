//! `/ops/cluster*`: the fleet (ops token) — the live instances, and any
//! instance's actor tree — and [`PublishedTree`], the [`LocalView`] this
//! instance publishes with its heartbeats.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use troupe_actors::fleet::heartbeat::{age_ms, Heartbeat};
use troupe_actors::fleet::{FleetError, LocalView};
use troupe_actors::rfc3339;
use troupe_actors::system::tree::TreeView;
use troupe_actors::system::Handles;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::error::{ApiError, Problem};
use super::ops::{tree, ActorNode};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster))
        .routes(routes!(instance_actors))
}

/// What this instance publishes with every heartbeat: its tree as
/// `/ops/actors` renders it, and whether it is ready (start-up indexes
/// created, actor tree not escalated — the store pings of `/health/ready`
/// are left out: they are per-caller, and an instance that cannot reach
/// Redis publishes nothing anyway).
pub struct PublishedTree {
    tree: TreeView,
    started: Instant,
    indexes: Arc<std::sync::atomic::AtomicBool>,
}

impl PublishedTree {
    pub fn new(actors: &Handles, started: Instant) -> Self {
        Self {
            tree: actors.introspection().clone(),
            started,
            indexes: Arc::clone(&actors.indexes_ready),
        }
    }
}

impl LocalView for PublishedTree {
    fn tree(&self) -> BoxFuture<'static, Option<serde_json::Value>> {
        let (tree, started) = (self.tree.clone(), self.started);
        Box::pin(async move {
            let snapshot = tree.snapshot().await.ok()?;
            serde_json::to_value(ActorNode::root(snapshot, started)).ok()
        })
    }

    fn ready(&self) -> bool {
        self.indexes.load(std::sync::atomic::Ordering::Acquire) && self.tree.escalated().is_none()
    }
}

/// An instance's executor pool.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancePool {
    pub size: usize,
    pub busy: usize,
}

/// One live instance, as its last heartbeat described it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Its id (`lockedBy` on the jobs it holds).
    #[schema(example = "web-1-4242-a1b2c3")]
    pub id: String,
    pub host: String,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    /// Its last heartbeat (RFC 3339, its own clock).
    pub last_seen: String,
    /// Milliseconds since its last heartbeat (by this instance's clock).
    pub age_ms: u64,
    /// Start-up indexes created and actor tree healthy.
    pub ready: bool,
    /// `null` if its poller did not answer its heartbeat in time.
    pub pool: Option<InstancePool>,
    /// Ids of the jobs its executors run.
    pub jobs: Vec<String>,
    /// The job types it has handlers for: the only ones it claims (empty
    /// from a version that does not publish them).
    pub job_types: Vec<String>,
}

impl InstanceView {
    fn of(beat: Heartbeat, now: DateTime<Utc>) -> Self {
        Self {
            age_ms: age_ms(beat.at, now),
            last_seen: rfc3339::format(beat.at),
            started_at: rfc3339::format(beat.started_at),
            id: beat.id,
            host: beat.host,
            version: beat.version,
            ready: beat.ready,
            pool: beat.pool.map(|p| InstancePool {
                size: p.size,
                busy: p.busy,
            }),
            jobs: beat.jobs,
            job_types: beat.job_types,
        }
    }
}

/// The fleet: every live instance, and which one answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The id of the instance that answered.
    #[serde(rename = "self")]
    pub me: String,
    /// The live instances (heartbeat within `fleet.heartbeat_ttl`), by id.
    pub instances: Vec<InstanceView>,
}

fn unavailable(err: FleetError) -> ApiError {
    tracing::warn!(target: "system", error = %err, "instance registry unavailable");
    ApiError::Unavailable("the instance registry (Redis) is unavailable".into())
}

/// The live instances of the fleet (every instance sharing this database and
/// Redis prefix) with when each was last seen, its readiness, pool and the
/// jobs it holds. Read from their heartbeats in Redis: two commands, however
/// large the fleet.
#[utoipa::path(get, path = "/ops/cluster", tag = "Ops", security(("ops-token" = [])), responses(
    (status = 200, body = ClusterView),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn cluster(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<ClusterView>, ApiError> {
    let fleet = &state.actors.fleet;
    let beats = fleet.instances().await.map_err(unavailable)?;
    let now = Utc::now();
    Ok(Json(ClusterView {
        me: fleet.instance().to_owned(),
        instances: beats
            .into_iter()
            .map(|b| InstanceView::of(b, now))
            .collect(),
    }))
}

/// An instance's actor tree: `/ops/actors` as that instance answers it, plus
/// which instance and how old the snapshot is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceActors {
    pub instance: String,
    /// Age of the snapshot: 0 for the instance answering (live); for another,
    /// the time since its last heartbeat published it.
    pub snapshot_age_ms: u64,
    /// The tree, as `GET /ops/actors` on that instance.
    #[schema(value_type = ActorNode)]
    pub tree: serde_json::Value,
}

/// Any instance's supervision tree. This instance answers live; another
/// from the snapshot its last heartbeat published (every
/// `fleet.heartbeat_interval`).
#[utoipa::path(get, path = "/ops/cluster/{instance}/actors", tag = "Ops", security(("ops-token" = [])),
    params(("instance" = String, Path, description = "An instance id, as `/ops/cluster` lists it")),
    responses(
        (status = 200, body = InstanceActors),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live instance has that id, or it has published no tree yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn instance_actors(
    State(state): State<AppState>,
    _operator: Operator,
    Path(instance): Path<String>,
) -> Result<Json<InstanceActors>, ApiError> {
    let fleet = &state.actors.fleet;
    if instance == fleet.instance() {
        let tree = serde_json::to_value(tree(&state).await?)
            .map_err(|_| ApiError::Unavailable("the tree could not be rendered".into()))?;
        return Ok(Json(InstanceActors {
            instance,
            snapshot_age_ms: 0,
            tree,
        }));
    }
    let unknown = || ApiError::NotFound(format!("no live instance {instance:?}"));
    let (_, published) = fleet
        .instance_of(&instance)
        .await
        .map_err(unavailable)?
        .ok_or_else(unknown)?;
    let published = published.ok_or_else(|| {
        ApiError::NotFound(format!("instance {instance:?} has published no tree yet"))
    })?;
    Ok(Json(InstanceActors {
        snapshot_age_ms: age_ms(published.at, Utc::now()),
        instance,
        tree: published.tree,
    }))
}

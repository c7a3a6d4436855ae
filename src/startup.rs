//! Bootstrap: configuration → stores → indexes → actor tree → HTTP.
//!
//! [`Application::build`] does everything up to binding the listener, so a
//! caller (main, or a test on port 0) can read [`Application::port`] before
//! serving; [`Application::run`] serves until the given shutdown future
//! resolves, then drains requests and stops the actors in order.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use ractor::{Actor, ActorRef};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use troupe_actors::queue::handlers::{JobHandlers, Mailer};
use troupe_actors::queue::store::JobStore;
use troupe_actors::store::{self, RedisStore};
use troupe_actors::supervision::supervisor::{RootSupervisor, SupervisorArgs, SupervisorMsg};
use troupe_actors::users::Users;

use crate::config::Settings;
use crate::http::metrics::Metrics;
use crate::server::{self, ConnectionLimits};
use crate::state::{AppState, Inner};
use crate::tree;

/// A bootstrap step that failed; the message says which and why.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid MongoDB settings: {0}")]
    Mongo(store::StoreError),
    #[error("invalid Redis URL: {0}")]
    Redis(store::StoreError),
    #[error("invalid mail settings: {0}")]
    Mail(String),
    #[error("cannot start the actor tree: {0}")]
    Actors(#[from] ractor::SpawnErr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Application {
    /// Build with the service's own job handlers.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_jobs(settings, JobHandlers::new()).await
    }

    /// Build with `extra` job handlers added to the service's own (tests and
    /// extensions register job types this way).
    pub async fn build_with_jobs(
        settings: Settings,
        extra: JobHandlers,
    ) -> Result<Self, StartupError> {
        let started = Instant::now();
        let mongo_commands = store::MongoCommands::default();
        let db = store::connect_mongo(
            settings.mongodb.uri.expose_secret(),
            &settings.mongodb.database,
            settings.mongodb.timeout,
            &mongo_commands,
        )
        .await
        .map_err(StartupError::Mongo)?;
        // MongoDB may be down at boot: try the indexes once, then keep
        // retrying in the background; readiness stays 503 until they exist.
        let indexes_ready = Arc::new(AtomicBool::new(false));
        spawn_index_creation(
            db.clone(),
            Arc::clone(&indexes_ready),
            settings.mongodb.timeout,
        )
        .await;
        // Redis is only a cache: parse the URL now, connect on first use.
        let redis = RedisStore::new(
            settings.redis.url.expose_secret(),
            &settings.redis.key_prefix,
            settings.redis.timeout,
        )
        .map_err(StartupError::Redis)?;

        let mailer = Mailer::new(&settings.mail).map_err(StartupError::Mail)?;
        let (children, actors) = tree::build(&settings, &db, &redis, mailer, extra);
        let (supervisor, _) = Actor::spawn(
            None,
            RootSupervisor,
            SupervisorArgs {
                children,
                events: actors.events.clone(),
                policy: settings.actors.restart,
                health: actors.tree.clone(),
            },
        )
        .await?;

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let metrics = Arc::new(Metrics::new(
            &actors.queue_metrics,
            &actors.limit_metrics,
            &mongo_commands,
            settings.ops.metrics_reuse,
        ));
        let state = AppState::new(Inner {
            settings,
            db,
            redis,
            started,
            actors,
            supervisor: supervisor.clone(),
            metrics,
            indexes_ready,
            mongo_commands,
            probes: Default::default(),
        });
        tracing::info!(target: "system", port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64, "troupe is ready to serve");
        Ok(Self {
            listener,
            state,
            supervisor,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Handlers' shared state (tests use it to reach the stores).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run(shutdown_signal()).await
    }

    /// Serve until `shutdown` resolves; then stop accepting connections, let
    /// in-flight requests finish and stop the actors, each within the grace
    /// period (see [`crate::server`] for the connection limits).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.settings.server.shutdown_grace;
        let limits = ConnectionLimits::from(&self.state.settings.server);
        let app = crate::http::router(self.state.clone());
        server::serve(self.listener, app, limits, shutdown).await;
        let stopped = ractor::call!(self.supervisor, |reply| SupervisorMsg::Shutdown {
            grace,
            reply
        });
        if let Err(err) = stopped {
            tracing::warn!(target: "system", error = %err, "actor tree did not shut down cleanly");
        }
        self.supervisor.stop(None);
        tracing::info!(target: "system", "troupe stopped");
        Ok(())
    }
}

/// Create the indexes every actor relies on. One attempt now; if MongoDB is
/// unreachable, keep retrying (with backoff up to 30 s) in the background.
async fn spawn_index_creation(db: mongodb::Database, ready: Arc<AtomicBool>, timeout: Duration) {
    async fn create(db: &mongodb::Database) -> mongodb::error::Result<()> {
        Users::ensure_indexes(db).await?;
        JobStore::ensure_indexes(db).await
    }
    match create(&db).await {
        Ok(()) => ready.store(true, Ordering::Release),
        Err(err) => {
            tracing::error!(target: "system", error = %err, "MongoDB unreachable at start-up; not ready until it answers");
            tokio::spawn(async move {
                let mut delay = timeout.max(Duration::from_millis(500));
                loop {
                    tokio::time::sleep(delay).await;
                    match create(&db).await {
                        Ok(()) => {
                            tracing::info!(target: "system", "MongoDB answers; indexes created");
                            ready.store(true, Ordering::Release);
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(target: "system", error = %err, "MongoDB still unreachable");
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            });
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}

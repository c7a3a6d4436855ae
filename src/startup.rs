//! Bootstrap: configuration → stores → indexes → actor tree → HTTP.
//!
//! [`Application::build`] does everything up to binding the listener, so a
//! caller (main, or a test on port 0) can read [`Application::port`] before
//! serving; [`Application::run`] serves until the given shutdown future
//! resolves, then drains requests and stops the actors in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use troupe_actors::migrate::{self, Readiness, Refusal};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::store::{self, MongoCommands};
use troupe_actors::system::{ActorSystem, StartError, Stores};

use crate::config::Settings;
use crate::http::cluster::PublishedTree;
use crate::metrics::Metrics;
use crate::server::{self, ConnectionLimits};
use crate::state::{AppState, Inner};

/// A bootstrap step that failed; the message says which and why.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A URI that parses but cannot be used (an SRV name that does not
    /// resolve): names the variable; the cause is in a few words, and not
    /// a `source`: the driver's own Display is a debug dump.
    #[error("MONGODB_URI (mongodb.uri) cannot be used: {0}; fix: set MONGODB_URI to a reachable server, e.g. mongodb://127.0.0.1:27017")]
    Mongo(store::StoreError),
    #[error(
        "REDIS_URL (redis.url) cannot be used; fix: set REDIS_URL, e.g. redis://127.0.0.1:6379"
    )]
    Redis(#[source] store::StoreError),
    #[error("cannot start the actors")]
    Actors(#[from] StartError),
    /// The database needs `troupe migrate` first, or is newer than this
    /// binary (the text says which migrations). Nothing was changed.
    #[error("refusing to serve this database: {0}")]
    Refused(Refusal),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    system: ActorSystem,
}

impl StartupError {
    /// The process's exit code: 2 for settings that cannot be used (as for
    /// any configuration error), 3 for a database that needs `troupe
    /// migrate` (or a newer binary), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Mongo(_) | Self::Redis(_) => 2,
            Self::Refused(_) => 3,
            Self::Bind { .. } | Self::Actors(_) => 1,
        }
    }
}

impl Application {
    /// Build with the service's own job handlers.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_jobs(settings, JobHandlers::new()).await
    }

    /// Build with `extra` job handlers added to the service's own (tests and
    /// extensions register job types this way).
    ///
    /// The database's migrations are checked first, read only: a database
    /// that needs `troupe migrate` (or was migrated by a newer binary) is
    /// refused before the port is bound. Then the listener is bound: a port
    /// in use fails start-up before anything else has started (an empty
    /// database is initialised only after that, by the actor system).
    pub async fn build_with_jobs(
        settings: Settings,
        extra: JobHandlers,
    ) -> Result<Self, StartupError> {
        let started = Instant::now();
        let mongo_commands = MongoCommands::new(troupe_actors::system::STORE_COLLECTIONS);
        // Redis is not contacted here (only a cache, connected on first
        // use); MongoDB only for the migrations check, and if it is down at
        // boot the system keeps retrying (readiness says so).
        let db = store::connect_mongo(
            settings.mongodb.uri.expose_secret(),
            &settings.mongodb.database,
            settings.mongodb.timeout,
            &mongo_commands,
        )
        .await
        .map_err(StartupError::Mongo)?;
        if let Err(refused) = check_migrations(&db).await {
            db.client().clone().shutdown().immediate(true).await;
            return Err(refused);
        }
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = match TcpListener::bind(&addr).await {
            Ok(listener) => listener,
            Err(source) => {
                // Nothing started is left running: the driver's monitors
                // (the check's connection) end with its client.
                db.client().clone().shutdown().immediate(true).await;
                return Err(StartupError::Bind { addr, source });
            }
        };
        let redis = settings.redis.store().map_err(StartupError::Redis)?;
        let stores = Stores { db, redis };
        let system = ActorSystem::start(settings.system_config(), stores.clone(), extra).await?;
        let actors = system.handles().clone();
        // Every heartbeat from now on carries this instance's tree.
        actors
            .fleet
            .publish(Arc::new(PublishedTree::new(&actors, started)));
        let metrics = Arc::new(Metrics::new(
            &actors,
            &mongo_commands,
            settings.ops.metrics_reuse,
        ));
        let state = AppState::new(Inner {
            settings,
            stores,
            started,
            actors,
            metrics,
            mongo_commands,
            probes: Default::default(),
            stopping: CancellationToken::new(),
        });
        tracing::info!(target: "system", port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64, "troupe is ready to serve");
        Ok(Self {
            listener,
            state,
            system,
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
        let limits = ConnectionLimits::from(&self.state.settings.server);
        let app = crate::http::router(self.state.clone());
        let stopping = self.state.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.cancel();
        };
        // The instance leaves the fleet as soon as shutdown begins, while the
        // requests in flight drain: the others stop listing it at once.
        let (stopping, fleet) = (self.state.stopping.clone(), self.state.actors.fleet.clone());
        let leave = async move {
            stopping.cancelled().await;
            fleet.leave().await;
        };
        let serve = async {
            server::serve(self.listener, app, limits, shutdown).await;
            self.state.stopping.cancel(); // (so `leave` ends, whatever ended serving)
        };
        tokio::join!(serve, leave);
        self.system.shutdown().await;
        // Once `run` returns, the service sends nothing more to the stores.
        self.state.stores.close().await;
        tracing::info!(target: "system", "troupe stopped");
        Ok(())
    }
}

/// Refuse a database this binary must not serve (see
/// [`troupe_actors::migrate::readiness`]). Unreachable: start anyway; the
/// actor system checks again once MongoDB answers.
async fn check_migrations(db: &mongodb::Database) -> Result<(), StartupError> {
    let ledger = migrate::MongoLedger::new(db);
    match migrate::readiness(&ledger, &migrate::migrations()).await {
        Ok(Readiness::Refused(refusal)) => Err(StartupError::Refused(refusal)),
        Ok(Readiness::Ready | Readiness::Initialise) => Ok(()),
        Err(err) => {
            tracing::warn!(target: "system", error = %err, "cannot check the database's migrations at start-up; checking once MongoDB answers");
            Ok(())
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

//! Bootstrap: configuration → stores → indexes → actor tree → HTTP.
//!
//! [`Application::build`] does everything up to binding the listener, so a
//! caller (main, or a test on port 0) can read [`Application::port`] before
//! serving; [`Application::run`] serves until the given shutdown future
//! resolves, then drains requests and stops the actors in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorRef};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use troupe_actors::jobs;
use troupe_actors::slot::ActorSlot;
use troupe_actors::store::{self, RedisStore};
use troupe_actors::supervisor::{
    ChildSpec, RootSupervisor, SupervisorArgs, SupervisorMsg, TreeHealth,
};
use troupe_actors::tokens::Tokens;
use troupe_actors::user::{UserActor, UserArgs, Users};

use crate::config::Settings;
use crate::state::{AppState, Inner};

/// A bootstrap step that failed; the message says which and why.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach MongoDB: {0}")]
    Mongo(store::StoreError),
    #[error("cannot create MongoDB indexes: {0}")]
    Indexes(mongodb::error::Error),
    #[error("invalid Redis URL: {0}")]
    Redis(store::StoreError),
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
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let started = Instant::now();
        let db = store::connect_mongo(
            settings.mongodb.uri.expose_secret(),
            &settings.mongodb.database,
            settings.mongodb.timeout,
        )
        .await
        .map_err(StartupError::Mongo)?;
        // Fail fast when MongoDB, the source of truth, is unreachable at boot.
        store::ping_mongo(&db).await.map_err(StartupError::Mongo)?;
        Users::ensure_indexes(&db)
            .await
            .map_err(StartupError::Indexes)?;
        jobs::ensure_indexes(&db)
            .await
            .map_err(StartupError::Indexes)?;
        // Redis is only a cache: parse the URL now, connect on first use.
        let redis = RedisStore::new(
            settings.redis.url.expose_secret(),
            &settings.redis.key_prefix,
            settings.redis.timeout,
        )
        .map_err(StartupError::Redis)?;

        let tokens = Arc::new(Tokens::new(&settings.auth));
        let users = ActorSlot::new("user");
        let children = vec![ChildSpec::new(
            UserActor,
            UserArgs {
                users: Arc::new(Users::new(
                    &db,
                    Arc::clone(&tokens),
                    settings.auth.bcrypt_cost,
                )),
            },
            users.clone(),
        )];

        let tree = TreeHealth::default();
        let (supervisor, _) = Actor::spawn(
            None,
            RootSupervisor,
            SupervisorArgs {
                children,
                policy: settings.actors.restart,
                health: tree.clone(),
            },
        )
        .await?;

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let state = AppState::new(Inner {
            settings,
            db,
            redis,
            tree,
            started,
            tokens,
            users,
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
    /// in-flight requests finish and stop the actors, all within the grace period.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.settings.server.shutdown_grace;
        let app = crate::http::router(self.state.clone());
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(target: "system", "shutdown requested; draining requests");
            let _ = stopping_tx.send(());
        });
        let drain_deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server => result?,
            () = drain_deadline => {
                tracing::warn!(target: "system", "grace period over; dropping unfinished requests");
            }
        }
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

//! [`AppState`]: what handlers reach — configuration, actor slots, stores for
//! health checks. Cheap to clone.

use std::sync::Arc;

use std::time::Instant;
use tokio_util::sync::CancellationToken;

use troupe_actors::store::MongoCommands;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::probes::Probes;
use crate::proxies::{ProxyHeader, ProxySettings, TrustedProxies};
use troupe_actors::system::{Handles, Stores};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    /// MongoDB and Redis (readiness pings them).
    pub stores: Stores,
    pub started: Instant,
    pub actors: Handles,
    pub metrics: Arc<Metrics>,
    /// Every command sent to MongoDB, by name.
    pub mongo_commands: MongoCommands,
    /// The readiness probe's shared result.
    pub probes: Probes,
    /// Cancelled when shutdown begins: endless responses (the event stream)
    /// end then, so the drain does not wait the whole grace period for them.
    pub stopping: CancellationToken,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// How long a handler waits for an actor's reply.
    pub fn call_timeout(&self) -> std::time::Duration {
        self.settings.actors.call_timeout
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ProxySettings for AppState {
    fn trusted_proxies(&self) -> &TrustedProxies {
        &self.settings.server.trusted_proxies
    }

    fn proxy_header(&self) -> ProxyHeader {
        self.settings.server.proxy_header
    }
}

//! [`AppState`]: what handlers reach — configuration, actor slots, stores for
//! health checks. Cheap to clone.

use std::sync::Arc;
use std::time::Instant;

use mongodb::Database;
use troupe_actors::store::RedisStore;
use troupe_actors::supervisor::TreeHealth;

use crate::config::Settings;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Database,
    pub redis: RedisStore,
    pub tree: TreeHealth,
    pub started: Instant,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

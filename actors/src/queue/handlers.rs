//! The job handler registry: what each job type does.
//!
//! Every queue delivers at least once (a lease can expire under a slow
//! handler, a process can die after the work but before the acknowledgement),
//! so every handler must be idempotent by job id. Capabilities register
//! their own job types (the users' are in [`crate::users::jobs`]); the queue
//! itself knows only `noop` (benchmarks and smoke checks).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use mongodb::bson::Document;

use crate::queue::store::Job;

/// What a handler returns: a result document, or an error to retry on.
pub type HandlerResult = Result<Document, String>;

type HandlerFn = dyn Fn(Job) -> BoxFuture<'static, HandlerResult> + Send + Sync;

/// Job type → handler.
#[derive(Clone, Default)]
pub struct JobHandlers {
    handlers: HashMap<String, Arc<HandlerFn>>,
}

impl JobHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `handler` for jobs of type `kind` (replacing any other).
    pub fn with<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers
            .insert(kind.into(), Arc::new(move |job| Box::pin(handler(job))));
        self
    }

    /// All of `other`'s handlers added to these (`other` wins a clash).
    pub fn merge(mut self, other: JobHandlers) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<HandlerFn>> {
        self.handlers.get(kind).cloned()
    }

    /// The queue's own job type: `noop`, which does nothing.
    pub fn builtin() -> Self {
        Self::new().with("noop", |_job| async { Ok(Document::new()) })
    }
}

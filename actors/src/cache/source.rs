//! Where the cache loads what it does not hold: a [`ProfileSource`], and
//! what a load answers.

use std::sync::Arc;

use futures::future::BoxFuture;
use mongodb::bson::oid::ObjectId;

/// A public profile as JSON, exactly as cached: a hit is answered without
/// parsing and re-serialising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileJson(pub Arc<str>);

/// Where the cache loads a profile it does not hold.
pub trait ProfileSource: Send + Sync + 'static {
    /// The public profile of `id` as JSON (`None`: no such profile, cached
    /// as a tombstone); an error is answered to every waiter and not cached.
    fn public_profile(
        &self,
        id: ObjectId,
    ) -> BoxFuture<'static, Result<Option<ProfileJson>, LoadError>>;
}

/// A [`ProfileSource`] failed. Shared by every waiter of one load, hence
/// the `Arc` around the cause; `source()` is the cause itself, so callers
/// can downcast it.
#[derive(Debug, Clone)]
pub struct LoadError(Arc<dyn std::error::Error + Send + Sync>);

impl LoadError {
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(cause))
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the profile source failed")
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What a load answers its waiters.
pub(super) type Lookup = Result<Option<ProfileJson>, LoadError>;

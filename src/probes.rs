//! The readiness probe's pings, shared: one probe of the stores answers
//! every readiness request for [`PROBE_TTL`], so a flood of probes sends at
//! most one ping to each store per second. Knows the stores, not the
//! application's state (which holds a [`Probes`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actors::store::StoreError;
use troupe_actors::system::Stores;

/// How long one probe of the stores answers every readiness request.
pub const PROBE_TTL: Duration = Duration::from_secs(1);

/// What the last probe of the stores found.
pub struct Pings {
    pub mongodb: Result<(), PingError>,
    pub redis: Result<(), PingError>,
}

/// Why a store did not answer a ping.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("timed out")]
    TimedOut,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The last probe, shared by every readiness request for [`PROBE_TTL`]. The
/// lock is held while probing, so concurrent callers wait for that probe's
/// result instead of starting their own: at most one probe in flight.
#[derive(Default)]
pub struct Probes {
    last: tokio::sync::Mutex<Option<(Instant, Arc<Pings>)>>,
}

impl Probes {
    /// The last probe if younger than [`PROBE_TTL`]; else a new one, each
    /// ping bounded by `timeout`.
    pub async fn current(&self, stores: &Stores, timeout: Duration) -> Arc<Pings> {
        let mut last = self.last.lock().await;
        if let Some((at, pings)) = last.as_ref() {
            if at.elapsed() < PROBE_TTL {
                return Arc::clone(pings);
            }
        }
        let pings = Arc::new(probe(stores, timeout).await);
        *last = Some((Instant::now(), Arc::clone(&pings)));
        pings
    }
}

/// Ping MongoDB and Redis, concurrently, each within its timeout. Failures
/// are logged here, once per probe, not once per request.
async fn probe(stores: &Stores, timeout: Duration) -> Pings {
    let (mongodb, redis) = tokio::join!(
        async {
            match tokio::time::timeout(timeout, stores.ping_mongo()).await {
                Ok(pinged) => pinged.map_err(PingError::from),
                Err(_) => Err(PingError::TimedOut),
            }
        },
        async { stores.ping_redis().await.map_err(PingError::from) },
    );
    for (name, result) in [("mongodb", &mongodb), ("redis", &redis)] {
        if let Err(error) = result {
            tracing::warn!(target: "system", dependency = name, %error, "readiness check failed");
        }
    }
    Pings { mongodb, redis }
}

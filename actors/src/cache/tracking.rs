//! The tracking task: a RESP3 connection of its own on which Redis pushes
//! an invalidation for every write to a profile key (`CLIENT TRACKING ON
//! BCAST PREFIX {prefix}profile:v3:`, so writes by any instance, and keys
//! expiring, are announced to every instance), applied to the
//! [`LocalTier`]. While the connection is not established — start-up, a
//! drop, a ping unanswered, Redis down, pushes arriving faster than they are
//! applied — the tier is flushed and bypassed; it is served again from empty
//! once tracking is back.
//!
//! The task belongs to the CacheActor (a `JoinSet` of its own in the actor's
//! state, aborted in `post_stop` and with the state): if it is aborted, its
//! [`Untrack`] guard stops the tier from being served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::local::LocalTier;
use super::stats::CacheStats;
use crate::store::{RedisStore, StoreError};

/// Pushes waiting to be applied; past that they are dropped, and the tier
/// is flushed and tracking re-made (never serve what a lost push changed).
const PUSH_BACKLOG: usize = 4096;

/// What one push means for the tier.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Push {
    /// These ids changed (keys under the prefix that are no profile id are
    /// left out: the tier never holds them).
    Keys(Vec<ObjectId>),
    /// Everything may have changed (`FLUSHALL`, `FLUSHDB`: a null push).
    All,
    /// The connection dropped.
    Lost,
    /// Not for the tier.
    Other,
}

/// Read a push from the tracking connection; `key_prefix` is what the
/// tracked keys start with (the ids follow it).
pub(super) fn parse(push: &PushInfo, key_prefix: &str) -> Push {
    match push.kind {
        PushKind::Invalidate => {}
        PushKind::Disconnection => return Push::Lost,
        _ => return Push::Other,
    }
    let keys = match push.data.first() {
        Some(Value::Array(keys)) | Some(Value::Set(keys)) => keys,
        Some(Value::Nil) | None => return Push::All,
        Some(_) => return Push::All, // unknown shape: be safe
    };
    let ids = keys
        .iter()
        .filter_map(|key| match key {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
            Value::SimpleString(text) => Some(text.as_str()),
            _ => None,
        })
        .filter_map(|key| key.strip_prefix(key_prefix))
        .filter_map(|id| ObjectId::parse_str(id).ok())
        .collect();
    Push::Keys(ids)
}

/// Why tracking stopped.
#[derive(Debug, thiserror::Error)]
enum TrackingError {
    #[error("the tracking connection failed")]
    Store(#[from] StoreError),
    #[error("CLIENT TRACKING failed")]
    Command(#[from] redis::RedisError),
    #[error("the tracking connection dropped")]
    Dropped,
    #[error("the tracking connection did not answer its ping in time")]
    Silent,
    #[error("invalidations arrived faster than they were applied")]
    Overflow,
}

/// Stops the tier from being served when the task ends or is aborted
/// (unless a newer task owns it by then).
struct Untrack(Arc<LocalTier>, u64);

impl Drop for Untrack {
    fn drop(&mut self) {
        self.0.untracked(self.1);
    }
}

/// Track for as long as the task lives, reconnecting every `check` after a
/// loss. Never returns (the owner aborts it).
pub(super) async fn track(
    local: Arc<LocalTier>,
    redis: RedisStore,
    stats: Arc<CacheStats>,
    key_prefix: String,
    check: Duration,
) {
    let session = local.claim();
    let _untrack = Untrack(Arc::clone(&local), session);
    let mut first = true;
    loop {
        let lost = track_once((&local, session), &redis, &stats, &key_prefix, check).await;
        let was_tracking = stats.tracking();
        local.untracked(session);
        match lost {
            Ok(()) => return, // a cluster: no tier to track
            // Logged once per outage: when tracking was up, or at start-up.
            Err(err) if was_tracking || first => {
                tracing::warn!(target: "cache", error = %err, "no tracking; the in-process tier is flushed and bypassed");
            }
            Err(err) => tracing::debug!(target: "cache", error = %err, "tracking still down"),
        }
        first = false;
        tokio::time::sleep(check).await;
    }
}

/// Connect, turn tracking on, then apply pushes until the connection is
/// lost (an error); `Ok` only where there is nothing to track (a cluster).
async fn track_once(
    (local, session): (&LocalTier, u64),
    redis: &RedisStore,
    stats: &CacheStats,
    key_prefix: &str,
    check: Duration,
) -> Result<(), TrackingError> {
    let (tx, mut pushes) = mpsc::channel(PUSH_BACKLOG);
    let overflow = Arc::new(AtomicBool::new(false));
    let sender = {
        let overflow = Arc::clone(&overflow);
        move |push: PushInfo| {
            tx.try_send(push)
                .inspect_err(|_| overflow.store(true, Ordering::SeqCst))
        }
    };
    let Some(mut conn) = redis.push_connection(sender).await? else {
        return Ok(());
    };
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(key_prefix)
        .query_async::<()>(&mut conn)
        .await?;
    local.tracked(session);
    tracing::info!(target: "cache", prefix = %key_prefix, "tracking on; the in-process tier is served");
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            push = pushes.recv() => apply(local, push, key_prefix)?,
            () = local.barrier.wanted() => sync(local, &mut conn, &mut pushes, key_prefix).await?,
            _ = tick.tick() => {
                sync(local, &mut conn, &mut pushes, key_prefix).await?;
                stats.local_size.store(local.len(), Ordering::Relaxed);
            }
        }
        if overflow.load(Ordering::SeqCst) {
            return Err(TrackingError::Overflow);
        }
    }
}

/// Apply one push (`None`: the connection's sender is gone).
fn apply(local: &LocalTier, push: Option<PushInfo>, key_prefix: &str) -> Result<(), TrackingError> {
    match push.map(|p| parse(&p, key_prefix)) {
        None | Some(Push::Lost) => return Err(TrackingError::Dropped),
        Some(Push::Keys(ids)) => ids.iter().for_each(|id| local.invalidate(id)),
        Some(Push::All) => local.flush(),
        Some(Push::Other) => {}
    }
    Ok(())
}

/// PING, then apply every push that arrived before the PONG (Redis answers
/// in order: all it sent before it processed the PING), then let the reads
/// waiting for this sync through. Also the liveness check: an unanswered
/// PING (the connection's response timeout) is a lost connection.
async fn sync(
    local: &LocalTier,
    conn: &mut MultiplexedConnection,
    pushes: &mut mpsc::Receiver<PushInfo>,
    key_prefix: &str,
) -> Result<(), TrackingError> {
    let id = local.barrier.start();
    let pong = redis::cmd("PING").query_async::<String>(conn).await;
    pong.map_err(|_| TrackingError::Silent)?;
    while let Ok(push) = pushes.try_recv() {
        apply(local, Some(push), key_prefix)?;
    }
    local.barrier.passed(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "t:profile:v3:";

    fn invalidate(data: Vec<Value>) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data,
        }
    }

    #[test]
    fn an_invalidation_names_the_ids_of_its_keys() {
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let keys = [format!("{PREFIX}{a}"), format!("{PREFIX}{b}")]
            .map(|k| Value::BulkString(k.into_bytes()))
            .to_vec();
        assert_eq!(
            parse(&invalidate(vec![Value::Array(keys)]), PREFIX),
            Push::Keys(vec![a, b])
        );
    }

    #[test]
    fn keys_that_are_no_profile_id_are_left_out() {
        let keys = ["t:profile:v3:nope", "other:key", "t:profile:v3:"]
            .map(|k| Value::BulkString(k.as_bytes().to_vec()))
            .to_vec();
        assert_eq!(
            parse(&invalidate(vec![Value::Array(keys)]), PREFIX),
            Push::Keys(vec![])
        );
    }

    #[test]
    fn a_null_invalidation_flushes_and_a_disconnection_is_a_loss() {
        assert_eq!(parse(&invalidate(vec![Value::Nil]), PREFIX), Push::All);
        assert_eq!(parse(&invalidate(vec![]), PREFIX), Push::All);
        let dropped = PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        };
        assert_eq!(parse(&dropped, PREFIX), Push::Lost);
        let message = PushInfo {
            kind: PushKind::Message,
            data: vec![],
        };
        assert_eq!(parse(&message, PREFIX), Push::Other);
    }
}

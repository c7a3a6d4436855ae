//! The subscription task: a RESP3 connection of its own, subscribed to the
//! fleet's invalidations and to this subscription's acknowledgements (see
//! [`super::fanout`]), that applies every invalidation to the
//! [`LocalTier`] and then acknowledges it to its writer, hands the
//! acknowledgements of this instance's writes to their rounds, and renews
//! the tier's [`Lease`](super::lease::Lease) every quarter of it.
//!
//! **Renewal order.** A renewal is a script on this same connection; Redis
//! writes every message it published before it ran the script ahead of the
//! reply, and the connection hands pushes over before replies, so once the
//! reply is read the task applies what is queued and only then grants the
//! lease, from when the renewal was sent.
//!
//! While the connection is not established — start-up, a drop, a renewal
//! unanswered, Redis down, messages arriving faster than they are applied —
//! the lease is revoked and the tier flushed; it is served again from empty
//! after the first renewal of the next connection.
//!
//! The task belongs to the CacheActor (a `JoinSet` of its own in the actor's
//! state, aborted in `post_stop` and with the state): if it is aborted, its
//! [`Revoke`] guard stops the tier from being served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::config::CacheConfig;
use super::fanout::{Channels, Message, RENEW};
use super::local::LocalTier;
use crate::store::{RedisStore, StoreError};

/// Messages waiting to be applied; past that they are dropped, and the tier
/// is flushed and the subscription re-made (never serve what a lost
/// invalidation changed; its writer waits out one lease).
const PUSH_BACKLOG: usize = 4096;

/// Messages applied (and acknowledged in one pipeline) at a time.
const BATCH: usize = 256;

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
enum SubscriptionError {
    #[error("the subscription connection failed")]
    Store(#[from] StoreError),
    #[error("a command on the subscription connection failed")]
    Command(#[from] redis::RedisError),
    #[error("the subscription connection dropped")]
    Dropped,
    #[error("invalidations arrived faster than they were applied")]
    Overflow,
}

/// Stops the tier from being served when the task ends or is aborted
/// (unless a newer task owns it by then).
struct Revoke(Arc<LocalTier>, u64);

impl Drop for Revoke {
    fn drop(&mut self) {
        self.0.unsubscribed(self.1);
    }
}

/// Subscribe for as long as the task lives, reconnecting a quarter lease
/// after a loss. Never returns but on a cluster (the owner aborts it).
pub(super) async fn subscribe(local: Arc<LocalTier>, redis: RedisStore, config: CacheConfig) {
    let session = local.claim();
    let _revoke = Revoke(Arc::clone(&local), session);
    let channels = Channels::new(&redis);
    let mut first = true;
    loop {
        let lost = session_once((&local, session), &redis, &channels, &config).await;
        let was_serving = local.stats().tracking();
        // Its own token only (a superseded task must not drop the next's).
        let token = local.owns(session).then(|| local.fanout.token()).flatten();
        local.unsubscribed(session);
        // The lease is revoked here: drop its registration too, so writes
        // stop waiting for the ended session at once rather than for two
        // leases (best effort: with Redis down, it ages out).
        if let Some(token) = token {
            let forget = redis::cmd("ZREM")
                .arg(&channels.leases)
                .arg(&*token)
                .clone();
            let _ = redis.run::<()>(&forget).await;
        }
        match lost {
            Ok(()) => return, // a cluster: no tier, no fan-out
            // Logged once per outage: when it was up, or at start-up.
            Err(err) if was_serving || first => {
                tracing::warn!(target: "cache", error = %err, "no subscription; the in-process tier is flushed and bypassed");
            }
            Err(err) => tracing::debug!(target: "cache", error = %err, "subscription still down"),
        }
        first = false;
        tokio::time::sleep(config.renew_every()).await;
    }
}

/// Connect, subscribe, then apply messages and renew the lease until the
/// connection is lost (an error); `Ok` only on a cluster.
async fn session_once(
    (local, session): (&LocalTier, u64),
    redis: &RedisStore,
    channels: &Channels,
    config: &CacheConfig,
) -> Result<(), SubscriptionError> {
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
    let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let own = [channels.invalidations.clone(), channels.acks(&token)];
    conn.subscribe(&own).await?;
    local.subscribed(session, Arc::clone(&token));
    tracing::info!(target: "cache", "subscribed to the fleet's invalidations");
    let mut task = Session {
        local,
        session,
        channels,
        token,
        conn,
    };
    let mut tick = tokio::time::interval(config.renew_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => task.apply(push, &mut pushes).await?,
            _ = tick.tick() => task.renew(config, &mut pushes).await?,
        }
        if overflow.load(Ordering::SeqCst) {
            return Err(SubscriptionError::Overflow);
        }
    }
}

/// One established subscription.
struct Session<'a> {
    local: &'a LocalTier,
    session: u64,
    channels: &'a Channels,
    token: Arc<str>,
    conn: MultiplexedConnection,
}

impl Session<'_> {
    /// Apply `first` and what else is queued (a batch), then acknowledge the
    /// invalidations among them in one pipeline.
    async fn apply(
        &mut self,
        first: Option<PushInfo>,
        pushes: &mut mpsc::Receiver<PushInfo>,
    ) -> Result<(), SubscriptionError> {
        let Some(first) = first else {
            return Err(SubscriptionError::Dropped);
        };
        let mut acks = redis::pipe();
        let (mut next, mut handled) = (Some(first), 0);
        while let Some(info) = next.take() {
            self.handle(&info, &mut acks)?;
            handled += 1;
            if handled < BATCH {
                next = pushes.try_recv().ok();
            }
        }
        if acks.cmd_iter().next().is_some() {
            acks.query_async::<()>(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Apply one push; queue its acknowledgement on `acks`.
    fn handle(&self, info: &PushInfo, acks: &mut redis::Pipeline) -> Result<(), SubscriptionError> {
        let (channel, payload) = match (info.kind.clone(), info.data.as_slice()) {
            (PushKind::Disconnection, _) => return Err(SubscriptionError::Dropped),
            (PushKind::Message, [channel, payload]) => (text(channel), text(payload)),
            _ => return Ok(()), // subscription confirmations and the like
        };
        let (Some(channel), Some(payload)) = (channel, payload) else {
            return Ok(());
        };
        match Message::parse(self.channels, channel, payload) {
            Message::Invalidate { writer, seq, id } => {
                match id {
                    Some(id) => self.local.invalidate(&id),
                    None => self.local.flush(),
                }
                let ack = format!("{seq} {}", self.token);
                acks.cmd("PUBLISH")
                    .arg(self.channels.acks(&writer))
                    .arg(ack)
                    .ignore();
            }
            Message::Ack { seq, from } => self.local.fanout.acks.acked(seq, &from),
            Message::Other => {}
        }
        Ok(())
    }

    /// Renew the lease: run [`RENEW`], apply what arrived before its reply,
    /// then grant the lease from when it was sent. An unanswered renewal
    /// (the connection's response timeout) is a lost connection.
    async fn renew(
        &mut self,
        config: &CacheConfig,
        pushes: &mut mpsc::Receiver<PushInfo>,
    ) -> Result<(), SubscriptionError> {
        let sent = Instant::now();
        let lease_ms = config.lease.as_millis() as u64;
        let serves = if self.local.enabled() { "1" } else { "0" };
        redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(&self.channels.leases)
            .arg(&*self.token)
            .arg(lease_ms)
            .arg(serves)
            .query_async::<()>(&mut self.conn)
            .await?;
        while let Ok(push) = pushes.try_recv() {
            self.apply(Some(push), pushes).await?;
        }
        self.local.renewed(self.session, sent);
        Ok(())
    }
}

/// A push's bulk string as text.
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

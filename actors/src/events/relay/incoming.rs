//! The reader: the other instances' events, from the fleet's stream to
//! this instance's relay actor (which hands them to the bus).
//!
//! It reads on a connection of its own (`XREAD BLOCK` would hold up every
//! other command on the shared one), from where the stream ended when it
//! first connected — no history — and from then on from the last entry it
//! read, also across reconnections: a short outage loses nothing the stream
//! still holds. Every failure (connect, read, a silent connection) ends the
//! session; the next one starts after a backoff.

use std::convert::Infallible;
use std::time::Duration;

use ractor::ActorRef;
use redis::aio::ConnectionLike;
use redis::streams::{StreamRangeReply, StreamReadReply};

use super::entry::{self, Read};
use super::link::{Backoff, Link, RelayError};
use super::msg::RelayMsg;

/// How long one `XREAD` waits for new entries.
const BLOCK: Duration = Duration::from_secs(2);
/// Most entries one `XREAD` returns.
const COUNT: usize = 256;
/// The id before every entry: where an empty stream is read from.
const BEFORE_ALL: &str = "0-0";

/// Read the stream until aborted, handing foreign events to `relay`.
pub async fn read(link: Link, relay: ActorRef<RelayMsg>) {
    let mut cursor: Option<String> = None;
    let mut backoff = link.backoff();
    loop {
        let Err(err) = session(&link, &mut cursor, &mut backoff, &relay).await;
        if link.status.reader_failed() {
            tracing::warn!(target: "system", error = %err,
                "events relay: cannot read from Redis; this instance sees only its own events");
        }
        tokio::time::sleep(backoff.wait()).await;
    }
}

/// One connection's reading, until it fails.
async fn session(
    link: &Link,
    cursor: &mut Option<String>,
    backoff: &mut Backoff,
    relay: &ActorRef<RelayMsg>,
) -> Result<Infallible, RelayError> {
    let mut conn = link.redis.dedicated().await?;
    if cursor.is_none() {
        *cursor = Some(tail(link, &mut conn).await?);
    }
    loop {
        if link.status.reader_up() {
            tracing::info!(target: "system", "events relay: reading the fleet's events");
        }
        backoff.reset();
        let from = cursor.clone().unwrap_or_else(|| BEFORE_ALL.into());
        let reply = next_entries(link, &mut conn, &from).await?;
        let mut foreign = Vec::new();
        for entry in reply.keys.into_iter().flat_map(|key| key.ids) {
            match entry::read(&entry, &link.instance) {
                Ok(Read::Own) => {}
                Ok(Read::Foreign(published)) => foreign.push(published),
                Err(err) => {
                    link.status.undecodable();
                    tracing::debug!(target: "system", error = %err, "events relay: entry skipped");
                }
            }
            *cursor = Some(entry.id);
        }
        let n = foreign.len();
        if n > 0 && relay.cast(RelayMsg::Received(foreign)).is_err() {
            link.status.lost(n);
        }
    }
}

/// The id of the stream's last entry (or [`BEFORE_ALL`] if it has none):
/// reading from there delivers every entry added after this call.
async fn tail(link: &Link, conn: &mut impl ConnectionLike) -> Result<String, RelayError> {
    let mut cmd = redis::cmd("XREVRANGE");
    cmd.arg(&link.key).arg("+").arg("-").arg("COUNT").arg(1);
    let last: StreamRangeReply = bounded(link.redis.timeout(), cmd.query_async(conn)).await?;
    Ok(last
        .ids
        .into_iter()
        .next()
        .map_or_else(|| BEFORE_ALL.into(), |entry| entry.id))
}

/// Entries after `from`, waiting up to [`BLOCK`] for some. The connection
/// has no response timeout of its own: a reply later than the block time
/// plus the store's timeout means the connection is dead.
async fn next_entries(
    link: &Link,
    conn: &mut impl ConnectionLike,
    from: &str,
) -> Result<StreamReadReply, RelayError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(&link.key)
        .arg(from);
    let reply: Option<StreamReadReply> =
        bounded(BLOCK + link.redis.timeout() * 2, cmd.query_async(conn)).await?;
    Ok(reply.unwrap_or_default())
}

/// `query` within `limit`.
async fn bounded<T>(
    limit: Duration,
    query: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RelayError> {
    tokio::time::timeout(limit, query)
        .await
        .map_err(|_| RelayError::Timeout(limit))?
        .map_err(RelayError::from)
}

//! The writer: this instance's events, from the relay's bounded
//! subscription to the fleet's stream, in batches of one round trip each.
//!
//! Publishers never wait for it: the bus hands it events without waiting,
//! and while it is behind (Redis slow or down) its buffer fills and the bus
//! drops and counts the overflow. A failed write loses its batch (counted);
//! the writer then pings Redis, with backoff, until it answers.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::events::event::Published;

use super::entry;
use super::link::{Link, RelayError};

/// Most events written in one pipeline.
const BATCH: usize = 256;

/// Write every event `events` yields until the subscription ends.
pub async fn write(mut events: mpsc::Receiver<Arc<Published>>, link: Link) {
    let mut batch = Vec::with_capacity(BATCH);
    while events.recv_many(&mut batch, BATCH).await > 0 {
        match append(&link, &batch).await {
            Ok(()) => link.status.sent(batch.len()),
            Err(err) => {
                if link.status.write_failed(batch.len()) {
                    tracing::warn!(target: "system", error = %err, lost = batch.len(),
                        "events relay: cannot write to Redis; the fleet does not see this instance's events");
                }
                until_redis_answers(&link).await;
            }
        }
        batch.clear();
    }
}

/// `XADD` each event of `batch` to the stream, trimmed to about
/// `events.fleet_stream_len` entries, in one pipeline.
async fn append(link: &Link, batch: &[Arc<Published>]) -> Result<(), RelayError> {
    let mut pipe = redis::pipe();
    for published in batch {
        let xadd = pipe
            .cmd("XADD")
            .arg(&link.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(link.config.fleet_stream_len)
            .arg("*");
        for (field, value) in entry::fields(published)? {
            xadd.arg(field).arg(value);
        }
        xadd.ignore();
    }
    link.redis.run_pipe::<()>(&pipe).await?;
    Ok(())
}

/// Ping Redis, waiting longer after each failure, until it answers.
async fn until_redis_answers(link: &Link) {
    let mut backoff = link.backoff();
    loop {
        tokio::time::sleep(backoff.wait()).await;
        match link.redis.ping().await {
            Ok(()) => {
                link.status.writer_up();
                tracing::info!(target: "system", "events relay: Redis answers the writer again");
                return;
            }
            Err(_) => link.status.ping_failed(),
        }
    }
}

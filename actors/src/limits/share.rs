//! Sharing counts with the fleet: every `limits.share_every`, each limit
//! sends the counts of the addresses it let through since the last round,
//! one `INCRBY` per address on a key of the address's window, and learns
//! the fleet's totals from the replies. [`Sharing`] owns the task.
//!
//! **Keys:** `limit:{<name>:<window>}:<address>`, expiring with the window.
//! The hash tag is the limit and window, so on a Redis Cluster one round's
//! keys share a slot (one pipeline), and the next window's go elsewhere.
//!
//! **Failure:** a round Redis refuses is counted
//! (`troupe_rate_limit_unavailable_total{limit}`, logged once per outage)
//! and its counts go back on the list for the next round; meanwhile every
//! instance decides alone, each within its share.
//!
//! **Shutdown:** [`Sharing::shutdown`] stops the loop between rounds, runs
//! a last round (bounded by the Redis timeout) so the counts let through
//! reach the fleet, and waits for the task.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::address::{AddressLimit, Shared};
use super::{client_bucket, Limits};
use crate::store::StoreError;

/// Addresses per pipeline: a round under a flood is sent in chunks, so no
/// single command batch outlasts the Redis timeout.
const PER_PIPELINE: usize = 1_000;

/// One address's count in a round.
struct Sent {
    address: std::net::IpAddr,
    entry: Shared,
    window: u64,
    n: u64,
}

impl AddressLimit {
    /// The Redis key of `address`'s count in `window`.
    fn fleet_key(&self, window: u64, address: std::net::IpAddr) -> String {
        let name = self.inner.report.name();
        let address = client_bucket(address);
        self.inner
            .redis
            .key(&format!("limit:{{{name}:{window}}}:{address}"))
    }

    /// Take the counts not yet sent (each moves to `sending`).
    fn take_unsent(&self) -> Vec<Sent> {
        let listed = std::mem::take(&mut *self.inner.unsent.lock().expect("unsent lock"));
        listed
            .into_iter()
            .filter_map(|(address, entry)| {
                let mut e = entry.lock().expect("limit entry lock");
                e.queued = false;
                let n = std::mem::take(&mut e.unsent);
                e.sending += n;
                let window = e.window;
                drop(e);
                (n > 0).then_some(Sent {
                    address,
                    entry,
                    window,
                    n,
                })
            })
            .collect()
    }

    /// One sharing round: send what was let through since the last one,
    /// learn the fleet's totals. Returns the addresses sent.
    pub(super) async fn share_round(&self) -> usize {
        self.inner.clock.resync();
        let sent = self.take_unsent();
        let count = sent.len();
        // One pipeline per window (a round straddles at most two) and chunk.
        let mut by_window: BTreeMap<u64, Vec<Sent>> = BTreeMap::new();
        for s in sent {
            by_window.entry(s.window).or_default().push(s);
        }
        for (_, mut sent) in by_window {
            while !sent.is_empty() {
                let rest = sent.split_off(sent.len().min(PER_PIPELINE));
                self.send(sent).await;
                sent = rest;
            }
        }
        count
    }

    /// Send one chunk (one window) and apply the fleet's totals.
    async fn send(&self, sent: Vec<Sent>) {
        let window_ms = self.inner.limit.window.as_millis() as u64;
        let mut pipe = redis::pipe();
        for s in &sent {
            let key = self.fleet_key(s.window, s.address);
            pipe.cmd("INCRBY").arg(&key).arg(s.n);
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms)
                .arg("NX")
                .ignore();
        }
        match self.inner.redis.run_pipe::<Vec<u64>>(&pipe).await {
            Ok(totals) => {
                self.inner.report.redis_ok();
                // (One total per INCRBY; a missing one only leaves the
                // fleet's count as it was.)
                let totals = totals.into_iter().map(Some).chain(std::iter::repeat(None));
                for (s, total) in sent.iter().zip(totals) {
                    let mut e = s.entry.lock().expect("limit entry lock");
                    if e.window == s.window {
                        e.sending -= s.n;
                        e.fleet = e.fleet.max(total.unwrap_or(0));
                    }
                }
            }
            Err(err) => self.put_back(sent, &err),
        }
    }

    /// Redis failed: the counts wait for the next round (unless their window
    /// ended meanwhile).
    fn put_back(&self, sent: Vec<Sent>, err: &StoreError) {
        self.inner.report.unavailable(err);
        for s in sent {
            let mut e = s.entry.lock().expect("limit entry lock");
            if e.window != s.window {
                continue;
            }
            e.sending -= s.n;
            e.unsent += s.n;
            let queue = !std::mem::replace(&mut e.queued, true);
            drop(e);
            if queue {
                self.queue(s.address, s.entry);
            }
        }
    }
}

/// The sharing task of every limit: [`Sharing::shutdown`] runs a last
/// round and waits for it; dropping it instead stops the task at its next
/// await, without the last round.
pub struct Sharing {
    stop: CancellationToken,
    task: JoinHandle<()>,
    _stop_on_drop: DropGuard,
}

impl Sharing {
    /// A round of every limit every `every`, in a task of its own.
    pub fn start(limits: Limits, every: Duration) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds(limits, every, stop.clone()));
        let _stop_on_drop = stop.clone().drop_guard();
        Self {
            stop,
            task,
            _stop_on_drop,
        }
    }

    /// Stop after a last round; waits for the task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::warn!(target: "system", error = %err, "the limits' sharing task failed");
        }
    }
}

async fn rounds(limits: Limits, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => limits.share_round().await,
        }
    }
    limits.share_round().await;
}

impl Limits {
    /// One sharing round of every limit, at once.
    pub async fn share_round(&self) {
        tokio::join!(
            self.signups.share_round(),
            self.profile_lookups.share_round(),
            self.email_tokens.share_round()
        );
    }
}

#[cfg(test)]
mod tests {
    //! Two instances' limits on one Redis (`REDIS_URL`, as the API tests
    //! use), on a made-up clock, each round run by hand.

    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::limits::address::tests::{address_limit, TestClock};
    use crate::store::RedisStore;

    fn redis() -> RedisStore {
        let url = std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
        let prefix = format!("troupe-limits:{}:", uuid::Uuid::new_v4().simple());
        RedisStore::new(&url, &prefix, Duration::from_secs(2)).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));

    fn allowed(limit: &AddressLimit, n: usize) -> usize {
        (0..n).filter(|_| limit.check(CLIENT).is_none()).count()
    }

    /// Both instances believe they are alone (a stale registry count): the
    /// shares overcommit, and sharing keeps the address near its budget.
    #[tokio::test]
    async fn the_fleets_totals_refuse_an_address_on_every_instance_that_saw_it() {
        let (redis, clock) = (redis(), Arc::new(TestClock::default()));
        let a = address_limit(redis.clone(), 6, (100, 1), Arc::clone(&clock));
        let b = address_limit(redis.clone(), 6, (100, 1), Arc::clone(&clock));
        assert_eq!(allowed(&a, 5), 5);
        assert_eq!(a.share_round().await, 1);
        // b learns the fleet's 5 with its first count, then refuses.
        assert_eq!(allowed(&b, 1), 1);
        assert_eq!(b.share_round().await, 1);
        assert_eq!(allowed(&b, 10), 0);
        assert_eq!(b.check(CLIENT), Some(Duration::from_secs(60)));
        // a has not heard of b's request: one more, its round, then none.
        assert_eq!(allowed(&a, 10), 1);
        a.share_round().await;
        assert_eq!(allowed(&a, 10), 0);
        // In all 7: per_address + 1, as the documented bound allows (what the
        // other instance let through before it learnt the total).
        let key = a.fleet_key(1000, CLIENT);
        let total: u64 = redis.run(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(total, 7);
        let ttl: i64 = redis.run(redis::cmd("PTTL").arg(&key)).await.unwrap();
        assert!((1..=60_000).contains(&ttl), "{ttl}");
        // The next window starts over everywhere.
        clock.advance(Duration::from_secs(60));
        assert!(a.check(CLIENT).is_none() && b.check(CLIENT).is_none());
    }

    #[tokio::test]
    async fn a_round_sends_each_address_once_with_its_count() {
        let (redis, clock) = (redis(), Arc::new(TestClock::default()));
        let a = address_limit(redis.clone(), 100, (100, 1), clock);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(allowed(&a, 3), 3);
        assert!(a.check(other).is_none());
        assert_eq!(a.share_round().await, 2);
        // Nothing new: nothing sent.
        assert_eq!(a.share_round().await, 0);
        let count = |ip| {
            let key = a.fleet_key(1000, ip);
            let redis = redis.clone();
            async move { redis.run::<u64>(redis::cmd("GET").arg(key)).await.unwrap() }
        };
        assert_eq!((count(CLIENT).await, count(other).await), (3, 1));
    }

    #[tokio::test]
    async fn a_round_redis_refuses_is_sent_again_with_the_next() {
        let clock = Arc::new(TestClock::default());
        let down =
            RedisStore::new("redis://127.0.0.1:1", "x:", Duration::from_millis(100)).unwrap();
        let a = address_limit(down, 4, (100, 1), clock);
        assert_eq!(allowed(&a, 3), 3);
        a.share_round().await;
        let metrics = &a.inner.report;
        assert!(metrics.degraded());
        // Still decided here, with the counts kept: one more, then refused.
        assert_eq!(allowed(&a, 5), 1);
        assert_eq!(a.inner.unsent.lock().unwrap().len(), 1);
        assert_eq!(a.take_unsent().iter().map(|s| s.n).sum::<u64>(), 4);
    }

    #[tokio::test]
    async fn shutdown_runs_a_last_round_and_waits_for_the_task() {
        let redis = redis();
        let config = crate::limits::LimitsConfig {
            share_every: Duration::from_secs(3600),
            max_addresses: 10,
            signups: crate::limits::WindowLimit {
                per_address: 5,
                window: Duration::from_secs(3600),
            },
            profile_lookups: crate::limits::WindowLimit {
                per_address: 5,
                window: Duration::from_secs(3600),
            },
            email_tokens: crate::limits::WindowLimit {
                per_address: 5,
                window: Duration::from_secs(3600),
            },
        };
        let metrics = crate::limits::LimitMetrics::default();
        let fleet = prometheus_client::metrics::gauge::Gauge::default();
        let clock: Arc<dyn crate::limits::Clock> = Arc::new(TestClock::default());
        let limits = Limits::new(&redis, &config, (&metrics, &fleet), clock);
        let sharing = Sharing::start(limits.clone(), config.share_every);
        assert!(limits.signups.check(CLIENT).is_none());
        sharing.shutdown().await;
        let window = 60_000 / 3600;
        let key = limits.signups.fleet_key(window, CLIENT);
        let total: u64 = redis.run(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(total, 1);
    }
}

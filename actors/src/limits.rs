//! Per-client rate limits: fixed windows in Redis, shared by every instance.
//!
//! A [`FixedWindow`] allows `per_address` requests per client address in each
//! `window` (`INCR` a counter whose first use starts its expiry); past that
//! the request is refused with the time left in the window (429 +
//! Retry-After). Sign-ups and public profile lookups are limited this way;
//! logins have their own throttle ([`crate::users::throttle`]).
//!
//! - **Client addresses** are counted per [`client_bucket`]: an IPv4 address,
//!   or the /64 of an IPv6 address, since one host usually owns a whole /64
//!   and could otherwise rotate through 2^64 addresses.
//! - **Fail-open:** when Redis is down or slow the request is let through, a
//!   warning is logged on the transition (not per request) and
//!   `troupe_rate_limit_unavailable_total{limit}` counts the checks skipped:
//!   availability is preferred over limiting during a Redis outage.
//! - **Cost:** one pipelined round trip per check; callers on a hot path run
//!   the check alongside their own read so the two share a round trip.
//!   **Batched** (`batch` > 1, profile lookups): an instance counts an
//!   address's requests locally and sends them every `batch`-th as one
//!   `INCRBY`, judging by the fleet's count it learnt then plus its own
//!   since: the other requests cost no round trip, and the limit holds
//!   fleet-wide up to `instances × (batch − 1)` requests per window. The counter's key has no hash tag:
//!   it is the only key of its pipeline (on a Redis Cluster a pipeline's keys
//!   must share a slot, so the caller's keys go in a pipeline of their own).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;

use crate::store::{RedisStore, StoreError};
use crate::validate::{ConfigErrors, Validate};

/// One `[limits.*]` table: `per_address` requests per client address per `window`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WindowLimit {
    pub per_address: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Requests counted locally per address before they are sent to Redis
    /// in one `INCRBY` (1: every request, at once).
    #[serde(default = "every_request")]
    pub batch: u64,
}

fn every_request() -> u64 {
    1
}

/// Addresses whose batched counts an instance keeps (the least recently
/// seen go first; their unsent counts, under a batch each, are lost).
const MAX_BATCHED_ADDRESSES: u64 = 100_000;

/// An address's requests counted here in its current window.
#[derive(Default)]
struct Batch {
    /// Not yet sent to Redis.
    pending: u64,
    /// Sent, not yet answered.
    sending: u64,
    /// The fleet's count, as Redis answered the last `INCRBY` from here.
    fleet: u64,
    /// When the window ends (as Redis said, or from the first request).
    until: Option<Instant>,
}

type Batches = moka::sync::Cache<String, Arc<Mutex<Batch>>>;

/// `[limits]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    /// `POST /users/signup` (each sign-up hashes a password and mails an address).
    pub signups: WindowLimit,
    /// `GET /users/{id}` (public, unauthenticated, ids are guessable).
    pub profile_lookups: WindowLimit,
}

/// The key a client address is counted under: the IPv4 address itself (an
/// IPv4-mapped IPv6 address counts as its IPv4 address), or the /64 network
/// of an IPv6 address.
pub fn client_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The wait a refused client is told, from a Redis `PTTL` reply (ms; -1 no
/// expiry, -2 no key): at least one second, so Retry-After is never 0.
pub fn wait_from_pttl(ttl_ms: i64) -> Duration {
    Duration::from_millis(ttl_ms.max(1000) as u64)
}

/// `Some(wait)` when `count` (this request included) is past `limit`.
pub fn over_limit(count: u64, limit: u64, ttl_ms: i64) -> Option<Duration> {
    (count > limit).then(|| wait_from_pttl(ttl_ms))
}

/// Label of the limit metrics: one of a closed set of names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

/// Counters of every limit, registered in `/metrics` by the HTTP layer.
#[derive(Clone, Default)]
pub struct LimitMetrics {
    /// Requests refused (429), by limit.
    pub refused: Family<LimitLabel, Counter>,
    /// Checks skipped because Redis failed (the request went through), by limit.
    pub unavailable: Family<LimitLabel, Counter>,
}

/// What a limit reports: refusals, and Redis outages (logged once per outage).
#[derive(Clone)]
pub struct LimitReporter {
    label: LimitLabel,
    metrics: LimitMetrics,
    degraded: Arc<AtomicBool>,
}

impl LimitReporter {
    pub fn new(limit: &'static str, metrics: &LimitMetrics) -> Self {
        Self {
            label: LimitLabel { limit },
            metrics: metrics.clone(),
            degraded: Arc::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.label.limit
    }

    pub fn refused(&self) {
        self.metrics.refused.get_or_create(&self.label).inc();
    }

    /// Redis answered: ends an outage.
    pub fn redis_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "auth", limit = self.name(), "redis answers again; limit enforced");
        }
    }

    /// Redis failed: this check is skipped (fail-open).
    pub fn unavailable(&self, err: &StoreError) {
        self.metrics.unavailable.get_or_create(&self.label).inc();
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "auth", limit = self.name(), error = %err,
                "limit unavailable (redis); failing open until redis answers");
        }
    }
}

/// A fixed-window limit per client address. Cheap to clone.
#[derive(Clone)]
pub struct FixedWindow {
    redis: RedisStore,
    limit: WindowLimit,
    report: LimitReporter,
    /// Per-address local counts, when `limit.batch` > 1.
    batches: Option<Batches>,
}

impl FixedWindow {
    /// `name` labels its keys and metrics (`signup`, `profile_lookup`).
    pub fn new(
        redis: RedisStore,
        name: &'static str,
        limit: WindowLimit,
        metrics: &LimitMetrics,
    ) -> Self {
        let batches = (limit.batch > 1).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(MAX_BATCHED_ADDRESSES)
                .time_to_idle(limit.window)
                .build()
        });
        Self {
            redis,
            limit,
            report: LimitReporter::new(name, metrics),
            batches,
        }
    }

    fn key(&self, client: IpAddr) -> String {
        self.redis.key(&format!(
            "limit:{}:{}",
            self.report.name(),
            client_bucket(client)
        ))
    }

    /// Append this request's count to `pipe`: two replies, the count (this
    /// request included) and the window's remaining ms, for [`Self::verdict`].
    pub fn count_in(&self, pipe: &mut redis::Pipeline, client: IpAddr) {
        let key = self.key(client);
        pipe.cmd("INCR")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(self.limit.window.as_millis() as u64)
            .arg("NX")
            .ignore()
            .cmd("PTTL")
            .arg(&key);
    }

    /// `Some(wait)` if the request counted by [`Self::count_in`] is refused.
    pub fn verdict(&self, count: u64, ttl_ms: i64) -> Option<Duration> {
        self.report.redis_ok();
        self.judge(count, ttl_ms)
    }

    /// Redis failed for a pipeline holding [`Self::count_in`]'s commands.
    pub fn unavailable(&self, err: &StoreError) {
        self.report.unavailable(err);
    }

    /// Count one request of `client`; `Some(wait)` if it must be refused.
    /// Batched: in Redis only every `batch`-th request (see the module's doc).
    pub async fn hit(&self, client: IpAddr) -> Option<Duration> {
        if let Some(batches) = &self.batches {
            return self.hit_batched(batches, client).await;
        }
        let mut pipe = redis::pipe();
        self.count_in(&mut pipe, client);
        match self.redis.run_pipe::<(u64, i64)>(&pipe).await {
            Ok((count, ttl_ms)) => self.verdict(count, ttl_ms),
            Err(err) => {
                self.unavailable(&err);
                None
            }
        }
    }
}

impl FixedWindow {
    async fn hit_batched(&self, batches: &Batches, client: IpAddr) -> Option<Duration> {
        let key = self.key(client);
        let batch = batches.get_with(key.clone(), Default::default);
        let now = Instant::now();
        let (flush, mut count, mut until) = {
            let mut b = batch.lock().expect("batch lock");
            if b.until.is_none_or(|until| until <= now) {
                *b = Batch {
                    until: Some(now + self.limit.window),
                    ..Batch::default()
                };
            }
            b.pending += 1;
            let count = b.fleet + b.sending + b.pending;
            let flush = (b.pending >= self.limit.batch).then(|| std::mem::take(&mut b.pending));
            b.sending += flush.unwrap_or(0);
            (flush, count, b.until)
        };
        if let Some(sent) = flush {
            let counted = self.count_by(&key, sent).await;
            let mut b = batch.lock().expect("batch lock");
            b.sending -= sent; // counted in `fleet` now, or lost (fail-open)
            if let Some((fleet, ttl_ms)) = counted {
                b.fleet = b.fleet.max(fleet);
                b.until = Some(now + Duration::from_millis(ttl_ms.max(0) as u64));
                (count, until) = (b.fleet + b.sending + b.pending, b.until);
            }
        }
        let left = until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        self.judge(count, left.as_millis() as i64)
    }

    /// Add `n` requests to the address's count in Redis: the fleet's count
    /// and the window's ms left (`None`: Redis failed; reported).
    async fn count_by(&self, key: &str, n: u64) -> Option<(u64, i64)> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY")
            .arg(key)
            .arg(n)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(self.limit.window.as_millis() as u64)
            .arg("NX")
            .ignore()
            .cmd("PTTL")
            .arg(key);
        match self.redis.run_pipe::<(u64, i64)>(&pipe).await {
            Ok(counted) => {
                self.report.redis_ok();
                Some(counted)
            }
            Err(err) => {
                self.unavailable(&err);
                None
            }
        }
    }

    /// `Some(wait)` (and a refusal counted) if `count` is past the limit.
    fn judge(&self, count: u64, ttl_ms: i64) -> Option<Duration> {
        let refused = over_limit(count, self.limit.per_address, ttl_ms);
        if refused.is_some() {
            self.report.refused();
        }
        refused
    }
}

/// The limits the HTTP layer applies itself. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    pub signups: FixedWindow,
    pub profile_lookups: FixedWindow,
}

impl Limits {
    pub fn new(redis: &RedisStore, config: &LimitsConfig, metrics: &LimitMetrics) -> Self {
        Self {
            signups: FixedWindow::new(redis.clone(), "signup", config.signups, metrics),
            profile_lookups: FixedWindow::new(
                redis.clone(),
                "profile_lookup",
                config.profile_lookups,
                metrics,
            ),
        }
    }
}

/// Every per-address window limit allows something in a positive window;
/// a lookup batch fits in its limit, sign-ups are counted one by one.
impl Validate for LimitsConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        for (name, limit) in [
            ("signups", self.signups),
            ("profile_lookups", self.profile_lookups),
        ] {
            errors.ensure(
                limit.per_address >= 1,
                &format!("{name}.per_address"),
                "must be at least 1",
            );
            errors.ensure(
                !limit.window.is_zero(),
                &format!("{name}.window"),
                "must be positive",
            );
        }
        let lookups = self.profile_lookups;
        errors.ensure(
            (1..=lookups.per_address).contains(&lookups.batch),
            "profile_lookups.batch",
            "must be from 1 to limits.profile_lookups.per_address",
        );
        errors.ensure(
            self.signups.batch == 1,
            "signups.batch",
            "sign-ups are counted one by one (1)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_addresses_are_counted_one_by_one() {
        assert_eq!(client_bucket(ip("203.0.113.7")), "203.0.113.7");
        assert_ne!(
            client_bucket(ip("203.0.113.7")),
            client_bucket(ip("203.0.113.8"))
        );
    }

    #[test]
    fn ipv6_addresses_are_counted_per_64() {
        let a = client_bucket(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, client_bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, client_bucket(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() {
        assert_eq!(client_bucket(ip("::ffff:203.0.113.7")), "203.0.113.7");
    }

    #[test]
    fn the_limit_refuses_past_the_allowance_with_the_window_left() {
        assert_eq!(over_limit(3, 3, 50_000), None);
        assert_eq!(over_limit(4, 3, 50_000), Some(Duration::from_secs(50)));
        // No expiry (-1) or no key (-2): still a positive wait.
        assert_eq!(over_limit(4, 3, -1), Some(Duration::from_secs(1)));
        assert_eq!(wait_from_pttl(-2), Duration::from_secs(1));
        assert_eq!(wait_from_pttl(1_500), Duration::from_millis(1_500));
    }

    fn config() -> LimitsConfig {
        let limit = |per_address, batch| WindowLimit {
            per_address,
            window: Duration::from_secs(60),
            batch,
        };
        LimitsConfig {
            signups: limit(5, 1),
            profile_lookups: limit(100, 10),
        }
    }

    #[test]
    fn window_limits_allow_something_in_a_positive_window() {
        use crate::validate::refused_after;
        assert!(refused_after(config(), |_| {}).is_empty());
        assert_eq!(
            refused_after(config(), |l| l.signups.per_address = 0),
            ["signups.per_address"]
        );
        assert_eq!(
            refused_after(config(), |l| l.signups.window = Duration::ZERO),
            ["signups.window"]
        );
        // (A zero limit leaves no room for a batch either.)
        assert_eq!(
            refused_after(config(), |l| l.profile_lookups.per_address = 0),
            ["profile_lookups.per_address", "profile_lookups.batch"]
        );
        assert_eq!(
            refused_after(config(), |l| l.profile_lookups.window = Duration::ZERO),
            ["profile_lookups.window"]
        );
        assert!(refused_after(config(), |l| {
            l.profile_lookups.per_address = 1;
            l.profile_lookups.batch = 1;
        })
        .is_empty());
    }

    #[test]
    fn lookup_batches_fit_in_the_limit() {
        use crate::validate::refused_after;
        assert_eq!(
            refused_after(config(), |l| l.profile_lookups.batch = 0),
            ["profile_lookups.batch"]
        );
        assert_eq!(
            refused_after(config(), |l| {
                l.profile_lookups.per_address = 10;
                l.profile_lookups.batch = 11;
            }),
            ["profile_lookups.batch"]
        );
        assert!(refused_after(config(), |l| {
            l.profile_lookups.per_address = 10;
            l.profile_lookups.batch = 10;
        })
        .is_empty());
        assert_eq!(
            refused_after(config(), |l| l.signups.batch = 2),
            ["signups.batch"]
        );
    }
}

//! Per-client rate limits, decided in the request's task; the fleet's
//! budget kept approximately by sharing counts in the background.
//!
//! An [`AddressLimit`] allows `per_address` requests per client address in
//! each `window` across the fleet; past that the request is refused with the
//! time to wait (429 + Retry-After). Sign-ups and public profile lookups are
//! limited this way; logins have their own throttle
//! ([`crate::users::throttle`]).
//!
//! - **In-process** ([`address`]): each instance lets an address through up
//!   to its *share*, `⌈per_address / k⌉` per window for `k` live instances
//!   (the fleet registry's count, which the heartbeat refreshes: no read per
//!   request), paced by a GCRA bucket ([`gcra`]) so no burst of two shares
//!   straddles a window's edge. No I/O, one short per-address lock.
//! - **Fleet-wide** ([`share`]): every `share_every` (p) each instance sends
//!   the counts it let through to Redis in one pipeline (`INCRBY` per address
//!   on a key of the window, windows cut from the wall clock so every
//!   instance cuts the same ones) and learns the fleet's totals: an address
//!   whose total reached `per_address` is refused there until its window ends.
//! - **Worst case** per address and window, with `k` instances each holding
//!   the count `kᵢ`: each lets through at most its share `⌈per_address / kᵢ⌉`,
//!   so with the registry's count right, at most `k·⌈per_address / k⌉ <
//!   per_address + k`. While a count is stale (for up to
//!   `fleet.heartbeat_interval` after an instance joins or leaves — the others
//!   still divide by the old count —, `fleet.heartbeat_ttl` after one dies —
//!   its share is then lost, not overspent —, or from the start of a Redis
//!   outage on: the last count read, 1 if none) the shares may add up to more;
//!   then the sharing cuts an address off everywhere within about two periods
//!   (2p plus a round trip) of its total reaching `per_address`, so it gets at
//!   most `per_address − 1` plus what the instances let through in those 2p,
//!   and never more than the sum of the shares.
//! - **Fairness:** an address spending its budget touches only its own entry
//!   and key; another address's decision is unaffected. An address whose
//!   requests all reach one instance (a load balancer hashing by address)
//!   gets that instance's share only.
//! - **Client addresses** are counted per [`client_bucket`]: an IPv4 address,
//!   or the /64 of an IPv6 address, since one host usually owns a whole /64
//!   and could otherwise rotate through 2^64 addresses.
//! - **Bounded memory:** at most `max_addresses` entries per limit (an
//!   address seen once is evicted before one that keeps coming, so a flood of
//!   fresh addresses pushes out its own kind first; an idle one stays until
//!   evicted, harmlessly: its counts start over with the next window) and as
//!   many on the next round's list. An evicted address starts again with a
//!   full bucket here and no fleet total: it may get one more share from this
//!   instance until its next round relearns the total from Redis (its counts
//!   there are kept).
//! - **Fail-open:** with Redis down, each instance still decides alone (an
//!   address gets at most the sum of the shares); failed rounds are counted in
//!   `troupe_rate_limit_unavailable_total{limit}`, logged once per outage, and
//!   their counts sent with the next round.

mod address;
mod clock;
mod gcra;
mod share;

pub use address::{share as instance_share, AddressLimit};
pub use clock::{Clock, SystemClock};
pub use share::Sharing;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;

use crate::store::{RedisStore, StoreError};
use crate::validate::{ConfigErrors, Validate};

/// One `[limits.*]` table: `per_address` requests per client address per `window`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WindowLimit {
    pub per_address: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

/// `[limits]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    /// How often each instance shares its counts with the fleet (p).
    #[serde(with = "humantime_serde")]
    pub share_every: Duration,
    /// Addresses each limit holds at most (and sends at most per round).
    pub max_addresses: u64,
    /// `POST /users/signup` (each sign-up hashes a password and mails an address).
    pub signups: WindowLimit,
    /// `GET /users/{id}` (public, unauthenticated, ids are guessable).
    pub profile_lookups: WindowLimit,
    /// `POST /users/password/forgot`, `/users/password/reset` and
    /// `/users/email/verify` together (anonymous; a forgot may mail).
    pub email_tokens: WindowLimit,
}

/// The address a client is counted under: the IPv4 address itself (an
/// IPv4-mapped IPv6 address counts as its IPv4 address), or the /64 network
/// of an IPv6 address (its last 64 bits zero).
pub fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// [`bucket_of`] as text, the way keys name it: `203.0.113.7`,
/// `2001:db8:1:2::/64`.
pub fn client_bucket(ip: IpAddr) -> String {
    match bucket_of(ip) {
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
    /// Redis failures, by limit: a login check skipped (the request went
    /// through), or a sharing round not delivered (decided here alone).
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

    /// Whether Redis failed last time.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
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

/// The limits the HTTP layer applies itself. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    pub signups: AddressLimit,
    pub profile_lookups: AddressLimit,
    pub email_tokens: AddressLimit,
}

impl Limits {
    /// Every limit, each dividing its budget by `instances` (the fleet's live
    /// count, kept current by the heartbeat), reading the time from `clock`.
    pub fn new(
        redis: &RedisStore,
        config: &LimitsConfig,
        (metrics, instances): (&LimitMetrics, &Gauge),
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limit = |name, limit| {
            AddressLimit::new(
                redis.clone(),
                LimitReporter::new(name, metrics),
                limit,
                (config.max_addresses, instances.clone()),
                Arc::clone(&clock),
            )
        };
        Self {
            signups: limit("signup", config.signups),
            profile_lookups: limit("profile_lookup", config.profile_lookups),
            email_tokens: limit("email_token", config.email_tokens),
        }
    }
}

/// Every per-address limit allows something in a positive window; counts
/// are shared at least once a window; some addresses are held.
impl Validate for LimitsConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        for (name, limit) in [
            ("signups", self.signups),
            ("profile_lookups", self.profile_lookups),
            ("email_tokens", self.email_tokens),
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
        // (A zero window is refused above; it bounds nothing here.)
        let shortest = [
            self.signups.window,
            self.profile_lookups.window,
            self.email_tokens.window,
        ]
        .into_iter()
        .filter(|window| !window.is_zero())
        .min()
        .unwrap_or(Duration::MAX);
        errors.ensure(
            self.share_every >= MIN_SHARE_EVERY && self.share_every <= shortest,
            "share_every",
            "must be from 10ms to the shortest limit's window",
        );
        errors.ensure(
            self.max_addresses >= 1,
            "max_addresses",
            "must be at least 1",
        );
    }
}

/// Sharing more often than this costs Redis more than it gains.
const MIN_SHARE_EVERY: Duration = Duration::from_millis(10);

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

    #[test]
    fn a_client_bucket_is_an_address_with_its_host_bits_cleared() {
        assert_eq!(bucket_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    }

    fn config() -> LimitsConfig {
        let limit = |per_address| WindowLimit {
            per_address,
            window: Duration::from_secs(60),
        };
        LimitsConfig {
            share_every: Duration::from_secs(1),
            max_addresses: 1000,
            signups: limit(5),
            profile_lookups: limit(100),
            email_tokens: limit(10),
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
        assert_eq!(
            refused_after(config(), |l| l.profile_lookups.per_address = 0),
            ["profile_lookups.per_address"]
        );
        assert_eq!(
            refused_after(config(), |l| l.profile_lookups.window = Duration::ZERO),
            ["profile_lookups.window"]
        );
    }

    #[test]
    fn counts_are_shared_at_least_once_a_window_and_some_addresses_held() {
        use crate::validate::refused_after;
        for every in [
            Duration::ZERO,
            Duration::from_millis(9),
            Duration::from_secs(61),
        ] {
            assert_eq!(
                refused_after(config(), |l| l.share_every = every),
                ["share_every"],
                "{every:?}"
            );
        }
        assert_eq!(
            refused_after(config(), |l| {
                l.signups.window = Duration::from_secs(5);
                l.share_every = Duration::from_secs(6);
            }),
            ["share_every"]
        );
        for every in [Duration::from_millis(10), Duration::from_secs(60)] {
            assert!(refused_after(config(), |l| l.share_every = every).is_empty());
        }
        assert_eq!(
            refused_after(config(), |l| l.max_addresses = 0),
            ["max_addresses"]
        );
    }
}

//! [`AddressLimit`]: one per-address limit, decided in the request's task
//! without I/O, its counts shared with the fleet by [`super::share`].
//!
//! Each client bucket ([`super::bucket_of`]) has an [`Entry`] in a bounded
//! map ([`quick_cache`]: sharded, S3-FIFO eviction, a read is a shard's read
//! lock and a hash probe): its [`Gcra`] bucket (this instance's share,
//! paced), the requests let through here in the current window, and what the
//! fleet counted for it in that window as last learnt. A decision locks that
//! one entry for a few arithmetic steps: addresses never contend with each
//! other.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use super::clock::Clock;
use super::gcra::Gcra;
use super::{bucket_of, LimitReporter, WindowLimit};
use crate::store::RedisStore;

/// This instance's share of `per_address` among `instances` live ones
/// (rounded up: the fleet's shares add up to less than `per_address +
/// instances`). An unknown or empty fleet counts as this instance alone.
pub fn share(per_address: u64, instances: i64) -> u64 {
    per_address.div_ceil(instances.max(1) as u64).max(1)
}

/// One address's state. `Default`: never seen.
#[derive(Debug, Default)]
pub(super) struct Entry {
    bucket: Gcra,
    /// Index of the window (`unix / window`) the counts below are for.
    pub window: u64,
    /// Let through here in `window`.
    here: u64,
    /// Let through here, not yet sent to the fleet.
    pub unsent: u64,
    /// Sent in a sharing round not yet answered.
    pub sending: u64,
    /// The fleet's count for `window` (this instance's sent ones included),
    /// as the last sharing round answered.
    pub fleet: u64,
    /// Whether it is on the list of the next sharing round.
    pub queued: bool,
}

/// When a decision is made.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub monotonic: Duration,
    pub unix: Duration,
}

impl Entry {
    /// Let one request through (`Ok(newly_unsent)`: it must be put on the
    /// sharing list) or refuse it with the wait (`Err`). Refused requests
    /// are not counted: a client hammering past its limit spends nothing.
    pub fn decide(&mut self, now: Now, limit: &WindowLimit, share: u64) -> Result<bool, Duration> {
        let window_ms = limit.window.as_millis().max(1) as u64;
        let unix_ms = now.unix.as_millis() as u64;
        let window = unix_ms / window_ms;
        if self.window != window {
            // A new window: counts start over (any unsent count was for the
            // window that ended). The bucket and the queued flag carry on.
            *self = Self {
                bucket: self.bucket,
                window,
                queued: self.queued,
                ..Self::default()
            };
        }
        let window_left = Duration::from_millis((window + 1) * window_ms - unix_ms);
        // Over the fleet's budget (as known here), or this instance's share
        // spent: refused until the window ends.
        let fleet = self.fleet + self.sending + self.unsent;
        if fleet >= limit.per_address || self.here >= share {
            return Err(window_left);
        }
        // Paced within the share (no burst of two shares across a window's
        // edge).
        self.bucket.take(now.monotonic, share, limit.window)?;
        self.here += 1;
        self.unsent += 1;
        Ok(!std::mem::replace(&mut self.queued, true))
    }
}

pub(super) type Shared = Arc<Mutex<Entry>>;

/// The addresses a limit holds.
pub(super) type AddressMap = quick_cache::sync::Cache<IpAddr, Shared>;

/// One per-address limit. Cheap to clone.
#[derive(Clone)]
pub struct AddressLimit {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub limit: WindowLimit,
    pub report: LimitReporter,
    pub redis: RedisStore,
    /// Every address seen lately: at most `max_addresses`. An address seen
    /// once is evicted before one seen again (S3-FIFO), so a flood of fresh
    /// addresses pushes out its own kind first, not the clients that keep
    /// coming. An idle entry needs no expiry: its counts start over with
    /// the next window and its bucket is full again a window later.
    pub entries: AddressMap,
    /// Addresses with counts for the next sharing round (at most
    /// `max_addresses`: beyond, an address waits for a later round).
    pub unsent: Mutex<Vec<(IpAddr, Shared)>>,
    pub max_addresses: usize,
    /// The live instances in the fleet, as the last heartbeat read them.
    pub instances: Gauge,
    pub clock: Arc<dyn Clock>,
}

impl AddressLimit {
    /// `name` labels its keys and metrics (`signup`, `profile_lookup`).
    pub fn new(
        redis: RedisStore,
        report: LimitReporter,
        limit: WindowLimit,
        (max_addresses, instances): (u64, Gauge),
        clock: Arc<dyn Clock>,
    ) -> Self {
        let max_addresses = usize::try_from(max_addresses).unwrap_or(usize::MAX);
        let entries = AddressMap::new(max_addresses.max(1));
        let inner = Inner {
            limit,
            report,
            redis,
            entries,
            unsent: Mutex::new(Vec::new()),
            max_addresses,
            instances,
            clock,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Count one request of `client`; `Some(wait)` if it must be refused.
    /// No I/O: the fleet's counts arrive in the background.
    pub fn check(&self, client: IpAddr) -> Option<Duration> {
        let inner = &*self.inner;
        let address = bucket_of(client);
        let entry = inner
            .entries
            .get_or_insert_with(&address, || Ok::<_, Infallible>(Shared::default()))
            .unwrap_or_else(|never| match never {});
        let (monotonic, unix) = inner.clock.now();
        let now = Now { monotonic, unix };
        let share = share(inner.limit.per_address, inner.instances.get());
        let decided = entry
            .lock()
            .expect("limit entry lock")
            .decide(now, &inner.limit, share);
        match decided {
            Ok(newly_unsent) => {
                if newly_unsent {
                    self.queue(address, entry);
                }
                None
            }
            Err(wait) => {
                inner.report.refused();
                Some(wait.max(Duration::from_secs(1)))
            }
        }
    }

    /// Put `entry` on the next sharing round's list, if there is room
    /// (otherwise it stays off it until its next request).
    pub(super) fn queue(&self, address: IpAddr, entry: Shared) {
        let mut unsent = self.inner.unsent.lock().expect("unsent lock");
        if unsent.len() < self.inner.max_addresses {
            unsent.push((address, entry));
        } else {
            drop(unsent);
            entry.lock().expect("limit entry lock").queued = false;
        }
    }

    /// Addresses held, for tests and metrics.
    pub fn addresses(&self) -> u64 {
        self.inner.entries.len() as u64
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Instant;

    use super::*;
    use crate::limits::clock::SystemClock;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limit(per_address: u64) -> WindowLimit {
        WindowLimit {
            per_address,
            window: MINUTE,
        }
    }

    /// `s` seconds into a window (the 1000th minute since the epoch).
    fn at(s: u64) -> Now {
        let t = Duration::from_secs(60_000 + s);
        Now {
            monotonic: t,
            unix: t,
        }
    }

    fn allowed(entry: &mut Entry, now: Now, limit: &WindowLimit, share: u64, n: u64) -> u64 {
        (0..n)
            .filter(|_| entry.decide(now, limit, share).is_ok())
            .count() as u64
    }

    #[test]
    fn each_instance_gets_its_share_of_the_fleet() {
        assert_eq!(share(300, 1), 300);
        assert_eq!(share(300, 3), 100);
        // Rounded up: 3 × 7 = 21 ≥ 20, never a share of 0.
        assert_eq!(share(20, 3), 7);
        assert_eq!(share(1, 3), 1);
        // No registry read yet (or Redis down at start): alone.
        assert_eq!(share(300, 0), 300);
        assert_eq!(share(300, -1), 300);
    }

    #[test]
    fn an_instance_alone_refuses_past_the_limit_until_the_window_ends() {
        let (limit, mut entry) = (limit(5), Entry::default());
        assert_eq!(allowed(&mut entry, at(15), &limit, 5, 9), 5);
        assert_eq!(
            entry.decide(at(15), &limit, 5),
            Err(Duration::from_secs(45))
        );
        // The next window starts over, its pace set by the bucket: refilled
        // 45 s of 60 since, three requests.
        assert_eq!(allowed(&mut entry, at(60), &limit, 5, 9), 3);
    }

    #[test]
    fn three_instances_each_let_their_share_through() {
        let limit = limit(300);
        let counts: Vec<u64> = (0..3)
            .map(|_| allowed(&mut Entry::default(), at(0), &limit, share(300, 3), 500))
            .collect();
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn the_fleets_count_refuses_an_address_here_until_the_window_ends() {
        let (limit, mut entry) = (limit(10), Entry::default());
        assert_eq!(allowed(&mut entry, at(0), &limit, 10, 2), 2);
        // A sharing round: the fleet saw 9 of this address's requests
        // (these 2 included).
        entry.unsent = 0;
        entry.fleet = 9;
        assert_eq!(allowed(&mut entry, at(1), &limit, 10, 5), 1);
        assert_eq!(
            entry.decide(at(1), &limit, 10),
            Err(Duration::from_secs(59))
        );
        // Counts sent and not yet answered count too.
        let mut sending = Entry {
            window: 1000,
            sending: 10,
            ..Entry::default()
        };
        assert!(sending.decide(at(1), &limit, 10).is_err());
    }

    #[test]
    fn only_the_first_unsent_request_puts_the_address_on_the_list() {
        let (limit, mut entry) = (limit(10), Entry::default());
        assert_eq!(entry.decide(at(0), &limit, 10), Ok(true));
        assert_eq!(entry.decide(at(0), &limit, 10), Ok(false));
        assert_eq!(entry.unsent, 2);
    }

    #[test]
    fn the_bucket_paces_an_address_across_the_edge_of_a_window() {
        let (limit, mut entry) = (limit(6), Entry::default());
        assert_eq!(allowed(&mut entry, at(59), &limit, 6, 6), 6);
        // A new window, but the bucket refills one every 10 s.
        assert_eq!(entry.decide(at(60), &limit, 6), Err(Duration::from_secs(9)));
        assert_eq!(allowed(&mut entry, at(69), &limit, 6, 6), 1);
    }

    /// A clock at the 1000th minute since the epoch, moved by hand.
    #[derive(Default)]
    pub(in crate::limits) struct TestClock(std::sync::atomic::AtomicU64);

    impl TestClock {
        pub fn advance(&self, by: Duration) {
            let ms = by.as_millis() as u64;
            self.0.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl Clock for TestClock {
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.0.load(std::sync::atomic::Ordering::Relaxed))
        }
        fn unix(&self) -> Duration {
            Duration::from_secs(60_000) + self.monotonic()
        }
    }

    /// A limit of `per_address` a minute holding `max_addresses`, over
    /// `redis`, in a fleet of `instances`.
    pub(in crate::limits) fn address_limit(
        redis: RedisStore,
        per_address: u64,
        (max_addresses, instances): (u64, i64),
        clock: Arc<TestClock>,
    ) -> AddressLimit {
        let metrics = super::super::LimitMetrics::default();
        let fleet = Gauge::default();
        fleet.set(instances);
        let report = LimitReporter::new("profile_lookup", &metrics);
        AddressLimit::new(
            redis,
            report,
            limit(per_address),
            (max_addresses, fleet),
            clock,
        )
    }

    fn nowhere() -> RedisStore {
        RedisStore::new(
            "redis://127.0.0.1:1",
            "test-limits:",
            Duration::from_millis(50),
        )
        .unwrap()
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn a_flood_of_rotating_addresses_holds_at_most_max_addresses() {
        let limit = address_limit(nowhere(), 5, (100, 1), Arc::default());
        for i in 0..10_000 {
            assert_eq!(limit.check(ip(i)), None);
        }
        assert!(limit.addresses() <= 100, "{}", limit.addresses());
        // The next sharing round's list is bounded the same way.
        assert_eq!(limit.inner.unsent.lock().unwrap().len(), 100);
        // IPv6: one entry per /64, however many addresses in it.
        for i in 0..1_000u128 {
            let v6 = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | i);
            let _ = limit.check(IpAddr::V6(v6));
        }
        assert!(limit
            .inner
            .entries
            .contains_key(&"2001:db8::".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn one_address_spending_its_budget_leaves_the_others_theirs() {
        let limit = address_limit(nowhere(), 3, (100, 1), Arc::default());
        let spent: Vec<bool> = (0..5).map(|_| limit.check(ip(1)).is_none()).collect();
        assert_eq!(spent, [true, true, true, false, false]);
        assert_eq!(limit.check(ip(1)), Some(Duration::from_secs(60)));
        for other in 2..50 {
            assert_eq!(limit.check(ip(other)), None);
        }
    }

    #[test]
    fn an_evicted_address_starts_over_here() {
        let limit = address_limit(nowhere(), 2, (100, 1), Arc::default());
        assert_eq!((limit.check(ip(1)), limit.check(ip(1))), (None, None));
        assert!(limit.check(ip(1)).is_some());
        // Other addresses that come back too, as many as it takes to push
        // it out (ones seen once would only push out each other).
        let mut others = 2..100_000;
        while limit.inner.entries.contains_key(&ip(1)) {
            let other = ip(others.next().expect("evicted within the flood"));
            let _ = (limit.check(other), limit.check(other));
        }
        // It gets a fresh share here (what Redis counted for it stays
        // there: the next round relearns it).
        assert_eq!(limit.check(ip(1)), None);
    }

    #[test]
    fn a_flood_of_fresh_addresses_does_not_push_out_one_that_keeps_coming() {
        let limit = address_limit(nowhere(), 5, (100, 1), Arc::default());
        let steady = ip(1);
        let allowed: usize = (0..10_000u32)
            .map(|i| {
                let _ = limit.check(ip(1_000 + i)); // the flood, once each
                usize::from(i % 100 == 0 && limit.check(steady).is_none())
            })
            .sum();
        // Its budget held through the flood: forgotten, it would have got
        // a fresh share each time it was pushed out.
        assert_eq!(allowed, 5);
        assert!(limit.addresses() <= 100, "{}", limit.addresses());
    }

    #[test]
    fn a_limit_divides_by_the_fleet_it_last_read() {
        let clock = Arc::new(TestClock::default());
        let limit = address_limit(nowhere(), 300, (100, 3), Arc::clone(&clock));
        let allowed = |n| (0..n).filter(|_| limit.check(ip(1)).is_none()).count();
        assert_eq!(allowed(300), 100);
        // Alone from now on: the share is the whole limit, paced by the
        // bucket, whose minute the first hundred spent.
        limit.inner.instances.set(1);
        assert_eq!(allowed(300), 0);
        clock.advance(Duration::from_secs(20));
        assert_eq!(allowed(300), 100);
    }

    /// A rough figure, not a benchmark: run by hand with
    /// `cargo test --release -p troupe-actors --lib what_a_decision_costs -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, run by hand"]
    fn what_a_decision_costs() {
        let (metrics, fleet) = (super::super::LimitMetrics::default(), Gauge::default());
        let report = LimitReporter::new("profile_lookup", &metrics);
        let limit = AddressLimit::new(
            nowhere(),
            report,
            limit(u64::MAX / 2),
            (100_000, fleet),
            Arc::new(SystemClock::default()),
        );
        let n = 2_000_000u32;
        let started = Instant::now();
        for i in 0..n {
            assert!(limit.check(ip(i % 1_000)).is_none());
        }
        let each = started.elapsed() / n;
        println!("{each:?} per decision (1,000 addresses, one thread)");
    }
}

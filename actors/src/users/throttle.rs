//! Login throttling that stops attackers, not users (OWASP Authentication
//! Cheat Sheet): failures are counted, never successes, in Redis, shared by
//! every instance.
//!
//! Three counters, each checked *before* any password is verified, so a
//! refused client cannot use the service to guess:
//! - **(account, address):** `free_failures` failures are free; after each
//!   further one the pair waits [`delay_after`] (`base_delay`, doubling,
//!   capped at `max_delay`) before its next attempt. The count is forgotten
//!   `forget_after` after its last attempt, and a successful login clears it.
//!   The owner on another address is not affected.
//! - **account, all addresses:** past `per_account` failures in a `window`
//!   (a distributed guessing attack) the account is *under attack* until
//!   the window ends ([`account_ceiling`]): an address that has failed for
//!   the account (its pair count, kept `forget_after`) is refused until
//!   then; an address with no failure for it gets one attempt. The owner's
//!   first try from a device or network that has not typed a wrong password
//!   goes through, so the attacker cannot lock the owner out; the attacker
//!   gets at most one guess per fresh address per window instead of the
//!   free allowance (OWASP: lock-out is a denial of service the attacker
//!   controls; slow the attacker, not the owner). The price: an attacker
//!   with N addresses gets `per_account` + N guesses a window, not
//!   `per_account` — bounded by how many addresses it owns, each of which
//!   also counts against `per_address`. Much higher than the free
//!   allowance: reaching it takes many addresses.
//! - **address, all accounts:** more than `per_address` failures in a
//!   `window` (credential stuffing) refuse the address's logins until the
//!   window ends. Successful logins never count, so users behind one NAT or
//!   proxy do not lock each other out.
//!
//! **Concurrency.** An attempt is counted as a failure when it *starts*
//! (`INCR` gives each concurrent attempt its own count) and refunded when it
//! succeeds, is refused, or ends for another reason ([`LoginTicket`]). Past
//! the free allowance the attempt must also win `SET wait NX PX delay`: of
//! concurrent attempts only one goes ahead, so parallel requests cannot
//! multiply the guesses a delay allows.
//!
//! Keys name a hash of the e-mail, never the address itself.
//!
//! Redis down or slow: the throttle fails **open** (the login proceeds; a
//! warning is logged once per outage and
//! `troupe_rate_limit_unavailable_total{limit="login"}` counts): availability
//! of login is preferred over throttling during a Redis outage; bcrypt's
//! cost still bounds guessing speed.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::limits::{client_bucket, over_limit, wait_from_pttl, LimitMetrics, LimitReporter};
use crate::store::{RedisStore, StoreError};
use crate::validate::{ConfigErrors, Validate};

/// `[auth.throttle]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ThrottleConfig {
    /// Failures per (account, address) before delays start.
    pub free_failures: u64,
    /// The wait after the first failure past the free allowance; it doubles
    /// with each further failure.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// The longest wait between attempts of one (account, address).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// An (account, address)'s failures are forgotten this long after its
    /// last attempt.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// Failures per account per window, from all addresses together.
    pub per_account: u64,
    /// Failures per client address per window, on all accounts together.
    pub per_address: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

/// How long an (account, address) waits after its `failures`-th failure
/// before it may try again: nothing within the free allowance, then
/// `base_delay × 2^(failures − free_failures − 1)`, capped at `max_delay`.
pub fn delay_after(failures: u64, config: &ThrottleConfig) -> Duration {
    let past = failures.saturating_sub(config.free_failures);
    if past == 0 {
        return Duration::ZERO;
    }
    let doublings = past - 1;
    let delay = u32::try_from(doublings)
        .ok()
        .and_then(|d| 1u32.checked_shl(d))
        .and_then(|factor| config.base_delay.checked_mul(factor))
        .unwrap_or(config.max_delay);
    delay.min(config.max_delay)
}

/// Whether the account-wide ceiling refuses an attempt, and for how long.
/// `account`: the account's failures in the window, this attempt included
/// (`account_ttl_ms` the window's remaining `PTTL`); `pair`: the (account,
/// address)'s failures, this attempt included.
///
/// Below the ceiling nothing is refused here. Past it, an address whose
/// count holds more than this attempt (it failed for the account, or has an
/// attempt in flight) waits for the window's end; a first attempt goes
/// ahead. Of concurrent first attempts from one address, `INCR` numbers
/// only one 1, so a burst gets one guess too.
pub fn account_ceiling(
    account: u64,
    account_ttl_ms: i64,
    pair: u64,
    config: &ThrottleConfig,
) -> Option<Duration> {
    let wait = over_limit(account, config.per_account, account_ttl_ms)?;
    (pair > 1).then_some(wait)
}

/// The Redis keys of one login attempt.
///
/// Two hash tags (Redis Cluster slots): the account's keys (its window count,
/// and each of its (account, address) pairs' count and wait) share
/// `{<account hash>}`, the address's window count has `{<address bucket>}`.
/// A tag per account and per address spreads the keys over the slots; the
/// two sides are counted in two pipelines, one per tag, sent together.
struct Keys {
    /// Failures of (account, address).
    pair: String,
    /// Present while (account, address) must wait.
    wait: String,
    /// Failures of the account in the window.
    account: String,
    /// Failures of the address in the window.
    address: String,
}

impl Keys {
    /// Keys under `prefix:` for the account hash `account` and the address
    /// bucket `address`. Not the names of the old attempt counters (which
    /// counted successes too), nor of the untagged ones before them: none of
    /// those is read after an upgrade (they expire).
    fn new(redis: &RedisStore, account: &str, address: &str) -> Self {
        let account_key =
            |rest: &str| redis.key(&format!("throttle:login:account:{{{account}}}:{rest}"));
        Keys {
            pair: account_key(&format!("pair:{address}:failures")),
            wait: account_key(&format!("pair:{address}:wait")),
            account: account_key("failures"),
            address: redis.key(&format!("throttle:login:address:{{{address}}}:failures")),
        }
    }
}

#[derive(Clone)]
pub struct Throttle {
    redis: RedisStore,
    config: ThrottleConfig,
    report: LimitReporter,
}

impl Throttle {
    pub fn new(redis: RedisStore, config: ThrottleConfig, metrics: &LimitMetrics) -> Self {
        Self {
            redis,
            config,
            report: LimitReporter::new("login", metrics),
        }
    }

    fn keys(&self, email: &str, client: IpAddr) -> Keys {
        let account = hex::encode(&Sha256::digest(email.as_bytes())[..12]);
        Keys::new(&self.redis, &account, &client_bucket(client))
    }

    /// Count this attempt (as a failure until its ticket says otherwise);
    /// [`Refused`] if the client must wait first. Either says whether this
    /// attempt is the one that put the account under attack (its count is
    /// the first past `per_account`: one attempt of the fleet per window,
    /// give or take the refunds).
    pub async fn attempt(&self, email: &str, client: IpAddr) -> Result<LoginTicket, Refused> {
        let keys = self.keys(email, client);
        let window = self.config.window.as_millis() as u64;
        let mut by_account = redis::pipe();
        by_account
            .cmd("INCR")
            .arg(&keys.pair)
            .cmd("PEXPIRE")
            .arg(&keys.pair)
            .arg(self.config.forget_after.as_millis() as u64)
            .ignore();
        count_in_window(&mut by_account, &keys.account, window);
        let mut by_address = redis::pipe();
        count_in_window(&mut by_address, &keys.address, window);
        let (account_side, address_side) = tokio::join!(
            self.redis.run_pipe::<(u64, u64, i64)>(&by_account),
            self.redis.run_pipe::<(u64, i64)>(&by_address),
        );
        // Fail open, uncounted, on either side's failure: the side that was
        // counted is taken back (best effort: the outage is reported once).
        let ((pair, account, account_ttl), (address, address_ttl)) =
            match (account_side, address_side) {
                (Ok(account_side), Ok(address_side)) => (account_side, address_side),
                (Ok(_), Err(err)) => {
                    let _ = self.run_refund(&self.refund_account(&keys, false)).await;
                    return Ok(self.fail_open(&err));
                }
                (Err(err), Ok(_)) => {
                    let _ = self.run_refund(&self.refund_address(&keys)).await;
                    return Ok(self.fail_open(&err));
                }
                (Err(err), Err(_)) => return Ok(self.fail_open(&err)),
            };
        self.report.redis_ok();
        let attack_began = account == self.config.per_account + 1;
        let refused = match account_ceiling(account, account_ttl, pair, &self.config)
            .or_else(|| over_limit(address, self.config.per_address, address_ttl))
        {
            Some(wait) => Some(wait),
            None => self.gate(&keys, pair).await,
        };
        let ticket = LoginTicket {
            counted: Some((self.clone(), keys)),
            attack_began,
        };
        match refused {
            Some(wait) => {
                self.report.refused();
                ticket.cancel().await;
                Err(Refused { wait, attack_began })
            }
            None => Ok(ticket),
        }
    }

    /// The `attempt`-th attempt of (account, address) goes ahead only if no
    /// wait runs for the pair; past the free allowance it starts the wait
    /// that follows it should it fail. `Some(wait)` if refused.
    async fn gate(&self, keys: &Keys, attempt: u64) -> Option<Duration> {
        let delay = delay_after(attempt, &self.config);
        if delay.is_zero() {
            return None;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&keys.wait)
            .arg(1)
            .arg("PX")
            .arg(delay.as_millis() as u64)
            .arg("NX")
            .cmd("PTTL")
            .arg(&keys.wait);
        match self.redis.run_pipe::<(Option<String>, i64)>(&pipe).await {
            Ok((Some(_), _)) => None,
            Ok((None, ttl_ms)) => Some(wait_from_pttl(ttl_ms)),
            Err(err) => {
                self.report.unavailable(&err);
                None
            }
        }
    }

    /// Take back what [`Self::attempt`] counted; `clear_pair` (a successful
    /// login) also forgets the pair's failures and wait. One pipeline per
    /// hash tag, sent together.
    async fn refund(&self, keys: &Keys, clear_pair: bool) {
        let (account_side, address_side) = (
            self.refund_account(keys, clear_pair),
            self.refund_address(keys),
        );
        let (account_side, address_side) = tokio::join!(
            self.run_refund(&account_side),
            self.run_refund(&address_side),
        );
        if let Err(err) = account_side.and(address_side) {
            self.report.unavailable(&err);
        }
    }

    /// The account side of a refund (the keys tagged with the account).
    fn refund_account(&self, keys: &Keys, clear_pair: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if clear_pair {
            pipe.cmd("DEL").arg(&keys.pair).arg(&keys.wait).ignore();
        } else {
            decrement(&mut pipe, &keys.pair, self.config.forget_after);
        }
        decrement(&mut pipe, &keys.account, self.config.window);
        pipe
    }

    /// The address side of a refund.
    fn refund_address(&self, keys: &Keys) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        decrement(&mut pipe, &keys.address, self.config.window);
        pipe
    }

    async fn run_refund(&self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        self.redis.run_pipe::<()>(pipe).await
    }

    /// Redis failed while counting: the login proceeds uncounted.
    fn fail_open(&self, err: &StoreError) -> LoginTicket {
        self.report.unavailable(err);
        LoginTicket::uncounted()
    }
}

/// `INCR key`, starting its expiry of `window_ms` on first use, then `PTTL
/// key`: two replies, the count and the window's remaining ms.
fn count_in_window(pipe: &mut redis::Pipeline, key: &str, window_ms: u64) {
    pipe.cmd("INCR")
        .arg(key)
        .cmd("PEXPIRE")
        .arg(key)
        .arg(window_ms)
        .arg("NX")
        .ignore()
        .cmd("PTTL")
        .arg(key);
}

/// `DECR key`, keeping an expiry on it: if the key expired since it was
/// counted, DECR recreates it, and it must not then live forever.
fn decrement(pipe: &mut redis::Pipeline, key: &str, expiry: Duration) {
    pipe.cmd("DECR")
        .arg(key)
        .ignore()
        .cmd("PEXPIRE")
        .arg(key)
        .arg(expiry.as_millis() as u64)
        .arg("NX")
        .ignore();
}

/// A login attempt the throttle refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long the client must wait.
    pub wait: Duration,
    /// This attempt put the account under attack (see [`Throttle::attempt`]).
    pub attack_began: bool,
}

/// One admitted login attempt, counted as a failure until [`Self::succeeded`]
/// or [`Self::cancel`] takes it back. Dropped (say, its task cancelled), it
/// stays counted.
#[must_use = "a ticket left alone counts as a failed login"]
pub struct LoginTicket {
    /// `None` when Redis was unavailable and nothing was counted.
    counted: Option<(Throttle, Keys)>,
    attack_began: bool,
}

impl LoginTicket {
    fn uncounted() -> Self {
        Self {
            counted: None,
            attack_began: false,
        }
    }

    /// This attempt put the account under attack (see [`Throttle::attempt`]).
    pub fn attack_began(&self) -> bool {
        self.attack_began
    }

    /// The password was right: clear the (account, address)'s failures, and
    /// take this attempt out of the account's and the address's counts.
    pub async fn succeeded(self) {
        if let Some((throttle, keys)) = self.counted {
            throttle.refund(&keys, true).await;
        }
    }

    /// The password was wrong: the attempt stays counted as a failure.
    pub fn failed(self) {}

    /// The attempt ended without a verdict on the password (the store
    /// failed, or it was refused): it does not count.
    pub async fn cancel(self) {
        if let Some((throttle, keys)) = self.counted {
            throttle.refund(&keys, false).await;
        }
    }
}

/// Every login limit allows something and its durations are positive.
impl Validate for ThrottleConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        let at_least_one = "must be at least 1";
        errors.ensure(self.per_account >= 1, "per_account", at_least_one);
        errors.ensure(self.per_address >= 1, "per_address", at_least_one);
        let positive = "must be positive";
        errors.ensure(!self.window.is_zero(), "window", positive);
        errors.ensure(!self.base_delay.is_zero(), "base_delay", positive);
        errors.ensure(
            self.max_delay >= self.base_delay,
            "max_delay",
            "must be at least auth.throttle.base_delay",
        );
        // A pair's count must outlive its longest wait.
        errors.ensure(
            self.forget_after >= self.max_delay,
            "forget_after",
            "must be at least auth.throttle.max_delay",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(free: u64, base_ms: u64, max_ms: u64) -> ThrottleConfig {
        ThrottleConfig {
            free_failures: free,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
            forget_after: Duration::from_secs(86_400),
            per_account: 100,
            per_address: 100,
            window: Duration::from_secs(3_600),
        }
    }

    #[test]
    fn failures_within_the_allowance_cost_no_wait() {
        let c = config(5, 1_000, 900_000);
        for failures in 0..=5 {
            assert_eq!(delay_after(failures, &c), Duration::ZERO, "{failures}");
        }
    }

    #[test]
    fn each_failure_past_the_allowance_doubles_the_wait() {
        let c = config(5, 1_000, 900_000);
        let waits: Vec<u64> = (6..=11).map(|f| delay_after(f, &c).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn the_wait_is_capped() {
        let c = config(5, 1_000, 900_000);
        // 2^10 s = 1,024 s > 15 min: capped from the 16th failure on.
        assert_eq!(delay_after(15, &c), Duration::from_secs(512));
        assert_eq!(delay_after(16, &c), Duration::from_secs(900));
        // Huge counts neither overflow nor panic.
        for failures in [37, 38, 100, u64::MAX] {
            assert_eq!(delay_after(failures, &c), Duration::from_secs(900));
        }
    }

    #[test]
    fn no_allowance_means_a_wait_from_the_first_failure() {
        let c = config(0, 250, 60_000);
        assert_eq!(delay_after(0, &c), Duration::ZERO);
        assert_eq!(delay_after(1, &c), Duration::from_millis(250));
        assert_eq!(delay_after(2, &c), Duration::from_millis(500));
    }

    #[test]
    fn below_the_account_ceiling_nothing_is_refused_for_it() {
        let c = config(5, 1_000, 900_000);
        for pair in [1, 2, 50] {
            assert_eq!(account_ceiling(100, 3_000_000, pair, &c), None);
        }
    }

    #[test]
    fn past_the_ceiling_only_addresses_that_failed_for_the_account_wait() {
        let c = config(5, 1_000, 900_000);
        // A first attempt from an address (the owner's, or a fresh one of
        // the attacker's) goes ahead, however far past the ceiling.
        assert_eq!(account_ceiling(101, 3_000_000, 1, &c), None);
        assert_eq!(account_ceiling(10_000, 3_000_000, 1, &c), None);
        // One failure before (or one attempt in flight): the window's rest.
        for pair in [2, 3, 1_000] {
            assert_eq!(
                account_ceiling(101, 3_000_000, pair, &c),
                Some(Duration::from_secs(3_000)),
                "{pair}"
            );
        }
        // Never a zero wait.
        assert_eq!(
            account_ceiling(101, 10, 2, &c),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn keys_name_a_hash_of_the_email_and_the_address_bucket() {
        let redis = RedisStore::new("redis://127.0.0.1:1", "p:", Duration::from_millis(10))
            .expect("url parses");
        let throttle = Throttle::new(redis, config(5, 1, 2), &LimitMetrics::default());
        let keys = throttle.keys("ada@example.com", "2001:db8:1:2::9".parse().unwrap());
        for key in [&keys.pair, &keys.wait, &keys.account, &keys.address] {
            assert!(key.starts_with("p:throttle:login:"), "{key}");
            assert!(!key.contains("ada") && !key.contains("example"), "{key}");
        }
        assert!(keys.pair.contains(":2001:db8:1:2::/64:"), "{}", keys.pair);
        assert!(
            keys.address.contains("{2001:db8:1:2::/64}"),
            "{}",
            keys.address
        );
    }

    /// On a Redis Cluster each pipeline's keys must hash to one slot: the
    /// account side (pair count, wait, account count) shares one, the address
    /// count has its own, and different accounts spread over the slots.
    #[test]
    fn keys_used_together_share_a_cluster_slot() {
        use crate::store::same_slot;
        let redis = RedisStore::new("redis://127.0.0.1:1", "p:", Duration::from_millis(10))
            .expect("url parses");
        let throttle = Throttle::new(redis, config(5, 1, 2), &LimitMetrics::default());
        let keys = throttle.keys("ada@example.com", "203.0.113.7".parse().unwrap());
        assert!(
            same_slot([&*keys.pair, &keys.wait, &keys.account]),
            "{}",
            keys.pair
        );
        assert!(!same_slot([&*keys.account, &keys.address]));
        let spread = (0..20)
            .map(|i| {
                throttle.keys(
                    &format!("user{i}@example.com"),
                    "203.0.113.7".parse().unwrap(),
                )
            })
            .filter(|other| !same_slot([&*other.account, &keys.account]))
            .count();
        assert_eq!(spread, 20, "every account has a slot of its own here");
        // Untagged, the account side would spread over three slots.
        assert!(!same_slot([
            "p:throttle:login:failures:pair:x:203.0.113.7",
            "p:throttle:login:wait:x:203.0.113.7",
            "p:throttle:login:failures:account:x",
        ]));
    }

    #[test]
    fn login_throttle_allows_something_with_ordered_delays() {
        use crate::validate::refused_after;
        let ms = Duration::from_millis(1);
        let valid = || config(5, 1_000, 900_000);
        assert!(refused_after(valid(), |_| {}).is_empty());
        assert_eq!(
            refused_after(valid(), |t| t.per_account = 0),
            ["per_account"]
        );
        assert_eq!(
            refused_after(valid(), |t| t.per_address = 0),
            ["per_address"]
        );
        assert_eq!(
            refused_after(valid(), |t| t.window = Duration::ZERO),
            ["window"]
        );
        assert_eq!(
            refused_after(valid(), |t| t.base_delay = Duration::ZERO),
            ["base_delay"]
        );
        assert_eq!(
            refused_after(valid(), |t| t.max_delay = t.base_delay - ms),
            ["max_delay"]
        );
        assert_eq!(
            refused_after(valid(), |t| t.forget_after = t.max_delay - ms),
            ["forget_after"]
        );
        assert!(refused_after(valid(), |t| {
            (t.per_account, t.per_address) = (1, 1);
            t.max_delay = t.base_delay;
            t.forget_after = t.max_delay;
        })
        .is_empty());
    }
}

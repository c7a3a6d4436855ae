//! `Settings::problems`: one small validator per section, run in a fixed
//! order; each section's first broken rule is reported with its key (the
//! load asks again for the next, see `load`). Each rule is
//! unit-tested below, with the value just inside it accepted.

use std::time::Duration;

use troupe_actors::cache::CacheConfig;
use troupe_actors::events::config::EventsConfig;
use troupe_actors::fleet::config::FleetConfig;
use troupe_actors::limits::LimitsConfig;
use troupe_actors::queue::config::QueueConfig;
use troupe_actors::queue::schedule::{Schedule, ScheduleError};
use troupe_actors::users::config::AuthConfig;
use troupe_actors::users::idempotency::IdempotencyConfig;
use troupe_actors::users::throttle::ThrottleConfig;

use super::{
    invalid, secrets, ActorSettings, ConfigError, Environment, RedisSettings, ServerSettings,
    Settings,
};

impl Settings {
    /// The first problem [`problems`](Self::problems) finds (the rules' unit tests).
    #[cfg(test)]
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every section's first broken rule, in a fixed order (the load
    /// replaces the keys refused and asks again, for the next ones).
    pub(super) fn problems(&self) -> Vec<ConfigError> {
        [
            secrets::validate(self),
            auth(&self.auth),
            idempotency(&self.auth.idempotency, self.actors.call_timeout),
            queue(&self.queue),
            queue_hold(self.queue.hold, self.actors.call_timeout),
            events(&self.events),
            fleet(&self.fleet),
            server(&self.server),
            redis(&self.redis),
            throttle(&self.auth.throttle),
            limits(&self.limits),
            cache(&self.cache, self.actors.call_timeout),
            actors(&self.actors),
            fault_injection(self.ops.fault_injection, self.environment),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }
}

/// `key` is refused with `problem` unless `ok`.
fn ensure(ok: bool, key: &'static str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, problem))
    }
}

/// Longest `server.header_read_timeout`: hyper adds it to the clock for
/// every connection, so keep it sane.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(86_400);

fn server(server: &ServerSettings) -> Result<(), ConfigError> {
    ensure(
        server.body_limit > 0,
        "server.body_limit",
        "must be positive",
    )?;
    ensure(
        !server.header_read_timeout.is_zero()
            && server.header_read_timeout <= MAX_HEADER_READ_TIMEOUT,
        "server.header_read_timeout",
        "must be positive and at most 1d",
    )?;
    // A slow body must get its 408 before the request as a whole gets 503.
    ensure(
        !server.body_timeout.is_zero() && server.body_timeout < server.request_timeout,
        "server.body_timeout",
        "must be positive and shorter than server.request_timeout",
    )?;
    let max = tokio::sync::Semaphore::MAX_PERMITS;
    ensure(
        (1..=max).contains(&server.max_connections),
        "server.max_connections",
        &format!("must be from 1 to {max}"),
    )?;
    // Above max_connections it is simply never reached.
    ensure(
        server.max_connections_per_address > 0,
        "server.max_connections_per_address",
        "must be positive",
    )
}

/// The key prefix leaves hash tags to the capabilities (a brace in it would
/// make its own text the tag: every key in one cluster slot), and each
/// cluster seed is a Redis URL (named by position: URLs may hold a password).
fn redis(redis: &RedisSettings) -> Result<(), ConfigError> {
    ensure(
        !redis.key_prefix.contains(['{', '}']),
        "redis.key_prefix",
        "must not contain braces ({ or })",
    )?;
    for (i, url) in redis.cluster_urls.iter().enumerate() {
        use redis::IntoConnectionInfo;
        use secrecy::ExposeSecret;
        let url = url.expose_secret();
        let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
        if !scheme_ok || url.into_connection_info().is_err() {
            return Err(invalid(
                "redis.cluster_urls",
                format!(
                    "entry {} is not a redis:// URL (REDIS_CLUSTER_URLS: comma-separated)",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

fn auth(auth: &AuthConfig) -> Result<(), ConfigError> {
    ensure(
        (4..=31).contains(&auth.bcrypt_cost),
        "auth.bcrypt_cost",
        "must be between 4 and 31",
    )?;
    ensure(
        !auth.access_ttl.is_zero() && auth.refresh_ttl > auth.access_ttl,
        "auth.refresh_ttl",
        "both token lifetimes must be positive and refresh_ttl longer than access_ttl",
    )?;
    // A window for retries, not a second life for spent tokens.
    ensure(
        auth.refresh_reuse_grace <= Duration::from_secs(60),
        "auth.refresh_reuse_grace",
        "must be at most 1m (0s turns it off)",
    )
}

/// A key must outlive the requests that use it (a repeat may take a sign-up
/// over once it is older than the call timeout).
fn idempotency(config: &IdempotencyConfig, call_timeout: Duration) -> Result<(), ConfigError> {
    ensure(
        config.ttl > call_timeout,
        "auth.idempotency.ttl",
        "must be longer than actors.call_timeout",
    )?;
    ensure(
        !config.prune_interval.is_zero(),
        "auth.idempotency.prune_interval",
        "must be positive",
    )
}

/// The lease is renewed every third of it, so it needs some length; a zero
/// period would panic the timer that drives it.
fn queue(queue: &QueueConfig) -> Result<(), ConfigError> {
    ensure(
        queue.executors >= 1,
        "queue.executors",
        "must be at least 1",
    )?;
    ensure(
        queue.max_attempts >= 1,
        "queue.max_attempts",
        "must be at least 1",
    )?;
    ensure(
        queue.lease >= Duration::from_millis(300),
        "queue.lease",
        "must be at least 300ms",
    )?;
    ensure(
        !queue.poll_interval.is_zero(),
        "queue.poll_interval",
        "must be positive",
    )?;
    ensure(
        !queue.job_timeout.is_zero(),
        "queue.job_timeout",
        "must be positive",
    )?;
    ensure(
        queue.backoff_max >= queue.backoff_base,
        "queue.backoff_max",
        "must be at least queue.backoff_base",
    )?;
    ensure(
        !queue.prune_interval.is_zero(),
        "queue.prune_interval",
        "must be positive",
    )?;
    queue_enqueue(queue)?;
    schedules(queue)
}

/// What an enqueue is held to: the payload's size (a BSON document holds at
/// least 5 bytes; the job document must stay well under MongoDB's 16 MiB)
/// and the priority aging (positive; at most a day, so ranks stay sane).
fn queue_enqueue(queue: &QueueConfig) -> Result<(), ConfigError> {
    ensure(
        (5..=8 * 1024 * 1024).contains(&queue.max_payload),
        "queue.max_payload",
        "must be from 5 bytes to 8 MiB",
    )?;
    ensure(
        (Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&queue.priority_aging),
        "queue.priority_aging",
        "must be from 1ms to 1d",
    )
}

/// Each `[queue.schedules.<name>]` parses (name, cron pattern, payload);
/// the problem names the schedule's own key. (Whether its `type` has a
/// handler is checked when the actor system starts.)
fn schedules(queue: &QueueConfig) -> Result<(), ConfigError> {
    for (name, config) in &queue.schedules {
        if let Err(err) = Schedule::parse(name, config) {
            let field = match err {
                ScheduleError::Cron(_) => ".cron",
                ScheduleError::Payload(_) => ".payload",
                ScheduleError::Name => "",
            };
            let problem = format!(
                "queue.schedules.{name}{field}: {}",
                troupe_actors::store::error_chain(&err)
            );
            return Err(invalid("queue.schedules", problem));
        }
    }
    Ok(())
}

/// A held job must stay held while its producer may still be writing its
/// precondition: at least as long as the producer's caller waits for it.
fn queue_hold(hold: Duration, call_timeout: Duration) -> Result<(), ConfigError> {
    ensure(
        hold >= call_timeout,
        "queue.hold",
        "must be at least actors.call_timeout",
    )
}

/// The relay keeps some history, has room for a burst, and retries.
fn events(events: &EventsConfig) -> Result<(), ConfigError> {
    ensure(
        events.fleet_stream_len >= 100,
        "events.fleet_stream_len",
        "must be at least 100",
    )?;
    ensure(
        events.relay_buffer >= 1,
        "events.relay_buffer",
        "must be at least 1",
    )?;
    ensure(
        !events.relay_retry_max.is_zero(),
        "events.relay_retry_max",
        "must be positive",
    )
}

/// A heartbeat must be able to miss one beat without its instance being
/// taken for dead, so the TTL is at least two intervals; a zero interval
/// would panic the timer that drives it.
fn fleet(fleet: &FleetConfig) -> Result<(), ConfigError> {
    ensure(
        fleet.heartbeat_interval >= Duration::from_millis(50),
        "fleet.heartbeat_interval",
        "must be at least 50ms",
    )?;
    ensure(
        fleet.heartbeat_ttl >= fleet.heartbeat_interval * 2,
        "fleet.heartbeat_ttl",
        "must be at least twice fleet.heartbeat_interval",
    )
}

/// Every login limit allows something and its durations are positive.
fn throttle(throttle: &ThrottleConfig) -> Result<(), ConfigError> {
    let at_least_one = "must be at least 1";
    ensure(
        throttle.per_account >= 1,
        "auth.throttle.per_account",
        at_least_one,
    )?;
    ensure(
        throttle.per_address >= 1,
        "auth.throttle.per_address",
        at_least_one,
    )?;
    let positive = "must be positive";
    ensure(!throttle.window.is_zero(), "auth.throttle.window", positive)?;
    ensure(
        !throttle.base_delay.is_zero(),
        "auth.throttle.base_delay",
        positive,
    )?;
    ensure(
        throttle.max_delay >= throttle.base_delay,
        "auth.throttle.max_delay",
        "must be at least auth.throttle.base_delay",
    )?;
    // A pair's count must outlive its longest wait.
    ensure(
        throttle.forget_after >= throttle.max_delay,
        "auth.throttle.forget_after",
        "must be at least auth.throttle.max_delay",
    )
}

/// Every per-address window limit allows something in a positive window.
fn limits(limits: &LimitsConfig) -> Result<(), ConfigError> {
    for (count_key, window_key, limit) in [
        (
            "limits.signups.per_address",
            "limits.signups.window",
            limits.signups,
        ),
        (
            "limits.profile_lookups.per_address",
            "limits.profile_lookups.window",
            limits.profile_lookups,
        ),
    ] {
        ensure(limit.per_address >= 1, count_key, "must be at least 1")?;
        ensure(!limit.window.is_zero(), window_key, "must be positive")?;
    }
    let lookups = limits.profile_lookups;
    ensure(
        (1..=lookups.per_address).contains(&lookups.batch),
        "limits.profile_lookups.batch",
        "must be from 1 to limits.profile_lookups.per_address",
    )?;
    ensure(
        limits.signups.batch == 1,
        "limits.signups.batch",
        "sign-ups are counted one by one (1)",
    )?;
    Ok(())
}

/// Most entries of the in-process tier (a few hundred bytes each).
const MAX_LOCAL_ENTRIES: u64 = 10_000_000;

/// A load may store what it read only within half the fence's life, and a
/// load takes up to the call timeout (the source is called through an
/// actor): a shorter fence would make every slow load store nothing. The
/// tracking connection is checked at a positive interval.
fn cache(cache: &CacheConfig, call_timeout: Duration) -> Result<(), ConfigError> {
    ensure(
        !cache.ttl.is_zero() && !cache.negative_ttl.is_zero(),
        "cache.ttl",
        "both cache.ttl and cache.negative_ttl must be positive",
    )?;
    ensure(
        cache.local_entries <= MAX_LOCAL_ENTRIES,
        "cache.local_entries",
        &format!("must be at most {MAX_LOCAL_ENTRIES} (0 turns the tier off)"),
    )?;
    ensure(
        cache.fence_ttl > call_timeout * 2,
        "cache.fence_ttl",
        "must be more than twice actors.call_timeout",
    )?;
    ensure(
        !cache.tracking_check.is_zero(),
        "cache.tracking_check",
        "must be positive",
    )
}

/// The restart budget: restarts are counted in a sliding window, so a zero
/// window would never spend it (a crashing child restarted forever), and a
/// budget of none would end readiness at a child's first failure.
fn actors(actors: &ActorSettings) -> Result<(), ConfigError> {
    ensure(
        !actors.call_timeout.is_zero(),
        "actors.call_timeout",
        "must be positive",
    )?;
    ensure(
        actors.restart.max_restarts >= 1,
        "actors.restart.max_restarts",
        "must be at least 1",
    )?;
    ensure(
        !actors.restart.within.is_zero(),
        "actors.restart.within",
        "must be positive",
    )
}

fn fault_injection(enabled: bool, environment: Environment) -> Result<(), ConfigError> {
    ensure(
        !(enabled && environment == Environment::Production),
        "ops.fault_injection",
        "fault injection is refused under the production profile",
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `change` applied to valid settings: the key it is refused for.
    fn refused(change: impl FnOnce(&mut Settings)) -> String {
        let mut settings = valid();
        change(&mut settings);
        refused_key(settings.validate())
    }

    /// `change` applied to valid settings is still valid.
    fn accepted(change: impl FnOnce(&mut Settings)) {
        let mut settings = valid();
        change(&mut settings);
        if let Err(err) = settings.validate() {
            panic!("refused: {err}");
        }
    }

    #[test]
    fn the_repository_profiles_are_valid() {
        for profile in ["development", "test"] {
            settings(profile, &[]).unwrap_or_else(|err| panic!("{profile}: {err}"));
        }
        production(&[]).expect("production with real secrets");
    }

    #[test]
    fn server_limits() {
        assert_eq!(refused(|s| s.server.body_limit = 0), "server.body_limit");
        accepted(|s| s.server.body_limit = 1);
        for bad in [Duration::ZERO, MAX_HEADER_READ_TIMEOUT + MS] {
            assert_eq!(
                refused(|s| s.server.header_read_timeout = bad),
                "server.header_read_timeout"
            );
        }
        accepted(|s| s.server.header_read_timeout = MAX_HEADER_READ_TIMEOUT);
        assert_eq!(
            refused(|s| s.server.body_timeout = Duration::ZERO),
            "server.body_timeout"
        );
        assert_eq!(
            refused(|s| s.server.body_timeout = s.server.request_timeout),
            "server.body_timeout"
        );
        accepted(|s| s.server.body_timeout = s.server.request_timeout - MS);
        assert_eq!(
            refused(|s| s.server.max_connections = 0),
            "server.max_connections"
        );
        assert_eq!(
            refused(|s| s.server.max_connections = tokio::sync::Semaphore::MAX_PERMITS + 1),
            "server.max_connections"
        );
        accepted(|s| s.server.max_connections = 1);
        assert_eq!(
            refused(|s| s.server.max_connections_per_address = 0),
            "server.max_connections_per_address"
        );
        accepted(|s| s.server.max_connections_per_address = 1);
    }

    #[test]
    fn the_per_address_cap_comes_from_its_variable_and_defaults_above_the_benchmarks() {
        let defaults = settings("development", &[]).unwrap();
        assert!(defaults.server.max_connections_per_address > 64);
        let set = settings(
            "development",
            &[("TROUPE__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "7")],
        )
        .unwrap();
        assert_eq!(set.server.max_connections_per_address, 7);
    }

    #[test]
    fn redis_prefix_and_cluster_seeds() {
        for prefix in ["a{b:", "a}b:", "{t}:"] {
            assert_eq!(
                refused(|s| s.redis.key_prefix = prefix.into()),
                "redis.key_prefix"
            );
        }
        accepted(|s| s.redis.key_prefix = "troupe:".into());
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string().into()).collect();
        for bad in [
            &["not a url"][..],
            &["redis://127.0.0.1:7000", ""],
            &["http://h:1"],
        ] {
            assert_eq!(
                refused(|s| s.redis.cluster_urls = urls(bad)),
                "redis.cluster_urls"
            );
        }
        accepted(|s| s.redis.cluster_urls = urls(&["redis://127.0.0.1:7000", "redis://h:7001"]));
    }

    #[test]
    fn redis_cluster_urls_come_comma_separated_from_the_environment() {
        use secrecy::ExposeSecret;
        let env = [("REDIS_CLUSTER_URLS", "redis://a:7000, redis://b:7001")];
        let loaded = settings("test", &env).unwrap();
        let urls: Vec<&str> = loaded
            .redis
            .cluster_urls
            .iter()
            .map(|u| u.expose_secret())
            .collect();
        assert_eq!(urls, ["redis://a:7000", "redis://b:7001"]);
        assert!(loaded.redis.store().unwrap().is_cluster());
        let unset = settings_with_cluster("");
        assert!(unset.redis.cluster_urls.is_empty());
        assert!(!unset.redis.store().unwrap().is_cluster());
        assert_eq!(
            refused_key(settings(
                "test",
                &[("REDIS_CLUSTER_URLS", "redis://a:7000,,redis://b:7001")]
            )),
            "redis.cluster_urls"
        );
    }

    fn settings_with_cluster(urls: &str) -> Settings {
        settings("test", &[("REDIS_CLUSTER_URLS", urls)]).unwrap()
    }

    #[test]
    fn auth_cost_and_token_lifetimes() {
        for cost in [3, 32] {
            assert_eq!(refused(|s| s.auth.bcrypt_cost = cost), "auth.bcrypt_cost");
        }
        accepted(|s| s.auth.bcrypt_cost = 31);
        assert_eq!(
            refused(|s| s.auth.access_ttl = Duration::ZERO),
            "auth.refresh_ttl"
        );
        assert_eq!(
            refused(|s| s.auth.refresh_ttl = s.auth.access_ttl),
            "auth.refresh_ttl"
        );
        accepted(|s| s.auth.refresh_ttl = s.auth.access_ttl + MS);
    }

    #[test]
    fn the_refresh_reuse_grace_is_short_or_off() {
        assert_eq!(
            refused(|s| s.auth.refresh_reuse_grace = Duration::from_secs(60) + MS),
            "auth.refresh_reuse_grace"
        );
        accepted(|s| s.auth.refresh_reuse_grace = Duration::from_secs(60));
        accepted(|s| s.auth.refresh_reuse_grace = Duration::ZERO);
    }

    #[test]
    fn idempotency_keys_outlive_the_call_timeout_and_are_pruned() {
        assert_eq!(
            refused(|s| s.auth.idempotency.ttl = s.actors.call_timeout),
            "auth.idempotency.ttl"
        );
        accepted(|s| s.auth.idempotency.ttl = s.actors.call_timeout + MS);
        assert_eq!(
            refused(|s| s.auth.idempotency.prune_interval = Duration::ZERO),
            "auth.idempotency.prune_interval"
        );
    }

    #[test]
    fn fleet_heartbeats_tick_and_outlive_a_missed_beat() {
        assert_eq!(
            refused(|s| s.fleet.heartbeat_interval = Duration::ZERO),
            "fleet.heartbeat_interval"
        );
        assert_eq!(
            refused(|s| s.fleet.heartbeat_interval = 49 * MS),
            "fleet.heartbeat_interval"
        );
        accepted(|s| s.fleet.heartbeat_interval = 50 * MS);
        assert_eq!(
            refused(|s| s.fleet.heartbeat_ttl = s.fleet.heartbeat_interval * 2 - MS),
            "fleet.heartbeat_ttl"
        );
        accepted(|s| s.fleet.heartbeat_ttl = s.fleet.heartbeat_interval * 2);
    }

    #[test]
    fn queue_values_are_each_reported_under_their_own_key() {
        assert_eq!(refused(|s| s.queue.executors = 0), "queue.executors");
        assert_eq!(refused(|s| s.queue.max_attempts = 0), "queue.max_attempts");
        accepted(|s| s.queue.max_attempts = 1);
        assert_eq!(refused(|s| s.queue.lease = 299 * MS), "queue.lease");
        accepted(|s| s.queue.lease = 300 * MS);
        // (This one was once reported under `queue.lease`.)
        assert_eq!(
            refused(|s| s.queue.poll_interval = Duration::ZERO),
            "queue.poll_interval"
        );
        assert_eq!(
            refused(|s| s.queue.job_timeout = Duration::ZERO),
            "queue.job_timeout"
        );
        assert_eq!(
            refused(|s| s.queue.backoff_max = s.queue.backoff_base - MS),
            "queue.backoff_max"
        );
        accepted(|s| s.queue.backoff_max = s.queue.backoff_base);
        assert_eq!(
            refused(|s| s.queue.prune_interval = Duration::ZERO),
            "queue.prune_interval"
        );
        assert_eq!(refused(|s| s.queue.max_payload = 4), "queue.max_payload");
        accepted(|s| s.queue.max_payload = 5);
        accepted(|s| s.queue.max_payload = 8 * 1024 * 1024);
        assert_eq!(
            refused(|s| s.queue.max_payload = 8 * 1024 * 1024 + 1),
            "queue.max_payload"
        );
        assert_eq!(
            refused(|s| s.queue.priority_aging = Duration::ZERO),
            "queue.priority_aging"
        );
        accepted(|s| s.queue.priority_aging = MS);
        accepted(|s| s.queue.priority_aging = Duration::from_secs(86_400));
        assert_eq!(
            refused(|s| s.queue.priority_aging = Duration::from_secs(86_401)),
            "queue.priority_aging"
        );
    }

    #[test]
    fn a_schedule_with_a_bad_name_or_cron_pattern_is_refused_naming_it() {
        use troupe_actors::queue::schedule::ScheduleConfig;
        let schedule = |cron: &str| ScheduleConfig {
            cron: cron.into(),
            kind: "noop".into(),
            payload: Default::default(),
        };
        accepted(|s| {
            s.queue
                .schedules
                .insert("nightly".into(), schedule("0 30 3 * * *"));
        });
        let mut settings = valid();
        settings
            .queue
            .schedules
            .insert("nightly".into(), schedule("30 3 * *"));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("queue.schedules.nightly.cron"), "{err}");
        let mut settings = valid();
        settings
            .queue
            .schedules
            .insert("bad.name".into(), schedule("* * * * *"));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("queue.schedules.bad.name:"), "{err}");
        assert_eq!(refused_key(settings.validate()), "queue.schedules");
    }

    #[test]
    fn a_held_job_stays_held_at_least_as_long_as_a_call() {
        assert_eq!(
            refused(|s| s.queue.hold = s.actors.call_timeout - MS),
            "queue.hold"
        );
        accepted(|s| s.queue.hold = s.actors.call_timeout);
    }

    #[test]
    fn events_relay_values_are_each_reported_under_their_own_key() {
        assert_eq!(
            refused(|s| s.events.fleet_stream_len = 99),
            "events.fleet_stream_len"
        );
        accepted(|s| s.events.fleet_stream_len = 100);
        assert_eq!(
            refused(|s| s.events.relay_buffer = 0),
            "events.relay_buffer"
        );
        accepted(|s| s.events.relay_buffer = 1);
        assert_eq!(
            refused(|s| s.events.relay_retry_max = Duration::ZERO),
            "events.relay_retry_max"
        );
    }

    #[test]
    fn a_zero_poll_interval_is_reported_under_its_own_key_from_the_environment() {
        assert_eq!(
            refused_key(settings("test", &[("TROUPE__QUEUE__POLL_INTERVAL", "0s")])),
            "queue.poll_interval"
        );
        assert_eq!(
            refused_key(settings("test", &[("TROUPE__QUEUE__LEASE", "100ms")])),
            "queue.lease"
        );
    }

    #[test]
    fn login_throttle_allows_something_with_ordered_delays() {
        assert_eq!(
            refused(|s| s.auth.throttle.per_account = 0),
            "auth.throttle.per_account"
        );
        assert_eq!(
            refused(|s| s.auth.throttle.per_address = 0),
            "auth.throttle.per_address"
        );
        assert_eq!(
            refused(|s| s.auth.throttle.window = Duration::ZERO),
            "auth.throttle.window"
        );
        assert_eq!(
            refused(|s| s.auth.throttle.base_delay = Duration::ZERO),
            "auth.throttle.base_delay"
        );
        assert_eq!(
            refused(|s| s.auth.throttle.max_delay = s.auth.throttle.base_delay - MS),
            "auth.throttle.max_delay"
        );
        assert_eq!(
            refused(|s| s.auth.throttle.forget_after = s.auth.throttle.max_delay - MS),
            "auth.throttle.forget_after"
        );
        accepted(|s| {
            let t = &mut s.auth.throttle;
            (t.per_account, t.per_address) = (1, 1);
            t.max_delay = t.base_delay;
            t.forget_after = t.max_delay;
        });
    }

    #[test]
    fn window_limits_allow_something_in_a_positive_window() {
        assert_eq!(
            refused(|s| s.limits.signups.per_address = 0),
            "limits.signups.per_address"
        );
        assert_eq!(
            refused(|s| s.limits.signups.window = Duration::ZERO),
            "limits.signups.window"
        );
        assert_eq!(
            refused(|s| s.limits.profile_lookups.per_address = 0),
            "limits.profile_lookups.per_address"
        );
        assert_eq!(
            refused(|s| s.limits.profile_lookups.window = Duration::ZERO),
            "limits.profile_lookups.window"
        );
        accepted(|s| s.limits.profile_lookups.per_address = 1);
    }

    #[test]
    fn lookup_batches_fit_in_the_limit() {
        assert_eq!(
            refused(|s| s.limits.profile_lookups.batch = 0),
            "limits.profile_lookups.batch"
        );
        assert_eq!(
            refused(|s| {
                s.limits.profile_lookups.per_address = 10;
                s.limits.profile_lookups.batch = 11;
            }),
            "limits.profile_lookups.batch"
        );
        accepted(|s| {
            s.limits.profile_lookups.per_address = 10;
            s.limits.profile_lookups.batch = 10;
        });
        assert_eq!(
            refused(|s| s.limits.signups.batch = 2),
            "limits.signups.batch"
        );
    }

    #[test]
    fn cache_fences_outlive_two_call_timeouts_and_the_tier_is_bounded() {
        assert_eq!(
            refused(|s| s.cache.fence_ttl = s.actors.call_timeout * 2),
            "cache.fence_ttl"
        );
        accepted(|s| s.cache.fence_ttl = s.actors.call_timeout * 2 + MS);
        assert_eq!(
            refused(|s| s.cache.local_entries = MAX_LOCAL_ENTRIES + 1),
            "cache.local_entries"
        );
        accepted(|s| s.cache.local_entries = MAX_LOCAL_ENTRIES);
        accepted(|s| s.cache.local_entries = 0);
        assert_eq!(
            refused(|s| s.cache.tracking_check = Duration::ZERO),
            "cache.tracking_check"
        );
        assert_eq!(
            refused(|s| s.cache.negative_ttl = Duration::ZERO),
            "cache.ttl"
        );
        accepted(|s| s.cache.tracking_check = MS);
    }

    #[test]
    fn the_restart_budget_and_the_call_timeout() {
        assert_eq!(
            refused(|s| s.actors.restart.max_restarts = 0),
            "actors.restart.max_restarts"
        );
        accepted(|s| s.actors.restart.max_restarts = 1);
        assert_eq!(
            refused(|s| s.actors.restart.within = Duration::ZERO),
            "actors.restart.within"
        );
        accepted(|s| s.actors.restart.within = MS);
        assert_eq!(
            refused(|s| s.actors.call_timeout = Duration::ZERO),
            "actors.call_timeout"
        );
    }

    #[test]
    fn fault_injection_is_refused_under_production_only() {
        accepted(|s| s.ops.fault_injection = true);
        let mut settings = production(&[]).unwrap();
        settings.ops.fault_injection = true;
        assert_eq!(refused_key(settings.validate()), "ops.fault_injection");
    }
}

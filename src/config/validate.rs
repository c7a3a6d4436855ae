//! `Settings::problems`: the binary's own rules (the secrets, the server,
//! Redis, fault injection), each section's first broken rule reported with
//! its key (the load asks again for the next, see `load`), and the actor
//! side's every field error: `SystemConfig`'s [`Validate`], each type's
//! rules beside its definition in the actor crate — the same check
//! `ActorSystem::start` runs. Each rule is unit-tested beside it, with the
//! value just inside it accepted.

use std::time::Duration;

use troupe_actors::validate::Validate;

use super::{
    invalid, secrets, ConfigError, Environment, RedisSettings, ServerSettings, Settings,
    TelemetrySettings,
};

impl Settings {
    /// The first problem [`problems`](Self::problems) finds (the rules' unit tests).
    #[cfg(test)]
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// The binary's rules and the actor side's, in a fixed order (the load
    /// replaces the keys refused and asks again, for the next ones).
    pub(super) fn problems(&self) -> Vec<ConfigError> {
        let actor_side = self.system_config().validate().err().into_iter().flatten();
        let own = [
            server(&self.server),
            redis(&self.redis),
            fault_injection(self.ops.fault_injection, self.environment),
            telemetry(&self.telemetry),
            // A write waits up to a lease for an instance's acknowledgement:
            // its request must not time out first.
            ensure(
                self.cache.ack_bound() < self.server.request_timeout,
                "cache.lease",
                "one lease and its margin (an eighth) must be shorter than server.request_timeout",
            ),
        ];
        std::iter::once(secrets::validate(self))
            .filter_map(Result::err)
            .chain(actor_side.map(|field| invalid(field.key, field.problem)))
            .chain(own.into_iter().filter_map(Result::err))
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

/// Most spans an export queue may hold (each a few hundred bytes).
const MAX_EXPORT_QUEUE: usize = 1_000_000;

/// The exporter speaks OTLP over plain HTTP (no TLS client is built in: a
/// collector beside the service, or an agent, is the usual set-up).
fn telemetry(telemetry: &TelemetrySettings) -> Result<(), ConfigError> {
    if let Some(url) = telemetry.endpoint() {
        let host = url.strip_prefix("http://").unwrap_or_default();
        ensure(
            !host.is_empty() && !host.contains(char::is_whitespace),
            "telemetry.otlp_endpoint",
            "must be an http:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (https is not supported)",
        )?;
    }
    ensure(
        !telemetry.service_name.trim().is_empty(),
        "telemetry.service_name",
        "must not be empty",
    )?;
    ensure(
        (0.0..=1.0).contains(&telemetry.sample_ratio),
        "telemetry.sample_ratio",
        "must be between 0 and 1",
    )?;
    ensure(
        (1..=MAX_EXPORT_QUEUE).contains(&telemetry.export_queue),
        "telemetry.export_queue",
        "must be between 1 and 1000000",
    )?;
    ensure(
        !telemetry.export_timeout.is_zero(),
        "telemetry.export_timeout",
        "must be positive",
    )
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
    fn a_held_job_stays_held_at_least_as_long_as_a_call() {
        assert_eq!(
            refused(|s| s.queue.hold = s.actors.call_timeout - MS),
            "queue.hold"
        );
        accepted(|s| s.queue.hold = s.actors.call_timeout);
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
    fn cache_fences_outlive_two_call_timeouts() {
        assert_eq!(
            refused(|s| s.cache.fence_ttl = s.actors.call_timeout * 2),
            "cache.fence_ttl"
        );
        accepted(|s| s.cache.fence_ttl = s.actors.call_timeout * 2 + MS);
    }

    #[test]
    fn a_writes_wait_for_acknowledgements_fits_in_a_call_and_a_request() {
        // One lease and an eighth: 4 s → 4.5 s.
        let lease = Duration::from_secs(4);
        assert_eq!(
            refused(|s| {
                s.cache.lease = lease;
                s.actors.call_timeout = Duration::from_millis(4500);
            }),
            "cache.lease"
        );
        accepted(|s| {
            s.cache.lease = lease;
            s.actors.call_timeout = Duration::from_millis(4501);
        });
        let short_requests = |s: &mut Settings, request_ms| {
            s.cache.lease = Duration::from_secs(2); // 2.25 s with the margin
            s.server.body_timeout = Duration::from_secs(1);
            s.server.request_timeout = Duration::from_millis(request_ms);
        };
        assert_eq!(refused(|s| short_requests(s, 2250)), "cache.lease");
        accepted(|s| short_requests(s, 2251));
    }

    /// The actor side's rules (each type's, in the actor crate) come back
    /// all at once, each under its key in the settings.
    #[test]
    fn every_actor_side_field_error_is_reported_under_its_settings_key() {
        let mut settings = valid();
        settings.queue.executors = 0;
        settings.queue.poll_interval = Duration::ZERO;
        settings.auth.throttle.per_account = 0;
        settings.limits.max_addresses = 0;
        settings.cache.lease = Duration::ZERO;
        settings.actors.restart.within = Duration::ZERO;
        settings.events.relay_buffer = 0;
        settings.fleet.heartbeat_ttl = Duration::ZERO;
        let keys: Vec<String> = settings
            .problems()
            .into_iter()
            .map(|err| refused_key(Err::<(), _>(err)))
            .collect();
        assert_eq!(
            keys,
            [
                "auth.throttle.per_account",
                "queue.executors",
                "queue.poll_interval",
                "events.relay_buffer",
                "fleet.heartbeat_ttl",
                "limits.max_addresses",
                "cache.lease",
                "actors.restart.within",
            ]
        );
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
    fn telemetry_settings() {
        accepted(|s| s.telemetry.otlp_endpoint = Some("http://127.0.0.1:4318".into()));
        accepted(|s| s.telemetry.otlp_endpoint = Some(String::new()));
        for bad in ["https://collector:4318", "127.0.0.1:4318", "http://"] {
            assert_eq!(
                refused(|s| s.telemetry.otlp_endpoint = Some(bad.into())),
                "telemetry.otlp_endpoint",
                "{bad}"
            );
        }
        assert_eq!(
            refused(|s| s.telemetry.service_name = " ".into()),
            "telemetry.service_name"
        );
        accepted(|s| s.telemetry.sample_ratio = 0.0);
        accepted(|s| s.telemetry.sample_ratio = 1.0);
        assert_eq!(
            refused(|s| s.telemetry.sample_ratio = 1.01),
            "telemetry.sample_ratio"
        );
        assert_eq!(
            refused(|s| s.telemetry.sample_ratio = f64::NAN),
            "telemetry.sample_ratio"
        );
        accepted(|s| s.telemetry.export_queue = 1);
        assert_eq!(
            refused(|s| s.telemetry.export_queue = 0),
            "telemetry.export_queue"
        );
        assert_eq!(
            refused(|s| s.telemetry.export_timeout = Duration::ZERO),
            "telemetry.export_timeout"
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

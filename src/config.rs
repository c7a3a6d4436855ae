//! Typed settings: `config/default.toml`, overlaid by `config/<TROUPE_ENV>.toml`,
//! overlaid by environment variables.
//!
//! Besides the generic `TROUPE__SECTION__KEY` form, the conventional names
//! listed in [`ENV_OVERRIDES`] work. Secrets are [`SecretString`]s: their Debug
//! output is redacted, and they are exposed only where they are used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use troupe_actors::cache::CacheConfig;
use troupe_actors::limits::{LimitsConfig, WindowLimit};
use troupe_actors::mail::MailConfig;
use troupe_actors::queue::config::QueueConfig;
use troupe_actors::supervision::budget::RestartPolicy;
use troupe_actors::users::config::AuthConfig;

use crate::http::client_addr::{ProxyHeader, TrustedProxies};

/// Conventional environment variables and the setting each one overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("PORT", "server.port"),
    ("MONGODB_URI", "mongodb.uri"),
    ("MONGODB_DB", "mongodb.database"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_KEY_PREFIX", "redis.key_prefix"),
    ("JWT_ACCESS_SECRET", "auth.access_secret"),
    ("JWT_REFRESH_SECRET", "auth.refresh_secret"),
    ("LOG_DIR", "log.dir"),
    ("OPS_TOKEN", "ops.token"),
    ("METRICS_TOKEN", "ops.metrics_token"),
];

/// Marker carried by every development placeholder secret in `default.toml`.
const PLACEHOLDER_MARK: &str = "change-me";

/// The shortest secret the production profile accepts: 32 bytes, the
/// HS256 key size RFC 7518 §3.2 asks for, and enough for a bearer token.
pub const MIN_SECRET_BYTES: usize = 32;

/// A configuration that cannot be used. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration error: `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The deployment profile, from `TROUPE_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.unwrap_or("development") {
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(invalid(
                "TROUPE_ENV",
                format!("unknown profile {other:?}; use development, test or production"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(skip, default = "default_env")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub mongodb: MongoSettings,
    pub redis: RedisSettings,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub queue: QueueConfig,
    pub mail: MailConfig,
    pub actors: ActorSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
}

fn default_env() -> Environment {
    Environment::Development
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub body_limit: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest wait for a complete request head, from accept and, on a
    /// keep-alive connection, from the end of the previous response (hyper
    /// runs one timer for both, so this is also the keep-alive idle timeout).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest time from a request's head to the last byte of its body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Reverse proxies whose forwarding header names the client (see
    /// `http::client_addr`); empty: the TCP peer is always the client.
    #[serde(default)]
    pub trusted_proxies: TrustedProxies,
    /// The header those proxies write.
    #[serde(default)]
    pub proxy_header: ProxyHeader,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MongoSettings {
    /// May carry credentials, hence secret.
    pub uri: SecretString,
    pub database: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActorSettings {
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    pub restart: RestartPolicy,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OpsSettings {
    pub token: SecretString,
    /// Bearer token `/metrics` requires; unset, `/metrics` is public.
    #[serde(default)]
    pub metrics_token: Option<SecretString>,
    /// How long one rendering of `/metrics` is served to later scrapes
    /// (zero: render every scrape).
    #[serde(with = "humantime_serde")]
    pub metrics_reuse: Duration,
    pub fault_injection: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub level: String,
}

impl ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit == 0 {
            return Err(invalid("server.body_limit", "must be positive"));
        }
        // hyper adds it to the clock for every connection: keep it sane.
        if self.header_read_timeout.is_zero()
            || self.header_read_timeout > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "server.header_read_timeout",
                "must be positive and at most 1d",
            ));
        }
        // A slow body must get its 408 before the request as a whole gets 503.
        if self.body_timeout.is_zero() || self.body_timeout >= self.request_timeout {
            return Err(invalid(
                "server.body_timeout",
                "must be positive and shorter than server.request_timeout",
            ));
        }
        if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&self.max_connections) {
            return Err(invalid(
                "server.max_connections",
                format!("must be from 1 to {}", tokio::sync::Semaphore::MAX_PERMITS),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// What the actor system is configured with.
    pub fn system_config(&self) -> troupe_actors::system::SystemConfig {
        troupe_actors::system::SystemConfig {
            auth: self.auth.clone(),
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            limits: self.limits.clone(),
            mail: self.mail.clone(),
            restart: self.actors.restart,
            call_timeout: self.actors.call_timeout,
            shutdown_grace: self.server.shutdown_grace,
            store_timeout: self.mongodb.timeout,
        }
    }

    /// Load from `./config` (or `TROUPE_CONFIG_DIR`) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = env
            .get("TROUPE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir, &env)
    }

    /// Load from `dir` with `env` standing in for the process environment, so
    /// tests can load configurations side by side without touching globals.
    pub fn load_from(dir: &Path, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let environment = Environment::parse(env.get("TROUPE_ENV").map(String::as_str))?;
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")).required(true))
            .add_source(
                config::File::from(dir.join(format!("{}.toml", environment.as_str())))
                    .required(false),
            )
            .add_source(
                config::Environment::with_prefix("TROUPE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env.clone())),
            );
        for (var, key) in ENV_OVERRIDES {
            builder = builder.set_override_option(*key, env.get(*var).cloned())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// The secrets, with their keys and conventional variables, in the
    /// order they are checked.
    fn secrets(&self) -> Vec<(&'static str, &'static str, &SecretString)> {
        let mut secrets = vec![
            (
                "auth.access_secret",
                "JWT_ACCESS_SECRET",
                &self.auth.access_secret,
            ),
            (
                "auth.refresh_secret",
                "JWT_REFRESH_SECRET",
                &self.auth.refresh_secret,
            ),
            ("ops.token", "OPS_TOKEN", &self.ops.token),
        ];
        if let Some(token) = &self.ops.metrics_token {
            secrets.push(("ops.metrics_token", "METRICS_TOKEN", token));
        }
        secrets
    }

    /// The keys still holding a development placeholder (for a start-up
    /// warning: the keys only, never the values).
    pub fn placeholder_secrets(&self) -> Vec<&'static str> {
        self.secrets()
            .into_iter()
            .filter(|(_, _, secret)| secret.expose_secret().contains(PLACEHOLDER_MARK))
            .map(|(key, _, _)| key)
            .collect()
    }

    /// Every secret is set and used for one purpose only (in every profile);
    /// under production none is a placeholder or shorter than
    /// [`MIN_SECRET_BYTES`].
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let secrets = self.secrets();
        for (key, var, secret) in &secrets {
            if secret.expose_secret().is_empty() {
                return Err(invalid(key, format!("must not be empty; set {var}")));
            }
        }
        // One secret per purpose: an ops token equal to a JWT key would let
        // whoever holds one forge or use the other.
        for (i, (key, _, secret)) in secrets.iter().enumerate() {
            if let Some((other, _, _)) = secrets[..i]
                .iter()
                .find(|(_, _, earlier)| earlier.expose_secret() == secret.expose_secret())
            {
                return Err(invalid(key, format!("must differ from {other}")));
            }
        }
        if self.environment != Environment::Production {
            return Ok(());
        }
        for (key, var, secret) in &secrets {
            let value = secret.expose_secret();
            if value.trim().is_empty() || value.contains(PLACEHOLDER_MARK) {
                return Err(invalid(
                    key,
                    format!("the production profile refuses an empty or default secret; set {var}"),
                ));
            }
            if value.len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    key,
                    format!(
                        "the production profile needs at least {MIN_SECRET_BYTES} bytes; set {var} to a random value (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_secrets()?;
        let auth = &self.auth;
        if !(4..=31).contains(&auth.bcrypt_cost) {
            return Err(invalid("auth.bcrypt_cost", "must be between 4 and 31"));
        }
        if auth.access_ttl.is_zero() || auth.refresh_ttl <= auth.access_ttl {
            return Err(invalid(
                "auth.refresh_ttl",
                "both token lifetimes must be positive and refresh_ttl longer than access_ttl",
            ));
        }
        // A key must outlive the requests that use it (a repeat may take a
        // sign-up over once it is older than the call timeout).
        if auth.idempotency.ttl <= self.actors.call_timeout {
            return Err(invalid(
                "auth.idempotency.ttl",
                "must be longer than actors.call_timeout",
            ));
        }
        if auth.idempotency.prune_interval.is_zero() {
            return Err(invalid(
                "auth.idempotency.prune_interval",
                "must be positive",
            ));
        }
        if self.queue.executors == 0 {
            return Err(invalid("queue.executors", "must be at least 1"));
        }
        if self.queue.max_attempts < 1 {
            return Err(invalid("queue.max_attempts", "must be at least 1"));
        }
        if self.queue.lease < Duration::from_millis(300) {
            return Err(invalid("queue.lease", "must be at least 300ms"));
        }
        if self.queue.poll_interval.is_zero() {
            return Err(invalid("queue.poll_interval", "must be positive"));
        }
        self.server.validate()?;
        self.validate_limits()?;
        if self.environment == Environment::Production && self.ops.fault_injection {
            return Err(invalid(
                "ops.fault_injection",
                "fault injection is refused under the production profile",
            ));
        }
        Ok(())
    }

    /// Every abuse limit allows something and its durations are positive.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let throttle = &self.auth.throttle;
        for (key, ok, problem) in [
            (
                "auth.throttle.per_account",
                throttle.per_account >= 1,
                "must be at least 1",
            ),
            (
                "auth.throttle.per_address",
                throttle.per_address >= 1,
                "must be at least 1",
            ),
            (
                "auth.throttle.window",
                !throttle.window.is_zero(),
                "must be positive",
            ),
            (
                "auth.throttle.base_delay",
                !throttle.base_delay.is_zero(),
                "must be positive",
            ),
            (
                "auth.throttle.max_delay",
                throttle.max_delay >= throttle.base_delay,
                "must be at least auth.throttle.base_delay",
            ),
            (
                // A pair's count must outlive its longest wait.
                "auth.throttle.forget_after",
                throttle.forget_after >= throttle.max_delay,
                "must be at least auth.throttle.max_delay",
            ),
        ] {
            if !ok {
                return Err(invalid(key, problem));
            }
        }
        let windows: [(&'static str, &'static str, WindowLimit); 2] = [
            (
                "limits.signups.per_address",
                "limits.signups.window",
                self.limits.signups,
            ),
            (
                "limits.profile_lookups.per_address",
                "limits.profile_lookups.window",
                self.limits.profile_lookups,
            ),
        ];
        for (count_key, window_key, limit) in windows {
            if limit.per_address == 0 {
                return Err(invalid(count_key, "must be at least 1"));
            }
            if limit.window.is_zero() {
                return Err(invalid(window_key, "must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_ACCESS: &str = "0123456789abcdef0123456789abcdef-access";
    const LONG_REFRESH: &str = "0123456789abcdef0123456789abcdef-refresh";
    const LONG_OPS: &str = "0123456789abcdef0123456789abcdef-ops";

    /// The repository's configuration under `profile`, with `env` on top.
    fn settings(profile: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut vars = HashMap::from([("TROUPE_ENV".to_string(), profile.to_string())]);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::load_from(&dir, &vars)
    }

    fn production(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vec![
            ("JWT_ACCESS_SECRET", LONG_ACCESS),
            ("JWT_REFRESH_SECRET", LONG_REFRESH),
            ("OPS_TOKEN", LONG_OPS),
        ];
        all.extend_from_slice(env);
        settings("production", &all)
    }

    /// The key an invalid configuration is refused for.
    fn refused_key(result: Result<Settings, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn production_accepts_long_distinct_secrets() {
        let settings =
            production(&[("METRICS_TOKEN", "0123456789abcdef0123456789abcdef-m")]).expect("valid");
        assert!(settings.placeholder_secrets().is_empty());
    }

    #[test]
    fn production_refuses_each_secret_shorter_than_32_bytes() {
        let short = "s".repeat(MIN_SECRET_BYTES - 1);
        for (var, key) in [
            ("JWT_ACCESS_SECRET", "auth.access_secret"),
            ("JWT_REFRESH_SECRET", "auth.refresh_secret"),
            ("OPS_TOKEN", "ops.token"),
            ("METRICS_TOKEN", "ops.metrics_token"),
        ] {
            assert_eq!(refused_key(production(&[(var, &short)])), key);
        }
        // Exactly 32 bytes is enough.
        let exact = "e".repeat(MIN_SECRET_BYTES);
        production(&[("OPS_TOKEN", &exact)]).expect("32 bytes");
    }

    #[test]
    fn other_profiles_accept_short_secrets() {
        settings(
            "test",
            &[
                ("JWT_ACCESS_SECRET", "a"),
                ("JWT_REFRESH_SECRET", "r"),
                ("OPS_TOKEN", "o"),
            ],
        )
        .expect("short secrets outside production");
    }

    #[test]
    fn every_secret_must_differ_from_the_others_in_every_profile() {
        for profile in ["development", "test"] {
            let key = |env: &[(&str, &str)]| refused_key(settings(profile, env));
            assert_eq!(
                key(&[("JWT_ACCESS_SECRET", "x"), ("JWT_REFRESH_SECRET", "x")]),
                "auth.refresh_secret"
            );
            assert_eq!(
                key(&[("JWT_ACCESS_SECRET", "x"), ("OPS_TOKEN", "x")]),
                "ops.token"
            );
            assert_eq!(
                key(&[("JWT_REFRESH_SECRET", "x"), ("OPS_TOKEN", "x")]),
                "ops.token"
            );
            assert_eq!(
                key(&[("OPS_TOKEN", "x"), ("METRICS_TOKEN", "x")]),
                "ops.metrics_token"
            );
        }
        assert_eq!(
            refused_key(production(&[("OPS_TOKEN", LONG_ACCESS)])),
            "ops.token"
        );
    }

    #[test]
    fn an_empty_secret_is_refused_naming_its_key() {
        assert_eq!(
            refused_key(settings("test", &[("OPS_TOKEN", "")])),
            "ops.token"
        );
        assert_eq!(
            refused_key(settings("test", &[("METRICS_TOKEN", "")])),
            "ops.metrics_token"
        );
    }

    #[test]
    fn production_refuses_the_placeholders() {
        assert_eq!(
            refused_key(production(&[(
                "OPS_TOKEN",
                "a-very-long-but-still-placeholder-change-me"
            )])),
            "ops.token"
        );
    }

    #[test]
    fn placeholder_secrets_names_the_keys_still_at_their_defaults() {
        let defaults = settings("development", &[]).expect("development defaults");
        assert_eq!(
            defaults.placeholder_secrets(),
            ["auth.access_secret", "auth.refresh_secret", "ops.token"]
        );
        let one_set = settings("development", &[("OPS_TOKEN", "mine")]).unwrap();
        assert_eq!(
            one_set.placeholder_secrets(),
            ["auth.access_secret", "auth.refresh_secret"]
        );
    }

    #[test]
    fn a_zero_poll_interval_is_reported_under_its_own_key() {
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
    fn the_metrics_token_is_unset_by_default() {
        let defaults = settings("test", &[]).unwrap();
        assert!(defaults.ops.metrics_token.is_none());
    }
}

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
use troupe_actors::auth::AuthConfig;
use troupe_actors::cache::CacheConfig;
use troupe_actors::handlers::MailConfig;
use troupe_actors::jobs::QueueConfig;
use troupe_actors::limits::{LimitsConfig, WindowLimit};
use troupe_actors::supervisor::RestartPolicy;

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
];

/// Marker carried by every development placeholder secret in `default.toml`.
const PLACEHOLDER_MARK: &str = "change-me";

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

    fn validate(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let access = auth.access_secret.expose_secret();
        let refresh = auth.refresh_secret.expose_secret();
        if access.is_empty() {
            return Err(invalid("auth.access_secret", "must not be empty"));
        }
        if refresh.is_empty() {
            return Err(invalid("auth.refresh_secret", "must not be empty"));
        }
        if access == refresh {
            return Err(invalid(
                "auth.refresh_secret",
                "must differ from auth.access_secret",
            ));
        }
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
        if self.queue.lease < std::time::Duration::from_millis(300)
            || self.queue.poll_interval.is_zero()
        {
            return Err(invalid(
                "queue.lease",
                "must be at least 300ms, and poll_interval positive",
            ));
        }
        self.server.validate()?;
        self.validate_limits()?;
        if self.environment == Environment::Production {
            let placeholder = |s: &SecretString| {
                let s = s.expose_secret();
                s.trim().is_empty() || s.contains(PLACEHOLDER_MARK)
            };
            for (key, var, secret) in [
                (
                    "auth.access_secret",
                    "JWT_ACCESS_SECRET",
                    &auth.access_secret,
                ),
                (
                    "auth.refresh_secret",
                    "JWT_REFRESH_SECRET",
                    &auth.refresh_secret,
                ),
                ("ops.token", "OPS_TOKEN", &self.ops.token),
            ] {
                if placeholder(secret) {
                    return Err(invalid(
                        key,
                        format!(
                            "the production profile refuses an empty or default secret; set {var}"
                        ),
                    ));
                }
            }
            if self.ops.fault_injection {
                return Err(invalid(
                    "ops.fault_injection",
                    "fault injection is refused under the production profile",
                ));
            }
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

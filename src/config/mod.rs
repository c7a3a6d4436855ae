//! Typed settings: the built-in defaults, overlaid by the files of the
//! configuration directory, overlaid by environment variables ([`sources`]
//! has the order).
//!
//! The actor side's sections check themselves beside their definitions in
//! the actor crate (`troupe_actors::validate::Validate`, the same check
//! `ActorSystem::start` runs); the binary's own in [`validate`] (the
//! secrets in [`secrets`]); each refusal names its key. [`load`] collects
//! every problem of a load, each a one-line [`Problem`] naming the
//! variable, the key, an example and the fix.
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
use troupe_actors::events::config::EventsConfig;
use troupe_actors::fleet::config::FleetConfig;
use troupe_actors::limits::LimitsConfig;
use troupe_actors::mail::MailConfig;
use troupe_actors::queue::config::QueueConfig;
use troupe_actors::store::{RedisStore, StoreError};
use troupe_actors::supervision::budget::RestartPolicy;
use troupe_actors::users::config::AuthConfig;

use crate::proxies::{ProxyHeader, TrustedProxies};

mod load;
mod problem;
mod secrets;
mod sources;
mod validate;

pub use load::Checked;
pub use problem::Problem;
pub use secrets::MIN_SECRET_BYTES;
pub use sources::{troupe_var, Origin};

/// Conventional environment variables and the setting each one overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("PORT", "server.port"),
    ("MONGODB_URI", "mongodb.uri"),
    ("MONGODB_DB", "mongodb.database"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_KEY_PREFIX", "redis.key_prefix"),
    ("REDIS_CLUSTER_URLS", "redis.cluster_urls"),
    ("JWT_ACCESS_SECRET", "auth.access_secret"),
    ("JWT_REFRESH_SECRET", "auth.refresh_secret"),
    ("KEY_ENCRYPTION_SECRET", "auth.key_encryption_secret"),
    ("LOG_DIR", "log.dir"),
    ("OPS_TOKEN", "ops.token"),
    ("METRICS_TOKEN", "ops.metrics_token"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One validator's refusal, in its own words (a load turns it into a
    /// [`Problem`]).
    #[error("configuration error: `{key}`: {problem}")]
    Invalid { key: String, problem: String },
    /// What a load refused: one line per problem.
    #[error("{}", lines(.0))]
    Refused(Vec<Problem>),
}

/// `configuration error: <problem>`, one line each.
fn lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| format!("configuration error: {problem}"))
        .collect();
    lines.join("\n")
}

fn invalid(key: impl ToString, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
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
            other => Err(invalid("TROUPE_ENV", format!("unknown profile {other:?}"))),
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
    pub events: EventsConfig,
    pub fleet: FleetConfig,
    pub actors: ActorSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    /// This instance's id when the caller made it before the start (the
    /// binary: its traces' resource names it); `None`: made at start.
    #[serde(skip)]
    pub instance: Option<String>,
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
    /// Connections one address (not a trusted proxy) may hold open at once;
    /// more from it are closed at accept.
    pub max_connections_per_address: usize,
    /// Reverse proxies whose forwarding header names the client (see
    /// `proxies`); empty: the TCP peer is always the client.
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
    /// Seed nodes of a Redis Cluster (a list, or one comma-separated string
    /// as `REDIS_CLUSTER_URLS` gives it). Not empty: the cluster is used and
    /// `url` is not. Secret, like `url`.
    #[serde(default, deserialize_with = "url_list")]
    pub cluster_urls: Vec<SecretString>,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl RedisSettings {
    /// The store these settings describe: the cluster if `cluster_urls` is
    /// set, else the server at `url`. Connects on first use.
    pub fn store(&self) -> Result<RedisStore, StoreError> {
        if self.cluster_urls.is_empty() {
            RedisStore::new(self.url.expose_secret(), &self.key_prefix, self.timeout)
        } else {
            let urls = self.cluster_urls.iter().map(|url| url.expose_secret());
            RedisStore::cluster(urls, &self.key_prefix, self.timeout)
        }
    }
}

/// A list of URLs from a TOML array, or from one comma-separated string (an
/// environment variable). Entries are trimmed; an empty string is no list.
fn url_list<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        List(Vec<String>),
        Joined(String),
    }
    let urls = match Urls::deserialize(de)? {
        Urls::List(urls) => urls,
        Urls::Joined(joined) if joined.trim().is_empty() => vec![],
        Urls::Joined(joined) => joined.split(',').map(str::to_string).collect(),
    };
    Ok(urls
        .into_iter()
        .map(|url| SecretString::from(url.trim().to_string()))
        .collect())
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

/// Traces ([docs/observability.md]): where spans are exported and how many.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// OTLP/HTTP collector base URL (`http://host:4318`; spans are posted to
    /// `<it>/v1/traces`). `None` or empty: nothing is exported (span and
    /// trace ids are still made, for the log lines).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the traces' resource.
    pub service_name: String,
    /// Share of new traces sampled (0 to 1); a request that arrives with a
    /// `traceparent` follows its caller's decision (parent-based).
    pub sample_ratio: f64,
    /// Spans waiting for export at most; past it new spans are dropped and
    /// counted (`troupe_trace_spans_dropped_total`): a slow or unreachable
    /// collector never holds a request up.
    pub export_queue: usize,
    /// Longest wait for one export request to the collector.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl TelemetrySettings {
    /// What the subscriber exports, for the instance called `instance`.
    pub fn export(&self, instance: String) -> crate::telemetry::Export {
        crate::telemetry::Export {
            endpoint: self.endpoint().map(str::to_owned),
            service_name: self.service_name.clone(),
            instance,
            sample_ratio: self.sample_ratio,
            queue: self.export_queue,
            timeout: self.export_timeout,
        }
    }

    /// The collector's base URL, if export is on.
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(|url| url.trim_end_matches('/'))
            .filter(|url| !url.is_empty())
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
            events: self.events.clone(),
            fleet: self.fleet.clone(),
            restart: self.actors.restart,
            call_timeout: self.actors.call_timeout,
            shutdown_grace: self.server.shutdown_grace,
            store_timeout: self.mongodb.timeout,
            instance: self.instance.as_deref().map(Into::into),
        }
    }

    /// Load from the process environment and the configuration directory
    /// (`TROUPE_CONFIG_DIR`, else `./config`); the first problems refuse.
    pub fn load() -> Result<Self, ConfigError> {
        let checked = Self::check();
        checked
            .settings
            .ok_or(ConfigError::Refused(checked.problems))
    }

    /// [`load`](Self::load) with every problem and unknown key collected
    /// (`troupe config check`; the service warns about unknown keys).
    pub fn check() -> Checked {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = match env.get("TROUPE_CONFIG_DIR") {
            Some(dir) if !Path::new(dir).is_dir() => {
                return Checked {
                    settings: None,
                    problems: vec![Problem::whole(
                        "TROUPE_CONFIG_DIR",
                        Origin::Var("TROUPE_CONFIG_DIR".into()),
                        format!("{dir:?} is not a directory"),
                        "point TROUPE_CONFIG_DIR at a directory (holding default.toml and <profile>.toml), or unset it",
                    )],
                    unknown: vec![],
                };
            }
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from("config"),
        };
        Self::check_from(Some(dir), &env)
    }

    /// Load from `dir` with `env` standing in for the process environment, so
    /// tests can load configurations side by side without touching globals.
    /// Unknown keys are not refused here (see [`Checked::unknown`]).
    pub fn load_from(dir: &Path, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let checked = Self::check_from(Some(dir.to_path_buf()), env);
        checked
            .settings
            .ok_or(ConfigError::Refused(checked.problems))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Settings for the unit tests: the repository's configuration files.

    use super::*;

    pub const LONG_ACCESS: &str = "0123456789abcdef0123456789abcdef-access";
    pub const LONG_REFRESH: &str = "0123456789abcdef0123456789abcdef-refresh";
    pub const LONG_OPS: &str = "0123456789abcdef0123456789abcdef-ops";
    pub const LONG_KEK: &str = "0123456789abcdef0123456789abcdef-kek";

    /// The repository's configuration under `profile`, with `env` on top.
    pub fn settings(profile: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut vars = HashMap::from([("TROUPE_ENV".to_string(), profile.to_string())]);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::load_from(&dir, &vars)
    }

    /// The test profile as loaded: valid, for a rule's test to break.
    pub fn valid() -> Settings {
        settings("test", &[]).expect("the test profile is valid")
    }

    /// The production profile with long, distinct secrets, and `env` on top.
    pub fn production(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vec![
            ("JWT_ACCESS_SECRET", LONG_ACCESS),
            ("JWT_REFRESH_SECRET", LONG_REFRESH),
            ("OPS_TOKEN", LONG_OPS),
            ("KEY_ENCRYPTION_SECRET", LONG_KEK),
        ];
        all.extend_from_slice(env);
        settings("production", &all)
    }

    /// The key an invalid configuration is refused for (the first).
    pub fn refused_key<T>(result: Result<T, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key.to_string(),
            Err(ConfigError::Refused(problems)) => problems[0].key.clone(),
            Ok(_) => panic!("accepted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn the_metrics_token_is_unset_by_default() {
        let defaults = settings("test", &[]).unwrap();
        assert!(defaults.ops.metrics_token.is_none());
    }

    #[test]
    fn an_unknown_profile_is_refused_naming_troupe_env() {
        assert_eq!(refused_key(settings("staging", &[])), "TROUPE_ENV");
        for (name, profile) in [
            ("dev", Environment::Development),
            ("local", Environment::Development),
            ("prod", Environment::Production),
            ("test", Environment::Test),
        ] {
            assert_eq!(Environment::parse(Some(name)).unwrap(), profile);
        }
        assert_eq!(Environment::parse(None).unwrap(), Environment::Development);
    }
}

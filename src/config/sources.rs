//! Where settings come from, lowest precedence first:
//!
//! 1. the defaults built into the binary: the repository's
//!    `config/default.toml` and `config/<profile>.toml`, so the binary runs
//!    from any directory;
//! 2. `default.toml` and `<profile>.toml` in the configuration directory
//!    (`TROUPE_CONFIG_DIR`, else `./config`), each where present;
//! 3. `TROUPE__SECTION__KEY` variables;
//! 4. the conventional variables of [`ENV_OVERRIDES`](super::ENV_OVERRIDES).
//!
//! [`Sources::origin_of`] answers which of them set a key, so a problem can
//! name the variable or file to fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use config::builder::DefaultState;
use config::{Config, ConfigBuilder, File, FileFormat};

use super::{Environment, ENV_OVERRIDES};

/// The repository's configuration, built in.
const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");
const EMBEDDED_PROFILES: &[(&str, &str)] = &[
    ("test", include_str!("../../config/test.toml")),
    ("production", include_str!("../../config/production.toml")),
];

/// Settings that have no value by default (commented out in default.toml)
/// but are known: candidates for "did you mean".
const OPTIONAL_KEYS: &[&str] = &[
    "ops.metrics_token",
    "mail.smtp_url",
    "telemetry.otlp_endpoint",
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable (its name).
    Var(String),
    /// A file in the configuration directory (its path).
    File(String),
    /// The built-in defaults (or nowhere: a missing key).
    Defaults,
}

/// The configuration directory, the environment and the profile of one load.
pub(super) struct Sources<'a> {
    pub dir: Option<PathBuf>,
    pub env: &'a HashMap<String, String>,
    pub environment: Environment,
}

/// `auth.access_ttl` → `TROUPE__AUTH__ACCESS_TTL`.
pub fn troupe_var(key: &str) -> String {
    format!("TROUPE__{}", key.replace('.', "__").to_uppercase())
}

/// The built-in defaults alone (the development profile).
fn embedded() -> &'static Config {
    static DEFAULTS: OnceLock<Config> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULT, FileFormat::Toml))
            .build()
            .expect("the built-in config/default.toml parses (a unit test loads it)")
    })
}

/// `key`'s built-in default value, if it has one.
pub(super) fn default_value(key: &str) -> Option<config::Value> {
    embedded().get::<config::Value>(key).ok()
}

/// Every key the built-in defaults name, dotted, plus the optional ones.
pub(super) fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let root = embedded()
        .get::<config::Value>("")
        .or_else(|_| embedded().clone().try_deserialize::<config::Value>());
    if let Ok(root) = root {
        flatten("", root, &mut keys);
    }
    keys.extend(OPTIONAL_KEYS.iter().map(|key| key.to_string()));
    keys
}

/// The dotted keys of the leaves under `value` (a table's entries; any
/// other value is a leaf at `prefix`).
pub(super) fn flatten(prefix: &str, value: config::Value, into: &mut Vec<String>) {
    match value.kind {
        config::ValueKind::Table(table) => {
            for (name, value) in table {
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, value, into);
            }
        }
        _ => into.push(prefix.to_string()),
    }
}

impl Sources<'_> {
    /// The files of the configuration directory, lowest precedence first.
    fn files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else {
            return vec![];
        };
        vec![
            dir.join("default.toml"),
            dir.join(format!("{}.toml", self.environment.as_str())),
        ]
    }

    /// Every source, in precedence order (see the module header).
    pub fn builder(&self) -> Result<ConfigBuilder<DefaultState>, config::ConfigError> {
        let mut builder =
            Config::builder().add_source(File::from_str(EMBEDDED_DEFAULT, FileFormat::Toml));
        if let Some((_, profile)) = EMBEDDED_PROFILES
            .iter()
            .find(|(name, _)| *name == self.environment.as_str())
        {
            builder = builder.add_source(File::from_str(profile, FileFormat::Toml));
        }
        for file in self.files() {
            builder = builder.add_source(File::from(file).required(false));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("TROUPE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(self.env.clone())),
        );
        for (var, key) in ENV_OVERRIDES {
            builder = builder.set_override_option(*key, self.env.get(*var).cloned())?;
        }
        Ok(builder)
    }

    /// The variable that set `key`, else the last file that does, else the
    /// built-in defaults.
    pub fn origin_of(&self, key: &str) -> Origin {
        if !key.contains('.') {
            return Origin::Var(key.to_string()); // TROUPE_ENV, TROUPE_CONFIG_DIR
        }
        let conventional = ENV_OVERRIDES
            .iter()
            .find(|(var, k)| *k == key && self.env.contains_key(*var));
        if let Some((var, _)) = conventional {
            return Origin::Var(var.to_string());
        }
        let wanted = troupe_var(key);
        if let Some(var) = self
            .env
            .keys()
            .find(|var| var.eq_ignore_ascii_case(&wanted))
        {
            return Origin::Var(var.clone());
        }
        self.files()
            .into_iter()
            .rev()
            .find(|file| names(file, key))
            .map_or(Origin::Defaults, |file| {
                Origin::File(file.display().to_string())
            })
    }
}

/// Whether the TOML file at `path` (if any) sets `key`.
fn names(path: &Path, key: &str) -> bool {
    Config::builder()
        .add_source(File::from(path).required(false))
        .build()
        .is_ok_and(|config| config.get::<config::Value>(key).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_variables() {
        assert_eq!(troupe_var("auth.access_ttl"), "TROUPE__AUTH__ACCESS_TTL");
        assert_eq!(
            troupe_var("auth.throttle.per_account"),
            "TROUPE__AUTH__THROTTLE__PER_ACCOUNT"
        );
    }

    #[test]
    fn the_built_in_defaults_name_every_section() {
        let keys = known_keys();
        for key in ["server.port", "queue.poll_interval", "auth.throttle.window"] {
            assert!(keys.iter().any(|k| k == key), "{key} missing");
        }
        assert!(keys.iter().any(|k| k == "ops.metrics_token"));
    }

    #[test]
    fn origin_is_the_variable_then_the_file_then_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let file = |name: &str| Origin::File(dir.join(name).display().to_string());
        let origin = |env: &HashMap<String, String>, key: &str| {
            Sources {
                dir: Some(dir.clone()),
                env,
                environment: Environment::Test,
            }
            .origin_of(key)
        };
        let mut env = HashMap::new();
        assert_eq!(origin(&env, "queue.poll_interval"), file("test.toml"));
        assert_eq!(origin(&env, "queue.retention"), file("default.toml"));
        env.insert("TROUPE__QUEUE__POLL_INTERVAL".to_string(), "2s".to_string());
        env.insert("PORT".to_string(), "1".to_string());
        assert_eq!(
            origin(&env, "queue.poll_interval"),
            Origin::Var("TROUPE__QUEUE__POLL_INTERVAL".into())
        );
        assert_eq!(origin(&env, "server.port"), Origin::Var("PORT".into()));
        let bare = Sources {
            dir: None,
            env: &env,
            environment: Environment::Test,
        };
        assert_eq!(bare.origin_of("queue.retention"), Origin::Defaults);
    }
}

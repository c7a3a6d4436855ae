//! Loading with every problem collected, not just the first: `troupe config
//! check` lists them all, and the service refuses to start with the same list.
//!
//! A value that does not deserialize, or that a validator refuses, is
//! recorded and replaced by its built-in default, and the load is retried,
//! so one bad key does not hide the next. Keys that
//! no setting reads are collected apart ([`Checked::unknown`]): the service
//! warns about them (a fleet mid-deploy may carry keys only newer binaries
//! know), `config check` refuses them.

use std::collections::HashMap;
use std::path::PathBuf;

use super::problem::Problem;
use super::sources::{self, Origin, Sources};
use super::{ConfigError, Environment, Settings};

/// The outcome of one load: the settings if nothing was refused.
#[derive(Debug)]
pub struct Checked {
    pub settings: Option<Settings>,
    /// What was refused, each problem one line.
    pub problems: Vec<Problem>,
    /// Keys no setting reads, each with the nearest known key if any.
    pub unknown: Vec<Problem>,
}

/// More than the settings have keys: each pass replaces at least one key.
const MAX_PASSES: usize = 200;

/// How alike an unknown key must be to a known one to be suggested
/// (normalised Damerau-Levenshtein similarity, 0 to 1).
const SUGGEST_ABOVE: f64 = 0.6;

impl Settings {
    /// Load from `dir` (files optional) and `env`, collecting every problem.
    pub fn check_from(dir: Option<PathBuf>, env: &HashMap<String, String>) -> Checked {
        let mut problems = Vec::new();
        let environment = match Environment::parse(env.get("TROUPE_ENV").map(String::as_str)) {
            Ok(environment) => environment,
            Err(err) => {
                problems.push(problem_of(&bare(env), err));
                Environment::Development // (to report the rest)
            }
        };
        let sources = Sources {
            dir,
            env,
            environment,
        };
        // Each round replaces the keys refused so far by their defaults and
        // loads again: a section's next broken rule shows once the first is
        // out of the way. Ends when a round finds nothing new.
        let mut replaced: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        let mut loaded = None;
        for _ in 0..MAX_PASSES {
            let (settings, unknown_now) = deserialize(&sources, &mut replaced, &mut problems);
            unknown = unknown_now;
            let Some(mut settings) = settings else {
                break;
            };
            settings.environment = environment;
            let fresh: Vec<Problem> = settings
                .problems()
                .into_iter()
                .chain(store_urls(&settings))
                .chain(actor_side(&settings))
                .map(|err| problem_of(&sources, err))
                .filter(|new| problems.iter().all(|old| old.key != new.key))
                .collect();
            let replaceable: Vec<String> = fresh
                .iter()
                .map(|problem| problem.key.clone())
                .filter(|key| {
                    sources::default_value(key)
                        .is_some_and(|value| !matches!(value.kind, config::ValueKind::Table(_)))
                })
                .collect();
            let done = fresh.is_empty() || replaceable.is_empty();
            problems.extend(fresh);
            replaced.extend(replaceable);
            loaded = Some(settings);
            if done {
                break;
            }
        }
        let settings = loaded.filter(|_| problems.is_empty());
        Checked {
            settings,
            problems,
            unknown,
        }
    }
}

/// Sources with no files, for problems found before the profile is known.
fn bare(env: &HashMap<String, String>) -> Sources<'_> {
    Sources {
        dir: None,
        env,
        environment: Environment::Development,
    }
}

/// Deserialize with the `replaced` keys at their defaults, adding each bad
/// value's key to them until it succeeds (or a problem has no key to
/// replace). The unknown keys of the last pass.
fn deserialize(
    sources: &Sources,
    replaced: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) -> (Option<Settings>, Vec<Problem>) {
    for _ in 0..MAX_PASSES {
        let built = sources.builder().and_then(|mut builder| {
            for key in replaced.iter() {
                let default = sources::default_value(key)
                    .unwrap_or_else(|| config::Value::new(None, config::ValueKind::Nil));
                builder = builder.set_override(key.as_str(), default)?;
            }
            builder.build()
        });
        let config = match built {
            Ok(config) => config,
            Err(err) => {
                problems.push(file_problem(err));
                return (None, vec![]);
            }
        };
        let mut ignored = Vec::new();
        let result: Result<Settings, _> =
            serde_ignored::deserialize(config.clone(), |path| ignored.push(path.to_string()));
        match result {
            Ok(settings) => return (Some(settings), unknown_keys(sources, &config, ignored)),
            Err(err) => {
                let key = key_of(&err);
                let raw = key.as_deref().and_then(|key| config.get_string(key).ok());
                let (problem, expected) = describe(&err);
                match key {
                    Some(key) if !replaced.contains(&key) => {
                        problems.push(Problem::bad_value(sources, &key, raw, expected, problem));
                        replaced.push(key);
                    }
                    _ => {
                        problems.push(Problem::whole(
                            key.as_deref().unwrap_or("configuration"),
                            Origin::Defaults,
                            problem,
                            "see config/default.toml for every setting",
                        ));
                        return (None, vec![]);
                    }
                }
            }
        }
    }
    (None, vec![])
}

/// The key a deserialization error is about.
fn key_of(err: &config::ConfigError) -> Option<String> {
    match err {
        config::ConfigError::Type { key, .. } | config::ConfigError::At { key, .. } => key.clone(),
        config::ConfigError::NotFound(key) => Some(key.clone()),
        _ => None,
    }
}

/// The error in its own words without the key (named apart), and serde's
/// "expected" when it said one.
fn describe(err: &config::ConfigError) -> (String, Option<&'static str>) {
    match err {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => (format!("{unexpected} is not {expected}"), Some(expected)),
        config::ConfigError::At { error, .. } => describe(error),
        config::ConfigError::NotFound(_) => ("is missing".into(), None),
        other => (other.to_string(), None),
    }
}

/// A file that cannot be parsed, named with its path.
fn file_problem(err: config::ConfigError) -> Problem {
    match err {
        config::ConfigError::FileParse { uri, cause } => Problem::whole(
            "file",
            Origin::File(uri.unwrap_or_else(|| "a configuration file".into())),
            format!("is not valid TOML: {cause}"),
            "correct the file's syntax (see config/default.toml)",
        ),
        other => Problem::whole(
            "configuration",
            Origin::Defaults,
            other.to_string(),
            "check TROUPE_CONFIG_DIR and its files",
        ),
    }
}

/// Every leaf key under the paths serde ignored, each with the nearest
/// known key. (serde names the outermost ignored table: `queu` for
/// `TROUPE__QUEU__POLL_INTERVAL`; its leaves are what the user wrote.)
fn unknown_keys(sources: &Sources, config: &config::Config, ignored: Vec<String>) -> Vec<Problem> {
    let known = sources::known_keys();
    let mut leaves = Vec::new();
    for path in ignored {
        match config.get::<config::Value>(&path) {
            Ok(value) => sources::flatten(&path, value, &mut leaves),
            Err(_) => leaves.push(path),
        }
    }
    leaves.sort();
    leaves.dedup();
    leaves
        .iter()
        .map(|key| Problem::unknown(sources, key, nearest(key, &known)))
        .collect()
}

/// The known key most like `key`, if alike enough.
pub(super) fn nearest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| {
            (
                strsim::normalized_damerau_levenshtein(key, candidate),
                candidate,
            )
        })
        .filter(|(score, _)| *score > SUGGEST_ABOVE)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.as_str())
}

/// The stores' URLs parse (without contacting either): a bad one is a
/// configuration error naming its variable, not a driver's dump at start.
/// The drivers' own words are left out: they may quote the URL, password
/// and all.
fn store_urls(settings: &Settings) -> Vec<ConfigError> {
    use redis::IntoConnectionInfo;
    use secrecy::ExposeSecret;
    let mut problems = Vec::new();
    let mongo = settings.mongodb.uri.expose_secret();
    if mongodb::options::ConnectionString::parse(mongo).is_err() {
        problems.push(super::invalid(
            "mongodb.uri",
            "is not a MongoDB connection string (mongodb:// or mongodb+srv://, host, optional port, credentials and options)",
        ));
    }
    // (With cluster seeds `url` is not used; `validate` checks the seeds.)
    let redis = settings.redis.url.expose_secret();
    let scheme = ["redis://", "rediss://", "unix://", "redis+unix://"];
    let usable =
        scheme.iter().any(|s| redis.starts_with(s)) && redis.into_connection_info().is_ok();
    if settings.redis.cluster_urls.is_empty() && !usable {
        problems.push(super::invalid(
            "redis.url",
            "is not a Redis URL (redis://[user:password@]host[:port][/db])",
        ));
    }
    problems
}

/// What the actor system refuses at start that needs no server beyond the
/// configuration's rules (`Settings::problems` has those): each periodic
/// job's type.
fn actor_side(settings: &Settings) -> Vec<ConfigError> {
    use troupe_actors::system::{check_config, StartError, SERVICE_JOB_TYPES};
    check_config(&settings.system_config())
        .into_iter()
        .map(|err| match err {
            StartError::ScheduleType { name, kind } => super::invalid(
                "queue.schedules",
                format!(
                    "queue.schedules.{name}.type: no handler runs jobs of type {kind:?} (known: {})",
                    SERVICE_JOB_TYPES.join(", ")
                ),
            ),
            other => super::invalid("actors", other.to_string()),
        })
        .collect()
}

/// A validator's or the profile's refusal as a [`Problem`].
fn problem_of(sources: &Sources, err: ConfigError) -> Problem {
    match err {
        ConfigError::Invalid { key, problem } => Problem::invalid(sources, &key, problem),
        ConfigError::Refused(problems) => problems.into_iter().next().unwrap_or_else(|| {
            Problem::whole(
                "configuration",
                Origin::Defaults,
                "refused".into(),
                "see above",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn repo_config() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    /// The test profile from the repository's files with `vars` on top.
    fn check(vars: &[(&str, &str)]) -> Checked {
        check_in(Some(repo_config()), vars)
    }

    fn check_in(dir: Option<PathBuf>, vars: &[(&str, &str)]) -> Checked {
        let mut env = HashMap::from([("TROUPE_ENV".to_string(), "test".to_string())]);
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::check_from(dir, &env)
    }

    /// The one problem `vars` cause, as printed.
    fn line(vars: &[(&str, &str)]) -> String {
        let checked = check(vars);
        assert!(checked.settings.is_none(), "accepted: {vars:?}");
        assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
        let line = checked.problems[0].to_string();
        assert!(!line.contains('\n'), "{line}");
        line
    }

    fn contains_all(line: &str, parts: &[&str]) {
        for part in parts {
            assert!(line.contains(part), "{part:?} missing from: {line}");
        }
    }

    #[test]
    fn a_duration_without_unit_names_the_variable_the_key_an_example_and_the_fix() {
        let line = line(&[("TROUPE__AUTH__ACCESS_TTL", "15")]);
        contains_all(
            &line,
            &[
                "TROUPE__AUTH__ACCESS_TTL (`auth.access_ttl`)",
                "\"15\" is not a duration",
                "e.g. 15m",
                "fix: set TROUPE__AUTH__ACCESS_TTL=15m",
            ],
        );
    }

    #[test]
    fn a_port_out_of_range_is_explained_in_words_not_serdes() {
        let line = line(&[("PORT", "70000")]);
        contains_all(
            &line,
            &[
                "PORT (`server.port`)",
                "\"70000\"",
                "from 0 to 65535",
                "e.g. 3000",
                "fix: set PORT=3000",
            ],
        );
        assert!(!line.contains("16 bit") && !line.contains("u16"), "{line}");
    }

    #[test]
    fn a_bad_mongodb_uri_names_the_variable_and_never_echoes_it() {
        let line = line(&[("MONGODB_URI", "mongo://admin:hunter2@db")]);
        contains_all(
            &line,
            &[
                "MONGODB_URI (`mongodb.uri`)",
                "not a MongoDB connection string",
                "e.g. mongodb://127.0.0.1:27017",
                "fix: set MONGODB_URI=",
            ],
        );
        assert!(!line.contains("hunter2"), "{line}");
    }

    #[test]
    fn a_bad_redis_url_names_the_variable_unless_cluster_seeds_replace_it() {
        let line = line(&[("REDIS_URL", "http://user:hunter2@cache")]);
        contains_all(
            &line,
            &["REDIS_URL (`redis.url`)", "e.g. redis://127.0.0.1:6379"],
        );
        assert!(!line.contains("hunter2"), "{line}");
        let seeds = [("REDIS_URL", ""), ("REDIS_CLUSTER_URLS", "redis://a:7000")];
        assert!(check(&seeds).settings.is_some());
    }

    #[test]
    fn a_value_from_a_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("troupe-cli-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("test.toml"), "[queue]\npoll_interval = \"0s\"\n").unwrap();
        let checked = check_in(Some(dir.clone()), &[]);
        let line = checked.problems[0].to_string();
        let file = dir.join("test.toml").display().to_string();
        contains_all(
            &line,
            &[
                &format!("`queue.poll_interval` in {file}"),
                "must be positive",
                &format!("fix: set poll_interval = \"1s\" under [queue] in {file}"),
            ],
        );
        std::fs::write(dir.join("test.toml"), "[queue\n").unwrap();
        let line = check_in(Some(dir.clone()), &[]).problems[0].to_string();
        contains_all(&line, &[&file, "not valid TOML"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_bad_key_is_listed_not_just_the_first() {
        let checked = check(&[
            ("PORT", "70000"),
            ("TROUPE__AUTH__ACCESS_TTL", "15"),
            ("TROUPE__OPS__FAULT_INJECTION", "maybe"),
            ("TROUPE__QUEUE__EXECUTORS", "0"),
            ("TROUPE__QUEUE__POLL_INTERVAL", "0s"), // (the same section)
            ("TROUPE__QUEUE__BACKOFF_MAX", "1ms"),
            ("TROUPE__SERVER__BODY_LIMIT", "0"),
            ("TROUPE__SERVER__MAX_CONNECTIONS", "0"),
            ("TROUPE__MAIL__FROM", "not a mailbox"),
        ]);
        assert!(checked.settings.is_none());
        let keys: Vec<&str> = checked.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "server.port",
            "auth.access_ttl",
            "ops.fault_injection",
            "queue.executors",
            "queue.poll_interval",
            "queue.backoff_max",
            "server.body_limit",
            "server.max_connections",
            "mail.from",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
        assert_eq!(keys.len(), 9, "{keys:?}"); // (each once)
    }

    #[test]
    fn a_misspelt_key_is_reported_with_the_nearest_known_key_and_still_loads() {
        let checked = check(&[("TROUPE__QUEU__POLL_INTERVAL", "1s")]);
        assert!(checked.settings.is_some(), "{:?}", checked.problems);
        assert_eq!(checked.unknown.len(), 1, "{:?}", checked.unknown);
        let line = checked.unknown[0].to_string();
        contains_all(
            &line,
            &[
                "TROUPE__QUEU__POLL_INTERVAL (`queu.poll_interval`)",
                "no such setting",
                "did you mean TROUPE__QUEUE__POLL_INTERVAL?",
                "fix: rename it to TROUPE__QUEUE__POLL_INTERVAL",
            ],
        );
        assert!(check(&[]).unknown.is_empty());
    }

    /// A key the limits do not read (counting in batches is no setting) is
    /// reported, not silently taken.
    #[test]
    fn a_lookup_batch_is_reported_as_no_such_setting() {
        let checked = check(&[("TROUPE__LIMITS__PROFILE_LOOKUPS__BATCH", "10")]);
        assert!(checked.settings.is_some(), "{:?}", checked.problems);
        assert_eq!(checked.unknown.len(), 1, "{:?}", checked.unknown);
        contains_all(
            &checked.unknown[0].to_string(),
            &["`limits.profile_lookups.batch`", "no such setting"],
        );
    }

    #[test]
    fn nearest_suggests_only_a_close_key() {
        let known = sources::known_keys();
        assert_eq!(
            nearest("queu.poll_interval", &known),
            Some("queue.poll_interval")
        );
        assert_eq!(nearest("server.prot", &known), Some("server.port"));
        assert_eq!(nearest("zzzzzz", &known), None);
    }

    #[test]
    fn a_schedule_of_an_unknown_type_is_refused_without_starting_anything() {
        let checked = check(&[
            ("TROUPE__QUEUE__SCHEDULES__NIGHTLY__CRON", "@daily"),
            ("TROUPE__QUEUE__SCHEDULES__NIGHTLY__TYPE", "report.build"),
        ]);
        let line = checked.problems[0].to_string();
        contains_all(
            &line,
            &[
                "queue.schedules.nightly.type",
                "report.build",
                "user.created",
            ],
        );
    }

    #[test]
    fn a_concurrency_limit_loads_from_the_environment_and_out_of_range_is_refused() {
        let checked = check(&[
            ("TROUPE__QUEUE__LIMITS__NOOP__CONCURRENCY", "3"),
            ("TROUPE__QUEUE__LIMITS__NOOP__PARTITION_BY", "tenant"),
        ]);
        let settings = checked.settings.expect("a valid limit loads");
        let limit = &settings.queue.limits["noop"];
        assert_eq!(limit.concurrency, Some(3));
        assert_eq!(limit.partition_by.as_deref(), Some("tenant"));

        let checked = check(&[("TROUPE__QUEUE__LIMITS__NOOP__CONCURRENCY", "0")]);
        let line = checked.problems[0].to_string();
        contains_all(
            &line,
            &[
                "queue.limits",
                "noop",
                "concurrency must be between 1 and 1000",
            ],
        );
    }

    #[test]
    fn the_built_in_defaults_load_without_any_configuration_directory() {
        let missing = std::env::temp_dir().join("troupe-cli-no-such-dir");
        for dir in [None, Some(missing)] {
            let checked = check_in(dir, &[]);
            let settings = checked.settings.expect("the built-in defaults load");
            // The test profile's own values are built in too.
            assert_eq!(settings.auth.bcrypt_cost, 4);
            assert_eq!(settings.server.port, 3000);
            assert!(checked.unknown.is_empty());
        }
    }

    #[test]
    fn an_unknown_profile_is_reported_with_the_rest() {
        let checked = check(&[("TROUPE_ENV", "staging"), ("PORT", "x")]);
        let keys: Vec<&str> = checked.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["TROUPE_ENV", "server.port"]);
        contains_all(
            &checked.problems[0].to_string(),
            &[
                "TROUPE_ENV: unknown profile \"staging\"",
                "fix: set TROUPE_ENV=production",
            ],
        );
    }
}

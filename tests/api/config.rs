use std::collections::HashMap;
use std::process::Command;

use secrecy::ExposeSecret;
use troupe::config::{Environment, Settings};

use crate::helpers::{config_dir, free_port, test_env};

fn load(extra: &[(&str, &str)]) -> Result<Settings, String> {
    let mut env = test_env();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Settings::load_from(&config_dir(), &env).map_err(|e| e.to_string())
}

#[test]
fn defaults_and_profile_overlay_load() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.environment, Environment::Test);
    assert_eq!(settings.auth.access_ttl.as_secs(), 15 * 60);
    assert_eq!(settings.auth.refresh_ttl.as_secs(), 7 * 24 * 3600);
    // test.toml overlays default.toml
    assert_eq!(settings.auth.bcrypt_cost, 4);
    assert!(settings.ops.fault_injection);
}

#[test]
fn conventional_environment_variables_override_files() {
    let settings = load(&[
        ("PORT", "4321"),
        ("MONGODB_URI", "mongodb://db.example:27017"),
        ("MONGODB_DB", "elsewhere"),
        ("REDIS_URL", "redis://cache.example:6380"),
        ("REDIS_KEY_PREFIX", "x:"),
        ("JWT_ACCESS_SECRET", "a-secret"),
        ("JWT_REFRESH_SECRET", "r-secret"),
        ("LOG_DIR", "/var/log/troupe"),
        ("OPS_TOKEN", "ops-secret"),
        ("TROUPE__SERVER__REQUEST_TIMEOUT", "3s"),
        // Must stay below the request timeout (see below).
        ("TROUPE__SERVER__BODY_TIMEOUT", "2s"),
    ])
    .unwrap();
    assert_eq!(settings.server.port, 4321);
    assert_eq!(
        settings.mongodb.uri.expose_secret(),
        "mongodb://db.example:27017"
    );
    assert_eq!(settings.mongodb.database, "elsewhere");
    assert_eq!(
        settings.redis.url.expose_secret(),
        "redis://cache.example:6380"
    );
    assert_eq!(settings.redis.key_prefix, "x:");
    assert_eq!(settings.auth.access_secret.expose_secret(), "a-secret");
    assert_eq!(settings.auth.refresh_secret.expose_secret(), "r-secret");
    assert_eq!(settings.log.dir.to_str(), Some("/var/log/troupe"));
    assert_eq!(settings.ops.token.expose_secret(), "ops-secret");
    assert_eq!(settings.server.request_timeout.as_secs(), 3);
    assert_eq!(settings.server.body_timeout.as_secs(), 2);
}

#[test]
fn connection_limits_are_checked_by_name() {
    let defaults = load(&[]).unwrap().server;
    assert!(defaults.body_timeout < defaults.request_timeout);
    assert!(!defaults.header_read_timeout.is_zero() && defaults.max_connections > 0);
    for (var, value, key) in [
        // A slow body would get 503 from the request timeout, not 408.
        ("TROUPE__SERVER__BODY_TIMEOUT", "10s", "server.body_timeout"),
        ("TROUPE__SERVER__BODY_TIMEOUT", "0s", "server.body_timeout"),
        (
            "TROUPE__SERVER__HEADER_READ_TIMEOUT",
            "0s",
            "server.header_read_timeout",
        ),
        // hyper adds it to the clock on every connection (overflow: panic).
        (
            "TROUPE__SERVER__HEADER_READ_TIMEOUT",
            "2d",
            "server.header_read_timeout",
        ),
        (
            "TROUPE__SERVER__MAX_CONNECTIONS",
            "18446744073709551615",
            "server.max_connections",
        ),
        (
            "TROUPE__SERVER__MAX_CONNECTIONS",
            "0",
            "server.max_connections",
        ),
    ] {
        let err = load(&[(var, value)]).unwrap_err();
        assert!(err.contains(&format!("`{key}`")), "{var}={value}: {err}");
    }
}

#[test]
fn a_bad_value_names_the_key_and_the_problem() {
    let err = load(&[("PORT", "eighty")]).unwrap_err();
    assert!(err.contains("server.port"), "{err}");

    let err = load(&[("TROUPE__AUTH__ACCESS_TTL", "fifteen minutes")]).unwrap_err();
    assert!(
        err.contains("auth.access_ttl") && err.contains("fifteen minutes"),
        "{err}"
    );

    let err = load(&[
        ("JWT_REFRESH_SECRET", "same"),
        ("JWT_ACCESS_SECRET", "same"),
    ])
    .unwrap_err();
    assert!(
        err.contains("auth.refresh_secret") && err.contains("differ"),
        "{err}"
    );

    let err = load(&[("TROUPE_ENV", "staging")]).unwrap_err();
    assert!(
        err.contains("TROUPE_ENV") && err.contains("staging"),
        "{err}"
    );
}

#[test]
fn the_binary_exits_non_zero_on_a_bad_value() {
    let output = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE_ENV", "test")
        .env("PORT", "99999")
        .output()
        .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.port"), "stderr: {stderr}");
}

#[test]
fn production_refuses_default_or_empty_secrets() {
    let prod = |extra: &[(&str, &str)]| {
        let mut env: HashMap<String, String> =
            HashMap::from([("TROUPE_ENV".into(), "production".into())]);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Settings::load_from(&config_dir(), &env).map_err(|e| e.to_string())
    };
    let err = prod(&[]).unwrap_err();
    assert!(
        err.contains("auth.access_secret") && err.contains("JWT_ACCESS_SECRET"),
        "{err}"
    );

    let err = prod(&[
        (
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        ),
        ("JWT_REFRESH_SECRET", ""),
    ])
    .unwrap_err();
    assert!(err.contains("auth.refresh_secret"), "{err}");

    let err = prod(&[
        (
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        ),
        (
            "JWT_REFRESH_SECRET",
            "a-long-random-refresh-secret-0123456789",
        ),
    ])
    .unwrap_err();
    assert!(
        err.contains("auth.key_encryption_secret") && err.contains("KEY_ENCRYPTION_SECRET"),
        "{err}"
    );

    let err = prod(&[
        (
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        ),
        (
            "JWT_REFRESH_SECRET",
            "a-long-random-refresh-secret-0123456789",
        ),
        (
            "KEY_ENCRYPTION_SECRET",
            "a-long-random-key-encryption-secret-0123",
        ),
    ])
    .unwrap_err();
    assert!(
        err.contains("ops.token") && err.contains("OPS_TOKEN"),
        "{err}"
    );

    let ok = prod(&[
        (
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        ),
        (
            "JWT_REFRESH_SECRET",
            "a-long-random-refresh-secret-0123456789",
        ),
        ("OPS_TOKEN", "a-long-random-ops-token-0123456789abcdef"),
        (
            "KEY_ENCRYPTION_SECRET",
            "a-long-random-key-encryption-secret-0123",
        ),
    ])
    .unwrap();
    assert_eq!(ok.environment, Environment::Production);
    assert!(!ok.ops.fault_injection);

    let err = prod(&[
        (
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        ),
        (
            "JWT_REFRESH_SECRET",
            "a-long-random-refresh-secret-0123456789",
        ),
        ("OPS_TOKEN", "a-long-random-ops-token-0123456789abcdef"),
        (
            "KEY_ENCRYPTION_SECRET",
            "a-long-random-key-encryption-secret-0123",
        ),
        ("TROUPE__OPS__FAULT_INJECTION", "true"),
    ])
    .unwrap_err();
    assert!(err.contains("ops.fault_injection"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let settings = load(&[
        ("JWT_ACCESS_SECRET", "very-secret-access"),
        ("JWT_REFRESH_SECRET", "very-secret-refresh"),
        ("OPS_TOKEN", "very-secret-ops"),
        ("KEY_ENCRYPTION_SECRET", "very-secret-kek"),
        (
            "MONGODB_URI",
            "mongodb://user:very-secret-password@db:27017",
        ),
    ])
    .unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(debug.contains("REDACTED"));
}

#[test]
fn abuse_limits_load_from_the_files_and_the_environment() {
    // Production defaults (development profile: default.toml alone).
    let mut env = test_env();
    env.remove("TROUPE_ENV");
    let defaults = Settings::load_from(&config_dir(), &env).unwrap();
    let t = &defaults.auth.throttle;
    assert_eq!(
        (t.free_failures, t.per_account, t.per_address),
        (5, 100, 100)
    );
    assert_eq!(defaults.limits.signups.per_address, 20);
    assert_eq!(defaults.limits.profile_lookups.per_address, 300);
    assert!(!defaults
        .server
        .trusted_proxies
        .contains([127, 0, 0, 1].into()));

    // The names scripts/bench and a deployment behind proxies use.
    let settings = load(&[
        ("TROUPE__LIMITS__SIGNUPS__PER_ADDRESS", "7"),
        ("TROUPE__LIMITS__PROFILE_LOOKUPS__PER_ADDRESS", "8"),
        ("TROUPE__LIMITS__PROFILE_LOOKUPS__WINDOW", "30s"),
        ("TROUPE__AUTH__THROTTLE__BASE_DELAY", "2s"),
        ("TROUPE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::1"),
        ("TROUPE__SERVER__PROXY_HEADER", "forwarded"),
    ])
    .unwrap();
    assert_eq!(settings.limits.signups.per_address, 7);
    assert_eq!(settings.limits.profile_lookups.per_address, 8);
    assert_eq!(settings.limits.profile_lookups.window.as_secs(), 30);
    assert_eq!(settings.auth.throttle.base_delay.as_secs(), 2);
    let proxies = &settings.server.trusted_proxies;
    assert!(proxies.contains([10, 1, 2, 3].into()));
    assert!(proxies.contains("2001:db8::1".parse().unwrap()));
    assert!(!proxies.contains("2001:db8::2".parse().unwrap()));
    assert_eq!(
        settings.server.proxy_header,
        troupe::proxies::ProxyHeader::Forwarded
    );
}

#[test]
fn bad_abuse_limits_name_the_key() {
    for (var, value, key) in [
        (
            "TROUPE__SERVER__TRUSTED_PROXIES",
            "10.0.0.0/33",
            "server.trusted_proxies",
        ),
        (
            "TROUPE__SERVER__PROXY_HEADER",
            "x-real-ip",
            "server.proxy_header",
        ),
        (
            "TROUPE__LIMITS__SIGNUPS__PER_ADDRESS",
            "0",
            "limits.signups.per_address",
        ),
        (
            "TROUPE__LIMITS__PROFILE_LOOKUPS__WINDOW",
            "0s",
            "limits.profile_lookups.window",
        ),
        (
            "TROUPE__AUTH__THROTTLE__PER_ACCOUNT",
            "0",
            "auth.throttle.per_account",
        ),
        (
            "TROUPE__AUTH__THROTTLE__MAX_DELAY",
            "30d",
            "auth.throttle.forget_after",
        ),
        (
            "TROUPE__AUTH__THROTTLE__BASE_DELAY",
            "1h",
            "auth.throttle.max_delay",
        ),
    ] {
        let err = load(&[(var, value)]).unwrap_err();
        assert!(err.contains(key), "{var}={value}: {err}");
    }
}

#[test]
fn idempotency_keys_must_outlive_the_call_timeout() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.auth.idempotency.ttl.as_secs(), 24 * 3600);
    assert_eq!(settings.auth.idempotency.prune_interval.as_secs(), 10 * 60);

    let err = load(&[
        ("TROUPE__AUTH__IDEMPOTENCY__TTL", "5s"),
        ("TROUPE__ACTORS__CALL_TIMEOUT", "5s"),
    ])
    .unwrap_err();
    assert!(
        err.contains("auth.idempotency.ttl") && err.contains("call_timeout"),
        "{err}"
    );
    let err = load(&[("TROUPE__AUTH__IDEMPOTENCY__PRUNE_INTERVAL", "0s")]).unwrap_err();
    assert!(err.contains("auth.idempotency.prune_interval"), "{err}");
}

#[test]
fn production_exits_2_naming_a_short_secret_without_printing_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE_ENV", "production")
        .env(
            "JWT_ACCESS_SECRET",
            "a-long-random-access-secret-0123456789",
        )
        .env(
            "JWT_REFRESH_SECRET",
            "a-long-random-refresh-secret-0123456789",
        )
        .env(
            "KEY_ENCRYPTION_SECRET",
            "a-long-random-key-encryption-secret-0123",
        )
        .env("OPS_TOKEN", "x")
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ops.token") && stderr.contains("32 bytes"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("0123456789"), "stderr: {stderr}");
}

#[test]
fn an_ops_token_equal_to_a_jwt_secret_is_refused_in_every_profile() {
    let err = load(&[("JWT_ACCESS_SECRET", "shared"), ("OPS_TOKEN", "shared")]).unwrap_err();
    assert!(
        err.contains("ops.token") && err.contains("auth.access_secret"),
        "{err}"
    );
}

/// Starts the binary with the development placeholders for the JWT secrets
/// (and MongoDB unreachable, so nothing is written anywhere) and reads its
/// stdout until the warning, then kills it.
#[test]
fn starting_with_the_development_placeholders_warns_naming_the_keys_only() {
    use std::io::BufRead;
    use std::process::Stdio;
    let logs = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("placeholder-logs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE_ENV", "test")
        .env("PORT", "0")
        .env(
            "MONGODB_URI",
            format!("mongodb://127.0.0.1:{}/?directConnection=true", free_port()),
        )
        .env("TROUPE__MONGODB__TIMEOUT", "200ms")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("OPS_TOKEN", "an-ops-token-of-this-test")
        .env("LOG_DIR", &logs)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut warning = None;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("placeholder") => {
                warning = Some(line);
                break;
            }
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let warning = warning.unwrap_or_else(|| panic!("no warning in:\n{}", seen.join("\n")));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("auth.access_secret") && warning.contains("auth.refresh_secret"),
        "{warning}"
    );
    // The ops token was set: not named. And no value, ever.
    assert!(!warning.contains("ops.token"), "{warning}");
    assert!(!warning.contains("dev-access-secret"), "{warning}");
}

/// Issue #23 item 4: without `TROUPE_ENV` the development profile's public
/// placeholder secrets served every interface. Listening on one that is not
/// loopback with them is refused before anything starts (exit code 2), in
/// one line naming the variables to set.
#[test]
fn placeholder_secrets_on_every_interface_exit_2_naming_the_variables() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env_remove("TROUPE_ENV")
        .env_remove("JWT_ACCESS_SECRET")
        .env_remove("JWT_REFRESH_SECRET")
        .env_remove("OPS_TOKEN")
        .env_remove("METRICS_TOKEN")
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE__SERVER__HOST", "0.0.0.0")
        .env("PORT", free_port().to_string())
        // Stores of its own, should it start at all (the bug).
        .env("MONGODB_DB", "troupe_test_placeholders_never_used")
        .env("REDIS_KEY_PREFIX", "troupe-test:placeholders-never-used:")
        .env(
            "LOG_DIR",
            std::env::temp_dir().join("troupe-placeholder-test"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    // It must stop by itself; one still serving after 10 s is the bug.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service started on 0.0.0.0 with the placeholder secrets");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("placeholder"))
        .unwrap_or_else(|| panic!("stderr: {stderr}"));
    for var in ["JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "OPS_TOKEN"] {
        assert!(line.contains(var), "{line}");
    }
    assert!(!stderr.contains("change-me"), "stderr: {stderr}");
}

/// A library user who starts the actor system without the service's loader
/// gets the same refusals as `config check`: every field error, each under
/// its settings key, before anything starts or any store is touched.
#[tokio::test]
async fn the_actor_system_refuses_an_invalid_config_with_every_field_error() {
    use std::time::Duration;
    use troupe_actors::queue::handlers::JobHandlers;
    use troupe_actors::system::{ActorSystem, StartError, Stores};

    let settings = load(&[]).unwrap();
    let mut config = settings.system_config();
    config.auth.bcrypt_cost = 3;
    config.queue.executors = 0;
    config.queue.poll_interval = Duration::ZERO;
    config.mail.from = "not a mailbox".into();
    config.restart.within = Duration::ZERO;
    config.cache.fence_ttl = config.call_timeout;
    // Never contacted: the refusal comes first.
    let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:1")
        .await
        .unwrap();
    let stores = Stores {
        db: client.database("troupe_edges_refused"),
        redis: settings.redis.store().unwrap(),
    };
    let refused = match ActorSystem::start(config, stores, JobHandlers::default()).await {
        Ok(system) => {
            system.shutdown().await;
            panic!("an invalid configuration started");
        }
        Err(err) => err,
    };
    let errors = match refused {
        StartError::Config(errors) => errors,
        other => panic!("refused for another reason: {other:?}"),
    };
    assert_eq!(
        errors.keys(),
        [
            "auth.bcrypt_cost",
            "queue.executors",
            "queue.poll_interval",
            "mail.from",
            "actors.restart.within",
            "cache.fence_ttl",
        ]
    );
    let text = errors.to_string();
    for words in [
        "must be between 4 and 31",
        "must be more than twice actors.call_timeout",
    ] {
        assert!(text.contains(words), "{text}");
    }
}

//! The secrets' rules: every secret set and used for one purpose only (in
//! every profile); under production none a placeholder or shorter than
//! [`MIN_SECRET_BYTES`]; in any profile no placeholder on a listener that
//! is not loopback-only (the placeholders are public: in
//! `config/default.toml`, so anyone who can reach the port could forge
//! tokens and call the ops API). And which keys still hold a development
//! placeholder, for the start-up warning (the keys only, never the values).
//!
//! Every rule walks `Settings::secrets`: a secret added to that list is
//! covered by all of them.

use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};

use super::{invalid, ConfigError, Environment, Settings};

/// Marker carried by every development placeholder secret in `default.toml`.
const PLACEHOLDER_MARK: &str = "change-me";

/// The shortest secret the production profile accepts: 32 bytes, the
/// HS256 key size RFC 7518 §3.2 asks for, and enough for a bearer token.
pub const MIN_SECRET_BYTES: usize = 32;

/// One secret: its key, its conventional variable, its value.
type Secret<'a> = (&'static str, &'static str, &'a SecretString);

impl Settings {
    /// The secrets, in the order they are checked.
    fn secrets(&self) -> Vec<Secret<'_>> {
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
            (
                "auth.key_encryption_secret",
                "KEY_ENCRYPTION_SECRET",
                &self.auth.key_encryption_secret,
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
        self.placeholders().map(|(key, _, _)| key).collect()
    }

    fn placeholders(&self) -> impl Iterator<Item = Secret<'_>> {
        self.secrets()
            .into_iter()
            .filter(|(_, _, secret)| is_placeholder(secret))
    }
}

fn is_placeholder(secret: &SecretString) -> bool {
    secret.expose_secret().contains(PLACEHOLDER_MARK)
}

/// Every secret set and distinct; under production, strong.
pub(super) fn validate(settings: &Settings) -> Result<(), ConfigError> {
    let secrets = settings.secrets();
    for (key, var, secret) in &secrets {
        if secret.expose_secret().is_empty() {
            return Err(invalid(key, format!("must not be empty; set {var}")));
        }
    }
    distinct(&secrets)?;
    if settings.environment == Environment::Production {
        for secret in &secrets {
            strong(secret)?;
        }
    }
    no_public_placeholders(settings)
}

/// Placeholder secrets only on a loopback-only listener: reachable from this
/// host alone, where whoever can connect can read `config/default.toml`
/// anyway. One line naming every variable still to set.
fn no_public_placeholders(settings: &Settings) -> Result<(), ConfigError> {
    let host = &settings.server.host;
    let placeholders: Vec<Secret<'_>> = settings.placeholders().collect();
    let Some((first, _, _)) = placeholders.first() else {
        return Ok(());
    };
    if is_loopback(host) {
        return Ok(());
    }
    let vars: Vec<&str> = placeholders.iter().map(|(_, var, _)| *var).collect();
    Err(invalid(
        first,
        format!(
            "the development placeholder secrets are public and server.host = {host:?} is not loopback-only; set {} (or TROUPE_ENV=production with real secrets), or listen on 127.0.0.1",
            vars.join(", ")
        ),
    ))
}

/// `127.0.0.1` (any of 127/8), `::1` (bracketed too) or `localhost`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// One secret per purpose: an ops token equal to a JWT key would let
/// whoever holds one forge or use the other.
fn distinct(secrets: &[Secret<'_>]) -> Result<(), ConfigError> {
    for (i, (key, _, secret)) in secrets.iter().enumerate() {
        if let Some((other, _, _)) = secrets[..i]
            .iter()
            .find(|(_, _, earlier)| earlier.expose_secret() == secret.expose_secret())
        {
            return Err(invalid(key, format!("must differ from {other}")));
        }
    }
    Ok(())
}

/// What production asks of a secret: not blank, not a placeholder, long.
fn strong((key, var, secret): &Secret<'_>) -> Result<(), ConfigError> {
    let value = secret.expose_secret();
    if value.trim().is_empty() || is_placeholder(secret) {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
    fn production_refuses_a_blank_secret_of_any_length() {
        let blank = " ".repeat(MIN_SECRET_BYTES);
        assert_eq!(
            refused_key(production(&[("OPS_TOKEN", &blank)])),
            "ops.token"
        );
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

    /// The development profile (its placeholder secrets) on `host`, with `env`.
    fn development_on(host: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vec![("TROUPE__SERVER__HOST", host)];
        all.extend_from_slice(env);
        settings("development", &all)
    }

    #[test]
    fn placeholders_are_refused_on_a_listener_that_is_not_loopback_naming_the_variables() {
        for host in [
            "0.0.0.0",
            "::",
            "192.0.2.10",
            "2001:db8::1",
            "troupe.example.com",
        ] {
            let err = development_on(host, &[]).unwrap_err().to_string();
            assert!(err.contains("`auth.access_secret`"), "{err}");
            for var in [
                "JWT_ACCESS_SECRET",
                "JWT_REFRESH_SECRET",
                "KEY_ENCRYPTION_SECRET",
                "OPS_TOKEN",
            ] {
                assert!(err.contains(var), "{host}: {err}");
            }
            assert!(!err.contains("change-me"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // One placeholder left: refused, naming that one.
        let err = development_on(
            "0.0.0.0",
            &[
                ("JWT_ACCESS_SECRET", "a"),
                ("JWT_REFRESH_SECRET", "r"),
                ("KEY_ENCRYPTION_SECRET", "k"),
            ],
        );
        assert_eq!(refused_key(err), "ops.token");
        // The key-encryption secret is one of them.
        let err = development_on(
            "0.0.0.0",
            &[
                ("JWT_ACCESS_SECRET", "a"),
                ("JWT_REFRESH_SECRET", "r"),
                ("OPS_TOKEN", "o"),
            ],
        );
        assert_eq!(refused_key(err), "auth.key_encryption_secret");
    }

    #[test]
    fn placeholders_are_accepted_on_loopback_and_real_secrets_anywhere() {
        for host in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            development_on(host, &[]).unwrap_or_else(|err| panic!("{host}: {err}"));
        }
        let real = [
            ("JWT_ACCESS_SECRET", "a"),
            ("JWT_REFRESH_SECRET", "r"),
            ("KEY_ENCRYPTION_SECRET", "k"),
            ("OPS_TOKEN", "o"),
        ];
        development_on("0.0.0.0", &real).expect("no placeholder left");
    }

    #[test]
    fn a_placeholder_metrics_token_is_refused_off_loopback_too() {
        let real = [
            ("JWT_ACCESS_SECRET", "a"),
            ("JWT_REFRESH_SECRET", "r"),
            ("KEY_ENCRYPTION_SECRET", "k"),
            ("OPS_TOKEN", "o"),
            ("METRICS_TOKEN", "m-change-me"),
        ];
        assert_eq!(
            refused_key(development_on("0.0.0.0", &real)),
            "ops.metrics_token"
        );
    }

    #[test]
    fn the_development_profile_listens_on_loopback_and_production_everywhere() {
        assert_eq!(
            settings("development", &[]).unwrap().server.host,
            "127.0.0.1"
        );
        assert_eq!(production(&[]).unwrap().server.host, "0.0.0.0");
    }

    #[test]
    fn placeholder_secrets_names_the_keys_still_at_their_defaults() {
        let defaults = settings("development", &[]).expect("development defaults");
        assert_eq!(
            defaults.placeholder_secrets(),
            [
                "auth.access_secret",
                "auth.refresh_secret",
                "auth.key_encryption_secret",
                "ops.token"
            ]
        );
        let one_set = settings("development", &[("OPS_TOKEN", "mine")]).unwrap();
        assert_eq!(
            one_set.placeholder_secrets(),
            [
                "auth.access_secret",
                "auth.refresh_secret",
                "auth.key_encryption_secret"
            ]
        );
    }
}

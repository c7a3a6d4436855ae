//! A configuration problem as its reader meets it: one line naming the
//! setting (the variable and the key), what was refused, what is expected
//! with an example, and the fix.
//!
//! `TROUPE__AUTH__ACCESS_TTL (`auth.access_ttl`): "15" is not a duration; expected
//! a duration with a unit (ms, s, m, h, d), e.g. 15m; fix: TROUPE__AUTH__ACCESS_TTL=15m`
//!
//! The example is the key's built-in default (never for a credential, whose
//! example is a description), and a credential's value is never echoed.

use std::fmt;

use super::sources::{self, Origin, Sources};

/// One refused or unknown setting. Display: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`auth.access_ttl`), or a variable of its own
    /// (`TROUPE_ENV`, `TROUPE_CONFIG_DIR`).
    pub key: String,
    /// Where the value came from.
    pub origin: Origin,
    /// What is wrong: `"15" is not a duration`, `must be positive`.
    pub problem: String,
    /// `a duration with a unit (ms, s, m, h, d), e.g. 15m`, when known.
    pub expected: Option<String>,
    /// `TROUPE__AUTH__ACCESS_TTL=15m`, `remove it`.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Var(var) if *var == self.key => write!(f, "{var}")?,
            Origin::Var(var) => write!(f, "{var} (`{}`)", self.key)?,
            Origin::File(path) => write!(f, "`{}` in {path}", self.key)?,
            Origin::Defaults => write!(f, "`{}` ({})", self.key, sources::troupe_var(&self.key))?,
        }
        write!(f, ": {}", self.problem)?;
        if let Some(expected) = &self.expected {
            write!(f, "; expected {expected}")?;
        }
        write!(f, "; fix: {}", self.fix)
    }
}

/// What a key's value looks like, from its built-in default.
#[derive(Debug, PartialEq)]
enum Kind {
    Duration,
    Integer,
    Bool,
    List,
    Text,
    /// A credential: never echoed, no default shown.
    Secret,
}

/// Keys whose values are credentials (or URLs that may hold one).
const SECRET_KEYS: &[&str] = &[
    "mongodb.uri",
    "redis.url",
    "redis.cluster_urls",
    "auth.access_secret",
    "auth.refresh_secret",
    "auth.key_encryption_secret",
    "ops.token",
    "ops.metrics_token",
    "mail.smtp_url",
];

fn kind(key: &str) -> Kind {
    use config::ValueKind;
    if SECRET_KEYS.contains(&key) {
        return Kind::Secret;
    }
    match sources::default_value(key).map(|value| value.kind) {
        Some(ValueKind::String(text)) if humantime::parse_duration(&text).is_ok() => Kind::Duration,
        Some(ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::I128(_) | ValueKind::U128(_)) => {
            Kind::Integer
        }
        Some(ValueKind::Boolean(_)) => Kind::Bool,
        Some(ValueKind::Array(_)) => Kind::List,
        _ => Kind::Text,
    }
}

/// An example value for `key` as it would be written in a variable.
fn example(key: &str) -> Option<String> {
    match (key, kind(key)) {
        ("mongodb.uri", _) => Some("mongodb://127.0.0.1:27017".into()),
        ("redis.url", _) => Some("redis://127.0.0.1:6379".into()),
        ("redis.cluster_urls", _) => Some("redis://10.0.0.1:7000,redis://10.0.0.2:7000".into()),
        ("mail.smtp_url", _) => Some("smtps://user:pass@smtp.example.com".into()),
        (_, Kind::Secret) => Some("$(openssl rand -hex 32)".into()),
        ("server.port", _) => Some("3000".into()),
        ("TROUPE_ENV", _) => Some("production".into()),
        (_, Kind::List) => None,
        _ => sources::default_value(key).and_then(|value| value.into_string().ok()),
    }
}

/// "a duration with a unit (ms, s, m, h, d), e.g. 15m". `serde_expected`
/// refines a number's range ("an unsigned 16 bit integer").
fn expected(key: &str, serde_expected: Option<&str>) -> Option<String> {
    let what = match (kind(key), serde_expected) {
        (_, Some(bits)) if bits.contains("unsigned 16 bit") => {
            "a whole number from 0 to 65535".to_string()
        }
        (_, Some(bits)) if bits.contains("unsigned") => "a whole number, 0 or more".to_string(),
        (Kind::Duration, _) => "a duration with a unit (ms, s, m, h, d)".to_string(),
        (Kind::Integer, _) => "a whole number".to_string(),
        (Kind::Bool, _) => "true or false".to_string(),
        (Kind::List, _) => "a list (comma-separated in a variable)".to_string(),
        (Kind::Secret, _) if key.ends_with("secret") || key.ends_with("token") => {
            "a random string (32 bytes or more in production)".to_string()
        }
        (Kind::Secret, _) => "a URL".to_string(),
        (Kind::Text, _) if key == "TROUPE_ENV" => "development, test or production".to_string(),
        (Kind::Text, _) => return example(key).map(|e| format!("text such as {e}")),
    };
    Some(match example(key) {
        Some(example) => format!("{what}, e.g. {example}"),
        None => what,
    })
}

/// How to fix `key` where it came from.
fn fix(key: &str, origin: &Origin) -> String {
    let example = example(key);
    let value = example.as_deref().unwrap_or("<value>");
    match origin {
        Origin::Var(var) => format!("set {var}={value}"),
        Origin::File(path) => {
            // As TOML: the leaf under its table, a string quoted.
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            let value = match kind(key) {
                Kind::Integer | Kind::Bool => value.to_string(),
                _ => format!("{value:?}"),
            };
            format!("set {leaf} = {value} under [{table}] in {path}")
        }
        Origin::Defaults => format!("set {}={value}", sources::troupe_var(key)),
    }
}

impl Problem {
    /// A value the validators refused: `key` with `problem` in their words.
    pub(super) fn invalid(sources: &Sources, key: &str, problem: String) -> Self {
        let origin = sources.origin_of(key);
        Self {
            expected: expected(key, None),
            fix: fix(key, &origin),
            key: key.to_string(),
            origin,
            problem,
        }
    }

    /// A value that did not deserialize. `raw` is the value as given (not
    /// shown for a credential); `serde_expected` the parser's own words.
    pub(super) fn bad_value(
        sources: &Sources,
        key: &str,
        raw: Option<String>,
        serde_expected: Option<&str>,
        cause: String,
    ) -> Self {
        let origin = sources.origin_of(key);
        let kind = kind(key);
        let problem = match raw {
            Some(_) if kind == Kind::Secret => "cannot be read".to_string(),
            Some(raw) => match kind {
                Kind::Duration => format!("{raw:?} is not a duration"),
                Kind::Integer => format!("{raw:?} is not a whole number in range"),
                Kind::Bool => format!("{raw:?} is not true or false"),
                _ => format!("{raw:?} cannot be read ({cause})"),
            },
            None => cause,
        };
        Self {
            expected: expected(key, serde_expected),
            fix: fix(key, &origin),
            key: key.to_string(),
            origin,
            problem,
        }
    }

    /// A key no setting has; `nearest` the known key it most resembles.
    pub(super) fn unknown(sources: &Sources, key: &str, nearest: Option<&str>) -> Self {
        let origin = sources.origin_of(key);
        let name = |key: &str| match &origin {
            Origin::Var(_) => sources::troupe_var(key),
            _ => key.to_string(),
        };
        let (problem, fix) = match nearest {
            Some(near) => (
                format!("no such setting (did you mean {}?)", name(near)),
                format!("rename it to {}, or remove it", name(near)),
            ),
            None => (
                "no such setting".to_string(),
                "remove it (config/default.toml lists every setting)".to_string(),
            ),
        };
        Self {
            key: key.to_string(),
            origin,
            problem,
            expected: None,
            fix,
        }
    }

    /// A problem with a file or directory as a whole (unreadable TOML, a
    /// missing `TROUPE_CONFIG_DIR`): `key` names it.
    pub(super) fn whole(key: &str, origin: Origin, problem: String, fix: &str) -> Self {
        Self {
            key: key.to_string(),
            origin,
            problem,
            expected: None,
            fix: fix.to_string(),
        }
    }
}

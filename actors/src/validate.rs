//! The validation seam: each configuration type checks itself beside its
//! definition ([`Validate`]), reporting **every** field it refuses, each
//! under its dotted path, into one [`ConfigErrors`].
//!
//! Paths are relative to the value checked (`lease`); a container nests
//! its parts under their names ([`ConfigErrors::nest`]: `queue.lease`).
//! [`SystemConfig`](crate::system::SystemConfig) nests every section under
//! the service's settings keys (`config/default.toml`), so the binary's
//! loader and [`ActorSystem::start`](crate::system::ActorSystem::start) run
//! the same rules and name the same keys.
//!
//! Contract: a rule names the key a fix goes to; a problem reads after the
//! key (`must be positive`). Checking does no I/O and never panics.

/// One refused field: its dotted path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct FieldError {
    pub key: String,
    pub problem: String,
}

/// Every field a configuration refuses, in the order its rules ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", lines(.0))]
pub struct ConfigErrors(Vec<FieldError>);

fn lines(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors.iter().map(FieldError::to_string).collect();
    lines.join("; ")
}

impl ConfigErrors {
    /// Refuse `key` with `problem` unless `ok`.
    pub fn ensure(&mut self, ok: bool, key: &str, problem: impl Into<String>) {
        if !ok {
            self.refuse(key, problem);
        }
    }

    /// Refuse `key` with `problem`.
    pub fn refuse(&mut self, key: &str, problem: impl Into<String>) {
        self.0.push(FieldError {
            key: key.to_owned(),
            problem: problem.into(),
        });
    }

    /// What `value` refuses, each key under `prefix.`.
    pub fn nest(&mut self, prefix: &str, value: &(impl Validate + ?Sized)) {
        let mut inner = ConfigErrors::default();
        value.check(&mut inner);
        self.0.extend(inner.0.into_iter().map(|field| FieldError {
            key: format!("{prefix}.{}", field.key),
            problem: field.problem,
        }));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The refused fields, in the order their rules ran.
    pub fn fields(&self) -> &[FieldError] {
        &self.0
    }

    /// The keys refused, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|field| field.key.as_str()).collect()
    }

    /// `Ok` if nothing was refused.
    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A configuration value that knows its own rules.
pub trait Validate {
    /// Record every field `self` refuses, under paths relative to it.
    fn check(&self, errors: &mut ConfigErrors);

    /// Every field refused, or `Ok`.
    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        self.check(&mut errors);
        errors.into_result()
    }
}

/// The keys `value` refuses once `change`d (the rules' unit tests): `[]`
/// when it is accepted.
#[cfg(test)]
pub(crate) fn refused_after<T: Validate>(mut value: T, change: impl FnOnce(&mut T)) -> Vec<String> {
    change(&mut value);
    let mut errors = ConfigErrors::default();
    value.check(&mut errors);
    errors.0.into_iter().map(|field| field.key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner(u32);

    impl Validate for Inner {
        fn check(&self, errors: &mut ConfigErrors) {
            errors.ensure(self.0 >= 1, "count", "must be at least 1");
            errors.ensure(self.0 <= 10, "count", "must be at most 10");
            errors.ensure(self.0 != 0, "other", "must not be zero");
        }
    }

    struct Outer(Inner, Inner);

    impl Validate for Outer {
        fn check(&self, errors: &mut ConfigErrors) {
            errors.nest("a", &self.0);
            errors.nest("b.c", &self.1);
        }
    }

    #[test]
    fn every_field_error_is_kept_in_order_under_its_nested_path() {
        let err = Outer(Inner(0), Inner(11)).validate().unwrap_err();
        assert_eq!(err.keys(), ["a.count", "a.other", "b.c.count"]);
        assert_eq!(
            err.to_string(),
            "invalid configuration: `a.count`: must be at least 1; \
             `a.other`: must not be zero; `b.c.count`: must be at most 10"
        );
        assert!(Outer(Inner(1), Inner(10)).validate().is_ok());
    }
}

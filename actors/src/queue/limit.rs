//! Fleet-wide concurrency limits: at most `concurrency` jobs of a type (or
//! of a type and one value of a payload field, `partitionBy`) run at once,
//! across every instance.
//!
//! # How it is exact without transactions
//! A limited job runs only while it holds one of its group's
//! `concurrency` **tokens**: documents of `queue_tokens` whose `_id` is
//! `<group>#<n>`, `n < concurrency` ([`crate::queue::store::tokens`]). A
//! claimer takes a token with a unique-key insert — atomic on MongoDB and
//! FerretDB alike — *before* it reserves the job's attempt, and gives it
//! back if it then does not get the job. So at no moment do more than
//! `concurrency` claimers hold tokens of one group, whatever the number of
//! instances, and the store has no multi-document atomicity to offer.
//!
//! A token carries the lease of its job's attempt, renewed with it. It is
//! deleted when the handler returns (before the end is written: the limit
//! is about work running); one whose lease ran out (its instance died) is
//! deleted by the next claimer that needs it, with the expiry in the
//! delete's filter, so a renewed token is never taken.
//!
//! # Where the limits come from
//! `queue.limits` in the configuration gives defaults per type; an operator
//! sets, changes or removes one at run time (`PUT`/`DELETE
//! /jobs/limits/{type}`), stored in `queue_limits` so that every instance
//! and every restart applies it. A stored limit replaces the configured
//! one for its type. Each instance reads the stored ones when it lists
//! claimable jobs, at most every [`READ_EVERY`]; the instance that stores
//! a change applies it at once. Lowering a limit never stops running jobs:
//! tokens above the new limit are not renewed into use again, and no new
//! job of the group starts until fewer than the new limit run.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document};
use serde::{Deserialize, Serialize};

/// How often an instance reads the stored limits (when it lists).
pub const READ_EVERY: Duration = Duration::from_secs(1);

/// The most jobs of one group a limit may let run at once.
pub const MAX_CONCURRENCY: u32 = 1_000;

/// The longest payload field name a limit may partition by.
pub const MAX_FIELD: usize = 64;

/// The most starts a rate limit may allow per period.
pub const MAX_RATE: u32 = 10_000;

/// The shortest and longest period of a rate limit.
pub const RATE_PERIODS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);

/// One type's limit: how many of its jobs run at once, how many start per
/// period, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    /// At most this many of its jobs (of one partition, with
    /// `partition_by`) run at once across the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most `limit` of its jobs (of one partition) start in any window
    /// of `period`, across the fleet; the others wait (they do not fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// A top-level payload field: the limit holds for each of its values
    /// apart (jobs without the field share one partition).
    /// (`partition_by` in the configuration's TOML.)
    #[serde(
        default,
        alias = "partition_by",
        skip_serializing_if = "Option::is_none"
    )]
    pub partition_by: Option<String>,
}

/// At most `limit` starts in any window of `period`.
///
/// Exact, as the concurrency is: each start holds one of the group's
/// `limit` rate tokens for `period` from its claim (taken with a unique
/// insert, never given back early once the job started), so `limit + 1`
/// starts within one `period` would need `limit + 1` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub limit: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

/// Why a limit cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("concurrency must be between 1 and {MAX_CONCURRENCY}")]
    Concurrency,
    #[error("rate.limit must be between 1 and {MAX_RATE} and rate.period between 1s and 1d")]
    Rate,
    #[error("a limit needs concurrency, rate or both")]
    Empty,
    #[error(
        "partitionBy must be a top-level payload field name: 1 to {MAX_FIELD} letters, digits or _"
    )]
    Field,
}

impl Limit {
    /// `concurrency` in range and `partition_by` a plain field name.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.concurrency.is_none() && self.rate.is_none() {
            return Err(LimitError::Empty);
        }
        if let Some(n) = self.concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(LimitError::Concurrency);
            }
        }
        if let Some(rate) = self.rate {
            if !(1..=MAX_RATE).contains(&rate.limit) || !RATE_PERIODS.contains(&rate.period) {
                return Err(LimitError::Rate);
            }
        }
        match &self.partition_by {
            Some(field) if !plain_field(field) => Err(LimitError::Field),
            _ => Ok(()),
        }
    }
}

/// A field name that is safe in a dotted path and in a token's `_id`.
fn plain_field(field: &str) -> bool {
    (1..=MAX_FIELD).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The limits in force, by type.
pub type Limits = BTreeMap<String, Limit>;

/// What a token's group is named by: its type, and with a partitioned
/// limit the partition's value as text (`""` for jobs without the field).
///
/// The value's text is its JSON form (strings quoted), so the string `"1"`
/// and the number `1` are two partitions, as they are two values.
pub fn group(kind: &str, limit: &Limit, payload: Option<&Document>) -> String {
    match &limit.partition_by {
        None => kind.to_owned(),
        Some(field) => {
            let value = payload.and_then(|p| p.get(field));
            format!("{kind}\u{1f}{}", partition_text(value))
        }
    }
}

/// A partition value's text (see [`group`]).
fn partition_text(value: Option<&Bson>) -> String {
    match value {
        None | Some(Bson::Null) => String::new(),
        Some(value) => value.clone().into_relaxed_extjson().to_string(),
    }
}

/// The limits as last read, shared by an instance's store handles: the
/// listing refreshes it, claims read it, an operator's change here
/// replaces it at once.
#[derive(Clone, Default)]
pub struct LimitBook {
    inner: Arc<RwLock<Book>>,
}

#[derive(Default)]
struct Book {
    /// From the configuration (`queue.limits`).
    configured: Limits,
    /// From `queue_limits`, as last read.
    stored: Limits,
    /// When `stored` was read (`None`: never).
    read_at: Option<Instant>,
}

impl LimitBook {
    /// A book with the configured defaults.
    pub fn configured(limits: Limits) -> Self {
        let book = Book {
            configured: limits,
            ..Book::default()
        };
        Self {
            inner: Arc::new(RwLock::new(book)),
        }
    }

    /// The limits in force: the configured ones, each replaced by a stored
    /// one of its type.
    pub fn current(&self) -> Limits {
        let book = self.inner.read().expect("limits");
        let mut limits = book.configured.clone();
        limits.extend(book.stored.clone());
        limits
    }

    /// Whether any type is limited (else claims skip the tokens).
    pub fn any(&self) -> bool {
        let book = self.inner.read().expect("limits");
        !(book.configured.is_empty() && book.stored.is_empty())
    }

    /// Whether the stored limits are older than [`READ_EVERY`].
    pub fn stale(&self) -> bool {
        let book = self.inner.read().expect("limits");
        book.read_at.is_none_or(|at| at.elapsed() >= READ_EVERY)
    }

    /// The stored limits, just read.
    pub fn stored(&self, stored: Limits) {
        let mut book = self.inner.write().expect("limits");
        book.stored = stored;
        book.read_at = Some(Instant::now());
    }

    /// One stored limit set (`Some`) or removed (`None`) on this instance.
    pub fn changed(&self, kind: &str, limit: Option<Limit>) {
        let mut book = self.inner.write().expect("limits");
        match limit {
            Some(limit) => book.stored.insert(kind.to_owned(), limit),
            None => book.stored.remove(kind),
        };
    }

    /// Whether `kind`'s limit comes from the store (else the configuration).
    pub fn is_stored(&self, kind: &str) -> bool {
        self.inner.read().expect("limits").stored.contains_key(kind)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use mongodb::bson::doc;

    use super::*;

    /// A concurrency limit of `concurrency`, partitioned by `by`.
    pub(crate) fn limit(concurrency: u32, by: Option<&str>) -> Limit {
        Limit {
            concurrency: Some(concurrency),
            rate: None,
            partition_by: by.map(str::to_owned),
        }
    }

    #[test]
    fn a_rate_needs_a_limit_and_a_period_in_range_and_a_limit_something() {
        let rate = |limit, secs| Limit {
            concurrency: None,
            rate: Some(Rate {
                limit,
                period: Duration::from_millis(secs),
            }),
            partition_by: None,
        };
        assert_eq!(rate(100, 60_000).validate(), Ok(()));
        assert_eq!(rate(0, 60_000).validate(), Err(LimitError::Rate));
        assert_eq!(rate(10_001, 60_000).validate(), Err(LimitError::Rate));
        assert_eq!(rate(1, 999).validate(), Err(LimitError::Rate));
        assert_eq!(rate(1, 86_401_000).validate(), Err(LimitError::Rate));
        let nothing = Limit {
            concurrency: None,
            rate: None,
            partition_by: None,
        };
        assert_eq!(nothing.validate(), Err(LimitError::Empty));
    }

    #[test]
    fn a_limit_needs_a_concurrency_in_range_and_a_plain_field() {
        assert_eq!(limit(0, None).validate(), Err(LimitError::Concurrency));
        assert_eq!(limit(1_001, None).validate(), Err(LimitError::Concurrency));
        assert_eq!(limit(5, Some("a.b")).validate(), Err(LimitError::Field));
        assert_eq!(limit(5, Some("$where")).validate(), Err(LimitError::Field));
        assert_eq!(limit(5, Some("")).validate(), Err(LimitError::Field));
        assert_eq!(limit(1, Some("tenant_id2")).validate(), Ok(()));
        assert_eq!(limit(1_000, None).validate(), Ok(()));
    }

    #[test]
    fn groups_are_per_type_or_per_partition_value() {
        let plain = limit(2, None);
        let by = limit(2, Some("tenant"));
        let payload = doc! { "tenant": "a" };
        assert_eq!(group("mail", &plain, Some(&payload)), "mail");
        assert_eq!(group("mail", &by, Some(&payload)), "mail\u{1f}\"a\"");
        assert_eq!(
            group("mail", &by, Some(&doc! { "tenant": 1 })),
            "mail\u{1f}1"
        );
        assert_ne!(
            group("mail", &by, Some(&doc! { "tenant": "1" })),
            group("mail", &by, Some(&doc! { "tenant": 1 })),
        );
        // Without the field (or without a payload): one shared partition.
        assert_eq!(group("mail", &by, Some(&doc! {})), "mail\u{1f}");
        assert_eq!(group("mail", &by, None), "mail\u{1f}");
        assert_eq!(
            group("mail", &by, Some(&doc! { "tenant": null })),
            "mail\u{1f}"
        );
    }

    #[test]
    fn a_stored_limit_replaces_the_configured_one_of_its_type() {
        let book = LimitBook::configured(Limits::from([
            ("a".to_owned(), limit(1, None)),
            ("b".to_owned(), limit(2, None)),
        ]));
        assert!(book.stale(), "never read");
        book.stored(Limits::from([("b".to_owned(), limit(5, None))]));
        assert!(!book.stale());
        let current = book.current();
        assert_eq!(current["a"], limit(1, None));
        assert_eq!(current["b"], limit(5, None));
        assert!(book.is_stored("b") && !book.is_stored("a"));
        book.changed("b", None);
        assert_eq!(book.current()["b"], limit(2, None), "the default again");
        book.changed("c", Some(limit(3, Some("t"))));
        assert_eq!(book.current().len(), 3);
        assert!(book.any());
        assert!(!LimitBook::default().any());
    }
}

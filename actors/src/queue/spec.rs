//! [`JobSpec`]: what a producer asks the queue to run — a type, a payload,
//! when, how urgently, and under which unique key — and the rules it must
//! meet ([`SpecError`]). [`crate::queue::producer::JobQueue::enqueue_spec`]
//! takes it.

use std::time::{Duration, SystemTime};

use mongodb::bson::{Bson, DateTime, Document};

use crate::queue::dependency::{DependencyPolicy, MAX_DEPENDENCIES};
use crate::queue::job::JobId;
use crate::queue::priority::PRIORITIES;

/// Longest unique key, in characters.
pub const UNIQUE_KEY_MAX_CHARS: usize = 200;

/// The attempts a job may ask for ([`JobSpec::max_attempts`]).
pub const MAX_ATTEMPTS: std::ops::RangeInclusive<i32> = 1..=100;

/// The shortest and longest timeout a job may ask for ([`JobSpec::timeout`]).
pub const TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(24 * 3600);

/// Latest due time accepted: this far ahead of now (about ten years).
pub const LATEST_AHEAD: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// A job to enqueue. Build it with [`JobSpec::new`] and the setters:
///
/// ```ignore
/// let spec = JobSpec::new("report.build", doc! { "account": id })
///     .delay(Duration::from_secs(90))
///     .priority(10)
///     .unique_key(format!("report:{id}"))
///     .max_attempts(3)                  // instead of queue.max_attempts
///     .timeout(Duration::from_secs(60)) // instead of queue.job_timeout
///     .depends_on([extract_id, resize_id]) // runs once both completed
///     .on_dependency_failure(DependencyPolicy::Hold); // default: Fail
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub(crate) kind: String,
    pub(crate) payload: Document,
    /// When it is due; `None`: now.
    pub(crate) due: Option<Due>,
    pub(crate) priority: i32,
    pub(crate) unique_key: Option<String>,
    /// Its own `maxAttempts`; `None`: the queue's `max_attempts`.
    pub(crate) max_attempts: Option<i32>,
    /// Its own attempt timeout; `None`: the queue's `job_timeout`.
    pub(crate) timeout: Option<Duration>,
    /// The jobs it runs after ([`crate::queue::flow`]), each once.
    pub(crate) depends_on: Vec<JobId>,
    /// What a failed or cancelled dependency does to it.
    pub(crate) on_dependency_failure: Option<DependencyPolicy>,
}

/// When a job is due, as the producer said it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Due {
    At(SystemTime),
    After(Duration),
}

impl JobSpec {
    /// A job of type `kind` (a registered type) with `payload`, due now,
    /// priority 0, no unique key.
    pub fn new(kind: impl Into<String>, payload: Document) -> Self {
        Self {
            kind: kind.into(),
            payload,
            due: None,
            priority: 0,
            unique_key: None,
            max_attempts: None,
            timeout: None,
            depends_on: Vec::new(),
            on_dependency_failure: None,
        }
    }

    /// A job whose payload is a JSON object (an API's input): refused if the
    /// object cannot be stored as it is (see [`check_payload`]).
    pub fn from_json(
        kind: impl Into<String>,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SpecError> {
        // Plain serde, not Extended JSON: `{"$oid": ..}` stays an object
        // (and is refused below), as the API's JSON is plain JSON.
        let payload = match mongodb::bson::to_bson(&payload) {
            Ok(Bson::Document(document)) => document,
            _ => return Err(SpecError::payload("", "holds a number too large to store")),
        };
        check_payload(&payload)?;
        Ok(Self::new(kind, payload))
    }

    /// Due at `at` (a time in the past means now). Replaces any `delay`.
    pub fn run_at(mut self, at: impl Into<SystemTime>) -> Self {
        self.due = Some(Due::At(at.into()));
        self
    }

    /// Due `delay` after it is enqueued. Replaces any `run_at`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.due = Some(Due::After(delay));
        self
    }

    /// Higher runs first among due jobs; in [`PRIORITIES`] (see
    /// [`crate::queue::priority`] for the aging that bounds waiting).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// At most one job of this type with this key is pending or processing:
    /// enqueueing another returns the existing one. 1 to
    /// [`UNIQUE_KEY_MAX_CHARS`] characters, no control characters.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Attempts before the job is `failed`, instead of the queue's
    /// `max_attempts`; in [`MAX_ATTEMPTS`].
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The longest one attempt may run, instead of the queue's
    /// `job_timeout`; in [`TIMEOUTS`]. (Its lease is renewed meanwhile, as
    /// for any job.)
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Run only after every job of `ids` has completed (at most
    /// [`MAX_DEPENDENCIES`], each an existing job; see
    /// [`crate::queue::flow`]). A repeated id counts once.
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = JobId>) -> Self {
        for id in ids {
            if !self.depends_on.contains(&id) {
                self.depends_on.push(id);
            }
        }
        self
    }

    /// What a dependency that failed or was cancelled does to this job
    /// (default [`DependencyPolicy::Fail`]).
    pub fn on_dependency_failure(mut self, policy: DependencyPolicy) -> Self {
        self.on_dependency_failure = Some(policy);
        self
    }

    /// The job's type.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// When the job is due, enqueued at `now`; refused past [`LATEST_AHEAD`].
    pub(crate) fn due_at(&self, now: SystemTime) -> Result<DateTime, SpecError> {
        let at = match self.due {
            None => now,
            Some(Due::At(at)) => at,
            Some(Due::After(delay)) => now.checked_add(delay).ok_or(SpecError::TooFarAhead)?,
        };
        let latest = now + LATEST_AHEAD;
        if at > latest {
            return Err(SpecError::TooFarAhead);
        }
        // Before 1970 is "now" anyway (the rank clamps it); keep it representable.
        Ok(DateTime::from_system_time(at.max(SystemTime::UNIX_EPOCH)))
    }

    /// The rules that need no configuration: priority, unique key,
    /// attempts and timeout.
    pub(crate) fn check(&self) -> Result<(), SpecError> {
        check_priority(self.priority)?;
        if let Some(key) = &self.unique_key {
            check_unique_key(key)?;
        }
        if let Some(attempts) = self.max_attempts {
            check_max_attempts(attempts)?;
        }
        if let Some(timeout) = self.timeout {
            check_timeout(timeout)?;
        }
        if self.depends_on.len() > MAX_DEPENDENCIES {
            return Err(SpecError::TooManyDependencies);
        }
        Ok(())
    }
}

/// Why the queue refused a job (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No live instance has a handler for this type: it is none of
    /// `registered` (see [`crate::queue::types`]).
    #[error("no live instance handles job type {kind:?}; registered: {}", registered.join(", "))]
    UnknownType {
        kind: String,
        registered: Vec<String>,
    },
    #[error("the priority must be from {} to {}", PRIORITIES.start(), PRIORITIES.end())]
    PriorityOutOfRange,
    #[error("the unique key must be 1 to {UNIQUE_KEY_MAX_CHARS} characters, none of them control characters")]
    BadUniqueKey,
    /// The payload, as stored (BSON), is larger than `queue.max_payload`.
    #[error("the payload is {size} bytes stored; at most {limit} are accepted")]
    PayloadTooLarge { size: usize, limit: usize },
    /// The payload holds something a store refuses (FerretDB: a key
    /// starting with `$` or holding a `.`, an array directly inside an
    /// array; any store: a NUL character). See [`check_payload`].
    #[error("the payload {at}{reason}")]
    PayloadNotStorable { at: String, reason: &'static str },
    /// The store refused to write the job for good (an error about the
    /// document, with this code): the payload holds something this store
    /// cannot keep that [`check_payload`] does not know of.
    #[error("the store refused the payload (error code {code})")]
    PayloadRefused { code: i32 },
    /// Its own `maxAttempts` is outside [`MAX_ATTEMPTS`].
    #[error("maxAttempts must be from {} to {}", MAX_ATTEMPTS.start(), MAX_ATTEMPTS.end())]
    MaxAttemptsOutOfRange,
    /// Its own timeout is outside [`TIMEOUTS`].
    #[error("the timeout must be from 10ms to 24h")]
    TimeoutOutOfRange,
    /// Due more than [`LATEST_AHEAD`] from now.
    #[error("the job would be due more than ten years from now")]
    TooFarAhead,
    /// More than [`MAX_DEPENDENCIES`] dependencies.
    #[error("a job may depend on at most {MAX_DEPENDENCIES} jobs")]
    TooManyDependencies,
    /// These dependencies are no jobs.
    #[error("no such job: {}", ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    UnknownDependencies { ids: Vec<JobId> },
}

impl SpecError {
    /// `kind` is not registered among `types`.
    pub(crate) fn unknown_type(kind: &str, types: &crate::queue::types::JobTypes) -> Self {
        Self::UnknownType {
            kind: kind.into(),
            registered: types.registered(),
        }
    }

    fn payload(path: &str, reason: &'static str) -> Self {
        let at = if path.is_empty() {
            String::new()
        } else {
            format!("at {path:?} ")
        };
        Self::PayloadNotStorable { at, reason }
    }
}

/// `priority` is in [`PRIORITIES`].
pub fn check_priority(priority: i32) -> Result<(), SpecError> {
    PRIORITIES
        .contains(&priority)
        .then_some(())
        .ok_or(SpecError::PriorityOutOfRange)
}

/// `attempts` is in [`MAX_ATTEMPTS`].
pub fn check_max_attempts(attempts: i32) -> Result<(), SpecError> {
    (MAX_ATTEMPTS.contains(&attempts))
        .then_some(())
        .ok_or(SpecError::MaxAttemptsOutOfRange)
}

/// `timeout` is in [`TIMEOUTS`].
pub fn check_timeout(timeout: Duration) -> Result<(), SpecError> {
    (TIMEOUTS.contains(&timeout))
        .then_some(())
        .ok_or(SpecError::TimeoutOutOfRange)
}

/// `key` is 1 to [`UNIQUE_KEY_MAX_CHARS`] characters, none a control
/// character (the store's key joins type and key with U+001F).
pub fn check_unique_key(key: &str) -> Result<(), SpecError> {
    let chars = key.chars().count();
    let ok = (1..=UNIQUE_KEY_MAX_CHARS).contains(&chars) && !key.chars().any(char::is_control);
    ok.then_some(()).ok_or(SpecError::BadUniqueKey)
}

/// Deepest nesting accepted in a payload (objects and arrays, the payload
/// itself at depth 0). MongoDB refuses documents nested past 100 levels, and
/// the job document wraps the payload; the API's JSON is bounded anyway by
/// serde_json's recursion limit of 128.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// A payload every store accepts: at any depth, no key starting with `$`,
/// none holding `.` (FerretDB v1 refuses both), no NUL in keys or strings
/// (BSON keys cannot hold it; FerretDB's PostgreSQL storage refuses it in
/// strings), no array directly inside an array (FerretDB v1 cannot store
/// one), and at most [`MAX_PAYLOAD_DEPTH`] levels. MongoDB takes some of
/// these, but the queue refuses them on every store, so that a payload
/// accepted on one is accepted on all.
///
/// Each document's keys are checked before its values, values in order,
/// depth first; a container is refused before it is entered if its values
/// would lie deeper than [`MAX_PAYLOAD_DEPTH`], so the recursion is bounded
/// whatever the payload's shape. The path is kept as steps and spelled out
/// only for the error.
pub fn check_payload(payload: &Document) -> Result<(), SpecError> {
    check_document(payload, &mut Vec::new(), 0)
}

/// One step of a path: a key, or an array index.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `document`'s keys, then its values (`depth` deep), at `path`.
fn check_document<'a>(
    document: &'a Document,
    path: &mut Vec<Step<'a>>,
    depth: usize,
) -> Result<(), SpecError> {
    for key in document.keys() {
        let reason = if key.starts_with('$') {
            "has a key starting with '$'"
        } else if key.contains('.') {
            "has a key holding '.'"
        } else if key.contains('\0') {
            "has a key holding NUL"
        } else {
            continue;
        };
        path.push(Step::Key(key));
        return Err(refuse(path, reason));
    }
    for (key, value) in document {
        path.push(Step::Key(key));
        check_value(value, path, depth, false)?;
        path.pop();
    }
    Ok(())
}

/// One value, `depth` deep, at `path` (its last step names it).
fn check_value<'a>(
    value: &'a Bson,
    path: &mut Vec<Step<'a>>,
    depth: usize,
    in_array: bool,
) -> Result<(), SpecError> {
    match value {
        Bson::Document(document) => {
            deeper(path, depth + 1)?;
            check_document(document, path, depth + 1)
        }
        Bson::Array(_) if in_array => Err(refuse(path, "has an array directly inside an array")),
        Bson::Array(items) => {
            deeper(path, depth + 1)?;
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                check_value(item, path, depth + 1, true)?;
                path.pop();
            }
            Ok(())
        }
        Bson::String(text) if text.contains('\0') => Err(refuse(path, "has a string holding NUL")),
        _ => Ok(()),
    }
}

/// Refused if the container at `path` would hold values `depth` deep.
fn deeper(path: &[Step<'_>], depth: usize) -> Result<(), SpecError> {
    match depth > MAX_PAYLOAD_DEPTH {
        true => Err(refuse(path, "is nested too deeply (at most 64 levels)")),
        false => Ok(()),
    }
}

fn refuse(path: &[Step<'_>], reason: &'static str) -> SpecError {
    let mut spelled = String::new();
    for step in path {
        match step {
            Step::Key(key) if spelled.is_empty() => spelled.push_str(key),
            Step::Key(key) => {
                spelled.push('.');
                spelled.push_str(key);
            }
            Step::Index(i) => spelled.push_str(&format!("[{i}]")),
        }
    }
    SpecError::payload(&spelled, reason)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use serde_json::json;

    use super::*;

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_json_object_becomes_the_stored_payload() {
        let spec = JobSpec::from_json("t", object(json!({"n": 1, "s": "x", "a": [true]}))).unwrap();
        assert_eq!(spec.payload, doc! {"n": 1_i64, "s": "x", "a": [true]});
    }

    #[test]
    fn payloads_the_store_refuses_are_refused_with_where() {
        for (payload, at) in [
            (json!({"$set": 1}), "$set"),
            (json!({"a": {"b.c": 1}}), "a.b.c"),
            (json!({"list": [{"ok": 1}, {"$x": 2}]}), "list[1].$x"),
            (json!({"s": "nul\u{0}"}), "s"),
            (json!({"k\u{0}": 1}), "k\u{0}"),
            (json!({"m": [[1]]}), "m[0]"),
            (json!({"a": {"b": [1, {"c": [2, [3]]}]}}), "a.b[1].c[1]"),
            (json!({"x": [1], "y": [{"z": []}, []]}), "y[1]"),
        ] {
            match JobSpec::from_json("t", object(payload.clone())) {
                Err(SpecError::PayloadNotStorable { at: found, .. }) => {
                    assert_eq!(found, format!("at {at:?} "), "{payload}")
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        let huge = JobSpec::from_json("t", object(json!({"n": u64::MAX})));
        assert!(matches!(huge, Err(SpecError::PayloadNotStorable { .. })));
    }

    #[test]
    fn arrays_of_objects_and_objects_of_arrays_are_storable() {
        let fine = json!({"a": [{"b": [1, 2]}, {"c": {"d": [true]}}], "e": [], "f": [{}]});
        assert!(JobSpec::from_json("t", object(fine)).is_ok());
    }

    #[test]
    fn a_payload_deeper_than_any_stack_is_refused_at_the_depth_limit_without_overflow() {
        let nest = |levels: usize| {
            let mut deep = doc! { "leaf": 1 };
            for _ in 0..levels {
                deep = doc! { "n": deep };
            }
            deep
        };
        assert!(check_payload(&nest(MAX_PAYLOAD_DEPTH)).is_ok());
        let too_deep = check_payload(&nest(MAX_PAYLOAD_DEPTH + 1));
        assert!(
            matches!(too_deep, Err(SpecError::PayloadNotStorable { reason, .. })
            if reason.starts_with("is nested too deeply"))
        );
        let deep = nest(100_000);
        let refused = check_payload(&deep);
        assert!(
            matches!(refused, Err(SpecError::PayloadNotStorable { ref at, .. })
            if at.len() == "at \"\" ".len() + "n.".repeat(MAX_PAYLOAD_DEPTH + 1).len() - 1)
        );
        // (Dropping a document this deep would itself recurse: leak it.)
        std::mem::forget(deep);
    }

    #[test]
    fn priorities_and_unique_keys_are_bounded() {
        assert!(check_priority(-100).is_ok() && check_priority(100).is_ok());
        assert!(check_priority(101).is_err() && check_priority(-101).is_err());
        assert!(check_unique_key("k").is_ok());
        assert!(check_unique_key(&"é".repeat(200)).is_ok());
        for bad in [
            String::new(),
            "k".repeat(201),
            "a\u{1f}b".into(),
            "a\nb".into(),
        ] {
            assert_eq!(
                check_unique_key(&bad),
                Err(SpecError::BadUniqueKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_due_time_is_now_a_time_or_a_delay_and_not_past_ten_years() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let spec = JobSpec::new("t", Document::new());
        assert_eq!(spec.due_at(now), Ok(DateTime::from_system_time(now)));
        let later = spec
            .clone()
            .delay(Duration::from_secs(2))
            .due_at(now)
            .unwrap();
        assert_eq!(later.timestamp_millis(), 1_800_000_002_000);
        let at = now + Duration::from_secs(60);
        assert_eq!(
            spec.clone().run_at(at).due_at(now),
            Ok(DateTime::from_system_time(at))
        );
        let too_far = spec.clone().delay(LATEST_AHEAD + Duration::from_secs(1));
        assert_eq!(too_far.due_at(now), Err(SpecError::TooFarAhead));
        assert_eq!(
            spec.delay(Duration::MAX).due_at(now),
            Err(SpecError::TooFarAhead)
        );
    }
}

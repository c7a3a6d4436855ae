//! `POST /jobs`: an operator enqueues a job of any registered type, through
//! the queue's producer handle ([`troupe_actors::queue::JobQueue`]).
//!
//! The body's shape is checked here (every bad field listed at once); what
//! depends on the queue's registry and settings (the type exists, the
//! payload's stored size) is checked by the queue and mapped back to the
//! field it is about. Sizes: the body is bounded by `server.body_limit`
//! (413), the payload by `queue.max_payload` (413 naming `payload`).

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{Map, Value};
use troupe_actors::queue::flow::{DependencyPolicy, MAX_DEPENDENCIES};
use troupe_actors::queue::spec::{
    check_max_attempts, check_priority, check_timeout, check_unique_key, UNIQUE_KEY_MAX_CHARS,
};
use troupe_actors::queue::{Enqueued, JobId, JobSpec, SpecError};
use utoipa::ToSchema;

use super::{problem, JobView};
use crate::http::auth::Operator;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

// The body's schema; `EnqueueBody` reads and checks it.
/// A job to enqueue. `runAt` and `delay` are exclusive; neither: due now.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(example = json!({
    "type": "noop", "payload": {"reason": "smoke check"}, "delay": "90s",
    "priority": 10, "uniqueKey": "smoke:2026-11-29", "maxAttempts": 3, "timeout": "45s"
}))]
pub struct EnqueueRequest {
    /// A registered job type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A JSON object, at most `queue.max_payload` bytes as stored and 64
    /// levels deep. No key may start with `$` or hold `.`; no string or key
    /// may hold NUL; no array may sit directly inside an array (`[[1]]`;
    /// `[{"a": [1]}]` is fine). Refused on every store, though MongoDB
    /// takes some of these, so a payload accepted on one store is on all.
    #[schema(value_type = Object)]
    pub payload: Map<String, Value>,
    /// When the job is due (RFC 3339); a time in the past means now.
    #[serde(rename = "runAt")]
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    /// How long after now the job is due, e.g. `"90s"`, `"15m"`, `"2h 30m"`.
    pub delay: Option<String>,
    /// -100 to 100, default 0: higher runs first among due jobs (a waiting
    /// job gains one per `queue.priority_aging`).
    #[schema(minimum = -100, maximum = 100)]
    pub priority: Option<i32>,
    /// 1 to 200 characters, no control characters: while a job of this
    /// type with this key is pending or processing, enqueueing another
    /// answers that job (200) instead.
    #[serde(rename = "uniqueKey")]
    #[schema(min_length = 1, max_length = 200)]
    pub unique_key: Option<String>,
    /// 1 to 100: attempts before the job is `failed`, instead of
    /// `queue.max_attempts`.
    #[serde(rename = "maxAttempts")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// The longest one attempt may run, instead of `queue.job_timeout`:
    /// a duration from `"10ms"` to `"24h"`, e.g. `"45s"`.
    pub timeout: Option<String>,
    /// Up to 100 ids of existing jobs this one runs after: it is `waiting`
    /// until every one of them has completed (`pending` at once if they
    /// all have). See docs/job-queue.md, "Flows".
    #[serde(rename = "dependsOn")]
    #[schema(max_items = 100, example = json!(["65f1c0ffee0000000000beef"]))]
    pub depends_on: Option<Vec<String>>,
    /// What a dependency that fails or is cancelled does to this job:
    /// `fail` (default: it ends `failed`, its `lastError` naming the
    /// dependency) or `hold` (it stays `waiting` until the dependency is
    /// retried and completes, or it is cancelled).
    #[serde(rename = "onDependencyFailure")]
    pub on_dependency_failure: Option<DependencyFailure>,
}

/// What a failed or cancelled dependency does to its dependent.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DependencyFailure {
    Fail,
    Hold,
}

/// When the job is due, as the body says.
enum Due {
    At(SystemTime),
    After(Duration),
}

/// `POST /jobs`'s body, checked.
pub struct EnqueueBody {
    kind: String,
    payload: Map<String, Value>,
    due: Option<Due>,
    priority: i32,
    unique_key: Option<String>,
    max_attempts: Option<i32>,
    timeout: Option<Duration>,
    depends_on: Vec<JobId>,
    on_dependency_failure: Option<DependencyPolicy>,
}

impl FromJson for EnqueueBody {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let kind: Option<String> = f.required("type", "a job type (a string)");
        let payload: Option<Map<String, Value>> = f.required("payload", "a JSON object");
        let due = due(f);
        let priority = priority(f);
        let unique_key: Option<String> = f.optional("uniqueKey", "a string");
        if unique_key
            .as_deref()
            .is_some_and(|k| check_unique_key(k).is_err())
        {
            f.error("uniqueKey", unique_key_rule());
        }
        let max_attempts = max_attempts(f);
        let timeout = timeout(f);
        let depends_on = depends_on(f);
        let policy: Option<String> = f.optional("onDependencyFailure", "\"fail\" or \"hold\"");
        let on_dependency_failure = policy.and_then(|p| {
            let parsed = DependencyPolicy::parse(&p);
            f.check(
                parsed.is_some(),
                "onDependencyFailure",
                "must be \"fail\" or \"hold\"",
            );
            parsed
        });
        Some(Self {
            kind: kind?,
            payload: payload?,
            due: due?,
            priority: priority?,
            unique_key,
            max_attempts: max_attempts?,
            timeout: timeout?,
            depends_on: depends_on?,
            on_dependency_failure,
        })
    }
}

/// `dependsOn`: at most [`MAX_DEPENDENCIES`] job ids (absent: none);
/// `None` if it is bad.
fn depends_on(f: &mut Fields) -> Option<Vec<JobId>> {
    const RULE: &str = "an array of job ids (24 hexadecimal digits)";
    let Some(items) = f.optional::<Vec<Value>>("dependsOn", RULE) else {
        return Some(Vec::new()); // absent (or already reported)
    };
    if items.len() > MAX_DEPENDENCIES {
        f.error(
            "dependsOn",
            format!("must hold at most {MAX_DEPENDENCIES} job ids"),
        );
        return None;
    }
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|text| text.parse::<JobId>().ok()) {
            Some(id) => ids.push(id),
            None => {
                f.error("dependsOn", format!("must be {RULE}; item {i} is not one"));
                return None;
            }
        }
    }
    Some(ids)
}

const MAX_ATTEMPTS_RULE: &str = "an integer from 1 to 100";
const TIMEOUT_RULE: &str = "a duration from 10ms to 24h, such as \"45s\"";

/// `maxAttempts` (or none: `Some(None)`); `None` if it is bad.
fn max_attempts(f: &mut Fields) -> Option<Option<i32>> {
    let Some(attempts) = f.optional::<i64>("maxAttempts", MAX_ATTEMPTS_RULE) else {
        return Some(None); // absent (or already reported)
    };
    let in_range = i32::try_from(attempts)
        .ok()
        .filter(|n| check_max_attempts(*n).is_ok());
    if in_range.is_none() {
        f.error("maxAttempts", format!("must be {MAX_ATTEMPTS_RULE}"));
        return None;
    }
    Some(in_range)
}

/// `timeout` (or none: `Some(None)`); `None` if it is bad.
fn timeout(f: &mut Fields) -> Option<Option<Duration>> {
    let Some(text) = f.optional::<String>("timeout", TIMEOUT_RULE) else {
        return Some(None);
    };
    match humantime::parse_duration(&text) {
        Ok(timeout) if check_timeout(timeout).is_ok() => Some(Some(timeout)),
        _ => {
            f.error("timeout", format!("must be {TIMEOUT_RULE}"));
            None
        }
    }
}

/// `priority`, default 0; `None` if it is out of range or no integer.
fn priority(f: &mut Fields) -> Option<i32> {
    const RULE: &str = "an integer from -100 to 100";
    let Some(priority) = f.optional::<i64>("priority", RULE) else {
        return Some(0); // absent (or already reported)
    };
    let in_range = i32::try_from(priority)
        .ok()
        .filter(|p| check_priority(*p).is_ok());
    if in_range.is_none() {
        f.error("priority", format!("must be {RULE}"));
    }
    in_range
}

fn unique_key_rule() -> String {
    format!("must be 1 to {UNIQUE_KEY_MAX_CHARS} characters, none of them control characters")
}

/// `runAt` or `delay` (or neither: `Some(None)`); `None` if either is bad
/// or both are given.
fn due(f: &mut Fields) -> Option<Option<Due>> {
    let run_at: Option<String> = f.optional("runAt", "an RFC 3339 date-time");
    let delay: Option<String> = f.optional("delay", "a duration such as \"90s\"");
    let run_at = match run_at.map(|at| chrono::DateTime::parse_from_rfc3339(&at)) {
        Some(Ok(at)) => Some(SystemTime::from(at)),
        Some(Err(_)) => {
            f.error(
                "runAt",
                "must be an RFC 3339 date-time, e.g. 2026-11-29T21:00:00Z",
            );
            return None;
        }
        None => None,
    };
    let delay = match delay.map(|d| humantime::parse_duration(&d)) {
        Some(Ok(delay)) => Some(delay),
        Some(Err(_)) => {
            f.error("delay", "must be a duration such as \"90s\" or \"15m\"");
            return None;
        }
        None => None,
    };
    match (run_at, delay) {
        (Some(_), Some(_)) => {
            f.error("delay", "must not be given together with runAt");
            None
        }
        (Some(at), None) => Some(Some(Due::At(at))),
        (None, Some(delay)) => Some(Some(Due::After(delay))),
        (None, None) => Some(None),
    }
}

impl EnqueueBody {
    /// The job to enqueue.
    fn spec(self) -> Result<JobSpec, SpecError> {
        let spec = JobSpec::from_json(self.kind, self.payload)?.priority(self.priority);
        let spec = match self.due {
            Some(Due::At(at)) => spec.run_at(at),
            Some(Due::After(delay)) => spec.delay(delay),
            None => spec,
        };
        let spec = match self.unique_key {
            Some(key) => spec.unique_key(key),
            None => spec,
        };
        let spec = match self.max_attempts {
            Some(attempts) => spec.max_attempts(attempts),
            None => spec,
        };
        let spec = match self.on_dependency_failure {
            Some(policy) => spec.on_dependency_failure(policy),
            None => spec,
        };
        let spec = spec.depends_on(self.depends_on);
        Ok(match self.timeout {
            Some(timeout) => spec.timeout(timeout),
            None => spec,
        })
    }
}

/// The problem a refused job is, naming the field at fault.
pub(super) fn refusal(refused: SpecError) -> ApiError {
    let message = refused.to_string();
    match refused {
        SpecError::UnknownType { registered, .. } => ApiError::field(
            "type",
            &format!(
                "must be a job type some live instance handles: {}",
                registered.join(", ")
            ),
        ),
        SpecError::PriorityOutOfRange => {
            ApiError::field("priority", "must be an integer from -100 to 100")
        }
        SpecError::BadUniqueKey => ApiError::field("uniqueKey", &unique_key_rule()),
        SpecError::PayloadTooLarge { .. } => {
            ApiError::FieldTooLarge(FieldError::new("payload", message))
        }
        SpecError::PayloadNotStorable { .. } | SpecError::PayloadRefused { .. } => {
            ApiError::field("payload", &message)
        }
        SpecError::MaxAttemptsOutOfRange => {
            ApiError::field("maxAttempts", &format!("must be {MAX_ATTEMPTS_RULE}"))
        }
        SpecError::TimeoutOutOfRange => {
            ApiError::field("timeout", &format!("must be {TIMEOUT_RULE}"))
        }
        SpecError::TooFarAhead => ApiError::field(
            "runAt",
            "must be at most ten years from now (runAt or delay)",
        ),
        SpecError::TooManyDependencies => ApiError::field(
            "dependsOn",
            &format!("must hold at most {MAX_DEPENDENCIES} job ids"),
        ),
        SpecError::UnknownDependencies { .. } => {
            ApiError::field("dependsOn", &format!("must name existing jobs: {message}"))
        }
    }
}

/// Enqueue a job of a registered type: 201 with the job (`waiting` if it
/// has `dependsOn` not all completed yet), or 200 with the waiting, pending
/// or processing job already holding `uniqueKey`.
#[utoipa::path(post, path = "/jobs", tag = "Jobs", security(("ops-token" = [])), request_body = EnqueueRequest,
    responses(
        (status = 201, description = "The job, created (as `GET /jobs/{id}` shows it)", body = JobView),
        (status = 200, description = "No job created: this pending or processing job holds `uniqueKey`", body = JobView),
        (status = 400, description = "Malformed JSON or invalid fields (each named: an unknown `type`, a `payload` that is no object or that the store cannot keep (e.g. a nested array), `runAt` with `delay`, `maxAttempts` outside 1 to 100, a `timeout` outside 10ms to 24h, `dependsOn` with more than 100 ids, one that is no id or names no job, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload` over `queue.max_payload` (named), or the body over `server.body_limit`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is unavailable, or the unique key's previous job is being released: retry shortly", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
pub(super) async fn enqueue_job(
    State(state): State<AppState>,
    _operator: Operator,
    Valid(body): Valid<EnqueueBody>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let spec = body.spec().map_err(refusal)?;
    let enqueued = state
        .actors
        .jobs
        .enqueue_spec(spec)
        .await
        .map_err(problem)?;
    let history = state
        .actors
        .queue
        .get(enqueued.id())
        .await
        .map_err(problem)?;
    let status = match enqueued {
        Enqueued::Created(_) => StatusCode::CREATED,
        Enqueued::Existing(_) => StatusCode::OK,
    };
    Ok((status, Json(history.into())))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    /// The status and field names of a refusal.
    fn answer(refused: SpecError) -> (StatusCode, Vec<String>) {
        let err = refusal(refused);
        let fields = match &err {
            ApiError::Validation(errors) => errors.iter().map(|e| e.field.clone()).collect(),
            ApiError::FieldTooLarge(error) => vec![error.field.clone()],
            _ => vec![],
        };
        (err.status(), fields)
    }

    #[test]
    fn every_refusal_is_a_4xx_naming_its_field() {
        let bad = |field: &str| (StatusCode::BAD_REQUEST, vec![field.to_owned()]);
        let unknown = SpecError::UnknownType {
            kind: "x".into(),
            registered: vec!["noop".into(), "report".into()],
        };
        assert_eq!(answer(unknown.clone()), bad("type"));
        assert_eq!(answer(SpecError::PriorityOutOfRange), bad("priority"));
        assert_eq!(answer(SpecError::BadUniqueKey), bad("uniqueKey"));
        let too_large = SpecError::PayloadTooLarge { size: 2, limit: 1 };
        let payload = vec!["payload".to_owned()];
        assert_eq!(answer(too_large), (StatusCode::PAYLOAD_TOO_LARGE, payload));
        let nested = SpecError::PayloadNotStorable {
            at: "at \"m[0]\" ".into(),
            reason: "has an array directly inside an array",
        };
        assert_eq!(answer(nested), bad("payload"));
        let refused = SpecError::PayloadRefused { code: 2 };
        assert_eq!(answer(refused), bad("payload"));
        assert_eq!(answer(SpecError::TooFarAhead), bad("runAt"));
        let attempts = SpecError::MaxAttemptsOutOfRange;
        assert_eq!(answer(attempts), bad("maxAttempts"));
        assert_eq!(answer(SpecError::TimeoutOutOfRange), bad("timeout"));
        assert_eq!(answer(SpecError::TooManyDependencies), bad("dependsOn"));
        let unknown_dep = SpecError::UnknownDependencies {
            ids: vec!["65f1c0ffee0000000000beef".parse().unwrap()],
        };
        assert_eq!(answer(unknown_dep), bad("dependsOn"));
        let ApiError::Validation(errors) = refusal(unknown) else {
            panic!("a field error")
        };
        assert!(
            errors[0].message.ends_with("noop, report"),
            "{}",
            errors[0].message
        );
    }
}

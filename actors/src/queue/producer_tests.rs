//! The producer's admission: spec → job (types, priorities, delays, unique
//! keys, payload limits), at a fixed time.

use std::time::{Duration, SystemTime};

use mongodb::bson::{doc, DateTime};

use super::*;
use crate::queue::job::JobStatus;

const AGING: Duration = Duration::from_secs(10);

fn rules() -> Admission {
    Admission {
        types: Arc::new(JobTypes::new(["report.build"])),
        max_payload: 256,
        aging: AGING,
        hold: Duration::from_secs(30),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn admitted(spec: JobSpec) -> Job {
    admit(spec, &rules(), 5, now()).expect("admitted")
}

fn refused(spec: JobSpec) -> QueueError {
    admit(spec, &rules(), 5, now()).expect_err("refused")
}

fn spec() -> JobSpec {
    JobSpec::new("report.build", doc! { "account": "a-17" })
}

#[test]
fn a_plain_spec_is_a_pending_job_due_now_ranked_by_its_enqueue() {
    let job = admitted(spec());
    let at = DateTime::from(now());
    assert_eq!(job.kind, "report.build");
    assert_eq!(job.payload, doc! { "account": "a-17" });
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!((job.attempts, job.max_attempts), (0, 5));
    assert_eq!((job.run_at, job.created_at, job.rank), (at, at, Some(at)));
    assert_eq!((job.priority, job.unique_key), (0, None));
}

#[test]
fn a_delay_makes_the_job_due_later_and_ranks_it_from_then() {
    let job = admitted(spec().delay(Duration::from_secs(90)));
    let due = DateTime::from(now() + Duration::from_secs(90));
    assert_eq!(job.run_at, due);
    assert_eq!(job.rank, Some(due));
    assert_eq!(job.created_at, DateTime::from(now()));
}

#[test]
fn run_at_in_the_past_is_due_at_once_and_ranked_from_the_enqueue() {
    let job = admitted(spec().run_at(now() - Duration::from_secs(3_600)));
    assert_eq!(
        job.run_at,
        DateTime::from(now() - Duration::from_secs(3_600))
    );
    // Back-dating does not jump the line.
    assert_eq!(job.rank, Some(DateTime::from(now())));
}

#[test]
fn a_higher_priority_ranks_earlier_by_priority_times_aging() {
    let high = admitted(spec().priority(10));
    let low = admitted(spec().priority(-3));
    let at = now();
    assert_eq!(high.priority, 10);
    assert_eq!(high.rank, Some(DateTime::from(at - AGING * 10)));
    assert_eq!(low.rank, Some(DateTime::from(at + AGING * 3)));
}

#[test]
fn a_priority_out_of_range_is_refused() {
    for priority in [-101, 101, i32::MAX] {
        let err = refused(spec().priority(priority));
        assert!(
            matches!(err, QueueError::Refused(SpecError::PriorityOutOfRange)),
            "{priority}: {err:?}"
        );
    }
}

#[test]
fn a_unique_key_is_kept_and_a_bad_one_refused() {
    assert_eq!(
        admitted(spec().unique_key("report:a-17"))
            .unique_key
            .as_deref(),
        Some("report:a-17")
    );
    for bad in ["", "a\u{1f}b", "line\nbreak"] {
        let err = refused(spec().unique_key(bad));
        assert!(
            matches!(err, QueueError::Refused(SpecError::BadUniqueKey)),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn an_unregistered_type_is_refused_naming_the_registered_ones() {
    let err = refused(JobSpec::new("nope", doc! {}));
    match err {
        QueueError::Refused(SpecError::UnknownType { kind, registered }) => {
            assert_eq!(kind, "nope");
            assert_eq!(registered, ["report.build"]);
        }
        other => panic!("expected UnknownType, got {other:?}"),
    }
}

#[test]
fn a_payload_over_the_limit_is_refused_with_its_stored_size() {
    let big = JobSpec::new("report.build", doc! { "blob": "x".repeat(300) });
    match refused(big) {
        QueueError::Refused(SpecError::PayloadTooLarge { size, limit }) => {
            assert_eq!(limit, 256);
            assert!(size > 300, "{size}");
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    // Just under the limit is fine.
    admitted(JobSpec::new(
        "report.build",
        doc! { "blob": "x".repeat(200) },
    ));
}

#[test]
fn a_job_due_past_ten_years_is_refused() {
    let err = refused(spec().delay(Duration::from_secs(11 * 366 * 86_400)));
    assert!(
        matches!(err, QueueError::Refused(SpecError::TooFarAhead)),
        "{err:?}"
    );
}

#[test]
fn a_spec_may_set_its_own_attempts_and_timeout_in_place_of_the_queues() {
    let plain = admitted(spec());
    assert_eq!((plain.max_attempts, plain.timeout_ms), (5, None));
    let own = admitted(spec().max_attempts(2).timeout(Duration::from_millis(1500)));
    assert_eq!((own.max_attempts, own.timeout_ms), (2, Some(1500)));
    assert_eq!(
        own.timeout(Duration::from_secs(20)),
        Duration::from_millis(1500)
    );
    assert_eq!(
        plain.timeout(Duration::from_secs(20)),
        Duration::from_secs(20)
    );
}

#[test]
fn attempts_and_timeouts_out_of_range_are_refused() {
    for attempts in [0, -1, 101] {
        assert!(matches!(
            refused(spec().max_attempts(attempts)),
            QueueError::Refused(SpecError::MaxAttemptsOutOfRange)
        ));
    }
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(9),
        Duration::from_secs(24 * 3600 + 1),
    ] {
        assert!(matches!(
            refused(spec().timeout(timeout)),
            QueueError::Refused(SpecError::TimeoutOutOfRange)
        ));
    }
    admitted(
        spec()
            .max_attempts(100)
            .timeout(Duration::from_secs(24 * 3600)),
    );
    admitted(spec().max_attempts(1).timeout(Duration::from_millis(10)));
}

#[test]
fn a_job_with_dependencies_is_admitted_waiting_each_dependency_once_with_its_policy() {
    use crate::queue::dependency::{DependencyPolicy, MAX_DEPENDENCIES};
    let (a, b): (JobId, JobId) = (ObjectId::new().into(), ObjectId::new().into());
    let job = admitted(
        spec()
            .depends_on([a, b, a])
            .on_dependency_failure(DependencyPolicy::Hold),
    );
    assert_eq!(job.status, JobStatus::Waiting);
    assert_eq!(job.depends_on, [a.object_id(), b.object_id()]);
    assert_eq!(job.on_dependency_failure, Some(DependencyPolicy::Hold));
    assert_eq!(admitted(spec()).status, JobStatus::Pending);

    let many = (0..=MAX_DEPENDENCIES).map(|_| JobId::from(ObjectId::new()));
    assert!(matches!(
        refused(spec().depends_on(many)),
        QueueError::Refused(SpecError::TooManyDependencies)
    ));
    let most = (0..MAX_DEPENDENCIES).map(|_| JobId::from(ObjectId::new()));
    admitted(spec().depends_on(most));
}

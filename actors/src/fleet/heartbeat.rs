//! What an instance publishes about itself ([`Heartbeat`], [`PublishedTree`])
//! and the pure rules the registry applies to it: which instances are
//! suspected dead ([`suspects`]), how old a heartbeat is ([`age_ms`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The largest actor-tree snapshot published (bytes of JSON). The tree is a
/// few KB; past this it is left out of the heartbeat (and a warning logged)
/// rather than letting one instance fill Redis or another's memory.
pub const MAX_TREE_BYTES: usize = 64 * 1024;

/// One instance as it last described itself. Stored as JSON; every field
/// but the id has a default, so an instance of another version that adds or
/// drops a field is still listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The instance id, as written to the jobs it holds (`lockedBy`).
    pub id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub version: String,
    #[serde(default = "epoch")]
    pub started_at: DateTime<Utc>,
    /// When it wrote this heartbeat (its own clock).
    #[serde(default = "epoch")]
    pub at: DateTime<Utc>,
    /// Whether its start-up indexes exist and its actor tree is healthy.
    #[serde(default)]
    pub ready: bool,
    /// Its executor pool; `None` if its poller did not answer in time.
    #[serde(default)]
    pub pool: Option<PoolFigures>,
    /// The jobs its executors run.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// The job types it has handlers for: the only ones it claims
    /// ([`crate::queue::types`]). Empty from an instance of a version that
    /// does not publish them.
    #[serde(default)]
    pub job_types: Vec<String>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// The size of an instance's executor pool and how many executors are busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFigures {
    pub size: usize,
    pub busy: usize,
}

/// An instance's actor tree as its own `/ops/actors` rendered it, and when.
/// Opaque JSON here: the HTTP layer owns that view, so an instance of another
/// version is shown exactly as it shows itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedTree {
    pub at: DateTime<Utc>,
    pub tree: serde_json::Value,
}

/// Milliseconds from `at` to `now`; 0 if `at` is ahead (another host's clock).
pub fn age_ms(at: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    (now - at).num_milliseconds().max(0) as u64
}

/// The members of the instance set (`(id, last seen in ms since the epoch)`)
/// not heard from for longer than `ttl` at `now_ms`, except `me`: the
/// instances to try to take over. Only a suspicion: the take-over itself
/// checks, in Redis, that the instance's heartbeat key is gone (Redis's
/// clock, not ours), so a clock skew between hosts can delay a failover but
/// never fail over a live instance.
pub fn suspects<'a>(
    members: &'a [(String, f64)],
    me: &str,
    now_ms: i64,
    ttl: Duration,
) -> Vec<(&'a str, f64)> {
    let cutoff = now_ms as f64 - ttl.as_millis() as f64;
    members
        .iter()
        .filter(|(id, seen)| id != me && *seen < cutoff)
        .map(|(id, seen)| (id.as_str(), *seen))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<(String, f64)> {
        vec![
            ("fresh".into(), 10_000.0),
            ("just-within".into(), 4_000.0),
            ("just-past".into(), 3_999.0),
            ("long-gone".into(), 0.0),
            ("me".into(), 0.0),
        ]
    }

    #[test]
    fn members_not_heard_from_for_longer_than_the_ttl_are_suspects() {
        let members = members();
        let found = suspects(&members, "me", 10_000, Duration::from_secs(6));
        let ids: Vec<&str> = found.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, ["just-past", "long-gone"]);
        assert_eq!(found[0].1, 3_999.0, "with the score they were last seen at");
    }

    #[test]
    fn an_instance_never_suspects_itself() {
        let members = members();
        let found = suspects(&members, "me", 1_000_000, Duration::from_secs(6));
        assert!(found.iter().all(|(id, _)| *id != "me"));
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn nobody_is_suspected_within_the_ttl() {
        let members = members();
        assert!(suspects(&members, "me", 0, Duration::from_secs(6)).is_empty());
        assert!(suspects(&[], "me", 10_000, Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn a_heartbeat_round_trips_through_its_json() {
        let beat = Heartbeat {
            id: "host-1-abc123".into(),
            host: "host".into(),
            version: "0.1.0".into(),
            started_at: DateTime::from_timestamp_millis(1_000).unwrap(),
            at: DateTime::from_timestamp_millis(2_000).unwrap(),
            ready: true,
            pool: Some(PoolFigures { size: 4, busy: 1 }),
            jobs: vec!["65f1c0ffee0000000000beef".into()],
            job_types: vec!["noop".into(), "report.build".into()],
        };
        let json = serde_json::to_value(&beat).unwrap();
        assert_eq!(json["startedAt"], "1970-01-01T00:00:01Z");
        assert_eq!(
            json["jobTypes"],
            serde_json::json!(["noop", "report.build"])
        );
        assert_eq!(json["pool"]["busy"], 1);
        assert_eq!(serde_json::from_value::<Heartbeat>(json).unwrap(), beat);
    }

    #[test]
    fn a_heartbeat_of_another_version_with_fields_missing_or_added_still_reads() {
        let json = r#"{"id": "other", "ready": true, "color": "blue"}"#;
        let beat: Heartbeat = serde_json::from_str(json).unwrap();
        assert_eq!(beat.id, "other");
        assert!(beat.ready);
        assert_eq!(beat.pool, None);
        assert!(beat.jobs.is_empty());
        assert!(serde_json::from_str::<Heartbeat>(r#"{"ready": true}"#).is_err());
    }

    #[test]
    fn age_is_never_negative() {
        let (early, late) = (
            DateTime::from_timestamp_millis(1_000).unwrap(),
            DateTime::from_timestamp_millis(1_250).unwrap(),
        );
        assert_eq!(age_ms(early, late), 250);
        assert_eq!(age_ms(late, early), 0);
    }
}

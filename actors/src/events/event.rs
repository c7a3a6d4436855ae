//! The domain events: [`Event`] (what happened, with its ids), its
//! [`EventKind`] (which kind of thing happened: what subscribers filter on,
//! `/ops/events?kinds=` accepts and `/metrics` counts by), and
//! [`Published`], an event as the bus carries it.
//!
//! JSON: `{"seq":7,"at":"…","instance":"…","kind":"UserCreated","user_id":"…"}`
//! — the envelope's fields, then the kind's name under `kind`, then the
//! event's. The same JSON carries an event to the other instances of the
//! fleet (see [`crate::events::relay`]), so it also deserialises.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumString, IntoStaticStr, VariantArray};

use crate::trace::Parent;

/// What happened. Ids only: never a secret, a token or a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EnumDiscriminants)]
// Fields are camelCase, as every ops endpoint writes them; the snake_case
// names of earlier versions are still read, so this version reads the
// events older instances relay during a rolling deploy.
#[serde(tag = "kind", rename_all_fields = "camelCase")]
#[strum_discriminants(
    name(EventKind),
    doc = "Which kind of [`Event`] happened; its name (`UserCreated`, …) is the variant's.",
    derive(Hash, PartialOrd, Ord, IntoStaticStr, EnumString, VariantArray)
)]
pub enum Event {
    UserCreated {
        #[serde(alias = "user_id")]
        user_id: String,
    },
    UserLoggedIn {
        #[serde(alias = "user_id")]
        user_id: String,
        #[serde(alias = "session_id")]
        session_id: String,
    },
    UserLoggedOut {
        #[serde(alias = "user_id")]
        user_id: String,
        #[serde(alias = "session_id")]
        session_id: String,
    },
    TokensRefreshed {
        #[serde(alias = "user_id")]
        user_id: String,
        #[serde(alias = "session_id")]
        session_id: String,
    },
    RefreshTokenReuseDetected {
        #[serde(alias = "user_id")]
        user_id: String,
        #[serde(alias = "session_id")]
        session_id: String,
    },
    /// The user changed their password in session `session_id`; every
    /// other session of theirs was ended.
    PasswordChanged {
        user_id: String,
        session_id: String,
    },
    /// The user ended their session `session_id` (`DELETE
    /// /users/sessions/{id}`).
    SessionEnded {
        user_id: String,
        session_id: String,
    },
    /// The user ended `ended` sessions, every one but `session_id`.
    OtherSessionsEnded {
        user_id: String,
        session_id: String,
        ended: u64,
    },
    ProfileUpdated {
        #[serde(alias = "user_id")]
        user_id: String,
    },
    JobCompleted {
        #[serde(alias = "job_id")]
        job_id: String,
        #[serde(alias = "job_type")]
        job_type: String,
        attempt: i32,
    },
    JobFailed {
        #[serde(alias = "job_id")]
        job_id: String,
        #[serde(alias = "job_type")]
        job_type: String,
        attempt: i32,
        error: String,
    },
    /// An operator cancelled the job; `attempt` is the attempt it stopped
    /// (0 or the last one ended, if it was pending).
    JobCancelled {
        #[serde(alias = "job_id")]
        job_id: String,
        #[serde(alias = "job_type")]
        job_type: String,
        attempt: i32,
    },
    /// A running job's handler reported progress (written to the job
    /// first; at most one per job per `queue.progress_interval`).
    JobProgress {
        job_id: String,
        job_type: String,
        attempt: i32,
        /// 0 to 100.
        percent: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Jobs of these types are due on the publishing instance and it does
    /// not start them at once: idle pollers elsewhere list the queue now
    /// rather than at their next tick ([`crate::queue`]'s fleet wake-up;
    /// coalesced, at most one per instance every few milliseconds).
    JobsWaiting {
        #[serde(alias = "job_types")]
        job_types: Vec<String>,
    },
    ActorRestarted {
        actor: String,
        reason: String,
        restarts: u64,
    },
    /// A supervisor gave up on an actor (restart limit exceeded).
    ActorEscalated {
        actor: String,
        reason: String,
    },
    FaultInjected {
        actor: String,
        fault: String,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.into()
    }
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [EventKind] = <Self as VariantArray>::VARIANTS;

    /// The kind's name, as JSON shows it and subscribers filter on it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every kind's name, in declaration order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|kind| kind.as_str())
    }
}

/// An event as the bus carries it: stamped with a per-process sequence
/// number, the time it was published and the instance it was published on
/// (`seq` counts per instance: `(instance, seq)` names an event in the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub seq: u64,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The id of the instance it was published on.
    pub instance: Arc<str>,
    #[serde(flatten)]
    pub event: Event,
    /// The publisher's span, in this process only (never serialised: an
    /// event relayed from another instance has none): each subscriber's
    /// handling is its child.
    #[serde(skip)]
    pub trace: Parent,
}

impl Published {
    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// One event of every kind, in declaration order.
    fn one_of_each() -> Vec<Event> {
        let id = || "65f1c0ffee0000000000beef".to_string();
        let (user_id, session_id) = (id(), "s1".to_string());
        let actor = || "cache".to_string();
        vec![
            Event::UserCreated { user_id: id() },
            Event::UserLoggedIn {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::UserLoggedOut {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::TokensRefreshed {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::RefreshTokenReuseDetected {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::PasswordChanged {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::SessionEnded {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Event::OtherSessionsEnded {
                user_id,
                session_id,
                ended: 2,
            },
            Event::ProfileUpdated { user_id: id() },
            Event::JobCompleted {
                job_id: id(),
                job_type: "noop".into(),
                attempt: 1,
            },
            Event::JobFailed {
                job_id: id(),
                job_type: "noop".into(),
                attempt: 2,
                error: "boom".into(),
            },
            Event::JobCancelled {
                job_id: id(),
                job_type: "noop".into(),
                attempt: 1,
            },
            Event::JobProgress {
                job_id: id(),
                job_type: "sleep".into(),
                attempt: 1,
                percent: 40,
                message: Some("slept 400 of 1000 ms".into()),
            },
            Event::JobsWaiting {
                job_types: vec!["noop".into()],
            },
            Event::ActorRestarted {
                actor: actor(),
                reason: "panicked".into(),
                restarts: 1,
            },
            Event::ActorEscalated {
                actor: actor(),
                reason: "budget spent".into(),
            },
            Event::FaultInjected {
                actor: actor(),
                fault: "panic".into(),
            },
        ]
    }

    #[test]
    fn every_kind_is_listed_once_with_a_unique_name() {
        let kinds: Vec<EventKind> = one_of_each().iter().map(Event::kind).collect();
        assert_eq!(kinds, EventKind::ALL, "ALL lists every variant, in order");
        let names: HashSet<&str> = EventKind::names().collect();
        assert_eq!(names.len(), EventKind::ALL.len(), "names are unique");
    }

    #[test]
    fn a_kind_is_named_as_json_shows_it_and_parses_back() {
        for event in one_of_each() {
            let json = serde_json::to_value(&event).unwrap();
            let kind = event.kind();
            assert_eq!(json["kind"], kind.as_str());
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("NoSuchKind".parse::<EventKind>().is_err());
        assert!(
            "usercreated".parse::<EventKind>().is_err(),
            "names are exact"
        );
    }

    #[test]
    fn published_json_is_the_envelope_then_the_kind_then_the_event() {
        let published = Published {
            seq: 7,
            at: "2026-11-29T07:30:00Z".parse().unwrap(),
            instance: "web-1-41-a1b2c3".into(),
            event: Event::UserCreated {
                user_id: "65f1c0ffee0000000000beef".into(),
            },
            trace: Parent::default(),
        };
        assert_eq!(
            serde_json::to_string(&published).unwrap(),
            r#"{"seq":7,"at":"2026-11-29T07:30:00.000Z","instance":"web-1-41-a1b2c3","kind":"UserCreated","userId":"65f1c0ffee0000000000beef"}"#
        );
    }

    #[test]
    fn an_event_an_older_instance_relayed_with_snake_case_fields_still_reads() {
        let json = r#"{"seq":9,"at":"2026-11-29T07:30:00.123456Z","instance":"web-2","kind":"JobCompleted","job_id":"j1","job_type":"noop","attempt":1}"#;
        let back: Published = serde_json::from_str(json).unwrap();
        let expected = Event::JobCompleted {
            job_id: "j1".into(),
            job_type: "noop".into(),
            attempt: 1,
        };
        assert_eq!(back.event, expected);
        let again = serde_json::to_value(&back).unwrap();
        assert_eq!(again["jobId"], "j1", "written back camelCase: {again}");
        assert_eq!(again["at"], "2026-11-29T07:30:00.123Z");
    }

    #[test]
    fn every_kind_reads_back_from_its_json() {
        for event in one_of_each() {
            let published = Published {
                seq: 3,
                at: "2026-11-29T07:30:00.123Z".parse().unwrap(),
                instance: "web-1-41-a1b2c3".into(),
                event,
                trace: Parent::default(),
            };
            let json = serde_json::to_string(&published).unwrap();
            let back: Published = serde_json::from_str(&json).unwrap();
            assert_eq!(back, published, "{json}");
        }
    }
}

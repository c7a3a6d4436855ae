//! One event as an entry of the fleet's stream, and back.
//!
//! Fields: `i`, the id of the instance it was published on — read first, so
//! a relay skips its own instance's entries without parsing them (its local
//! subscribers had them in-process already) — and `e`, the event as JSON
//! ([`Published`], the same JSON `/ops/events` shows).

use redis::streams::StreamId;

use crate::events::event::Published;

/// The field naming the instance an entry was published on.
pub const INSTANCE: &str = "i";
/// The field holding the event as JSON.
pub const EVENT: &str = "e";

/// The fields of `published`'s stream entry, in order.
pub fn fields(published: &Published) -> Result<[(&'static str, String); 2], serde_json::Error> {
    Ok([
        (INSTANCE, published.instance.to_string()),
        (EVENT, serde_json::to_string(published)?),
    ])
}

/// What the reader makes of one entry.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Published on this instance: skipped.
    Own,
    /// Published on another instance: for this instance's bus.
    Foreign(Published),
}

/// An entry that is not an event this instance can read (another version's
/// event kind, or not written by a relay at all).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("stream entry {id} lacks the field {field:?}")]
    Missing { id: String, field: &'static str },
    #[error("stream entry {id} holds no event this instance knows")]
    Event {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stream entry {id} says instance {said:?}, its event {inside:?}")]
    Mismatch {
        id: String,
        said: String,
        inside: String,
    },
}

/// Read `entry` as the relay of instance `own` does.
pub fn read(entry: &StreamId, own: &str) -> Result<Read, EntryError> {
    let missing = |field| EntryError::Missing {
        id: entry.id.clone(),
        field,
    };
    let instance: String = entry.get(INSTANCE).ok_or_else(|| missing(INSTANCE))?;
    if instance == own {
        return Ok(Read::Own);
    }
    let json: String = entry.get(EVENT).ok_or_else(|| missing(EVENT))?;
    let published: Published = serde_json::from_str(&json).map_err(|source| EntryError::Event {
        id: entry.id.clone(),
        source,
    })?;
    // The tag is what the skip rule trusts: it must be the event's own.
    if *published.instance != *instance {
        return Err(EntryError::Mismatch {
            id: entry.id.clone(),
            said: instance,
            inside: published.instance.to_string(),
        });
    }
    Ok(Read::Foreign(published))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use redis::Value;

    use super::*;
    use crate::events::Event;

    fn published_on(instance: &str) -> Published {
        Published {
            seq: 9,
            at: "2026-11-29T07:30:00.5Z".parse().unwrap(),
            instance: instance.into(),
            event: Event::ProfileUpdated {
                user_id: "65f1c0ffee0000000000beef".into(),
            },
            trace: Default::default(),
        }
    }

    fn entry(fields: &[(&str, &str)]) -> StreamId {
        StreamId {
            id: "1764401400000-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
                .collect::<HashMap<_, _>>(),
            milliseconds_elapsed_from_delivery: None,
            delivered_count: None,
        }
    }

    fn encoded(published: &Published) -> StreamId {
        let fields = fields(published).unwrap();
        entry(&fields.each_ref().map(|(k, v)| (*k, v.as_str())))
    }

    #[test]
    fn another_instances_event_reads_back_as_it_was_published() {
        let published = published_on("web-2-7-cafe01");
        let read = read(&encoded(&published), "web-1-41-a1b2c3").unwrap();
        assert_eq!(read, Read::Foreign(published));
    }

    #[test]
    fn an_instance_skips_its_own_entries_without_parsing_them() {
        let own = "web-1-41-a1b2c3";
        assert_eq!(read(&encoded(&published_on(own)), own).unwrap(), Read::Own);
        let unparsable = entry(&[(INSTANCE, own), (EVENT, "not json")]);
        assert_eq!(read(&unparsable, own).unwrap(), Read::Own);
    }

    #[test]
    fn an_entry_that_is_not_a_readable_event_is_an_error_not_a_panic() {
        let own = "me";
        let no_tag = entry(&[(EVENT, "{}")]);
        assert!(matches!(
            read(&no_tag, own),
            Err(EntryError::Missing { field: "i", .. })
        ));
        let no_event = entry(&[(INSTANCE, "other")]);
        assert!(matches!(
            read(&no_event, own),
            Err(EntryError::Missing { field: "e", .. })
        ));
        let unknown_kind =
            r#"{"seq":1,"at":"2026-11-29T07:30:00Z","instance":"other","kind":"Teleported"}"#;
        let future = entry(&[(INSTANCE, "other"), (EVENT, unknown_kind)]);
        assert!(matches!(read(&future, own), Err(EntryError::Event { .. })));
    }

    #[test]
    fn an_entry_whose_tag_is_not_its_events_instance_is_refused() {
        // Else an entry tagged with another id could slip this instance's own
        // events past the skip rule and deliver them twice.
        let mut fields = fields(&published_on("me")).unwrap();
        fields[0].1 = "other".into();
        let forged = entry(&fields.each_ref().map(|(k, v)| (*k, v.as_str())));
        assert!(matches!(
            read(&forged, "me"),
            Err(EntryError::Mismatch { .. })
        ));
    }
}

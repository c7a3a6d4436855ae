//! What is paused, as stored in `queue_pauses` (what a pause means is
//! [`crate::queue::pause`]'s): the documents, and the filter that keeps
//! paused types out of listings and claims.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};

use super::PAUSES;
use crate::queue::error::QueueError;
use crate::queue::pause::{PauseTarget, Pauses};

/// The `_id` of the whole queue's pause.
const QUEUE_ID: &str = "queue";
/// The prefix of a type's pause `_id`.
const TYPE_PREFIX: &str = "type:";

impl Pauses {
    /// Restrict a job filter to the types that may be claimed: of
    /// `handled` (this instance's types; `None`: any type), those not
    /// paused — `type: {$in: [...]}`, or `type: {$nin: [paused]}` for any
    /// type (nothing if no type is paused).
    pub(crate) fn restrict(&self, handled: Option<&BTreeSet<String>>, filter: &mut Document) {
        match handled {
            Some(handled) => {
                let types: Vec<&str> = (handled.difference(&self.types))
                    .map(String::as_str)
                    .collect();
                filter.insert("type", doc! { "$in": types });
            }
            None if !self.types.is_empty() => {
                let types: Vec<&str> = self.types.iter().map(String::as_str).collect();
                filter.insert("type", doc! { "$nin": types });
            }
            None => {}
        }
    }

    /// Whether a job of type `kind` may be claimed: what
    /// [`restrict`](Self::restrict) lets through, as one type's equality.
    pub(crate) fn allows(&self, handled: Option<&BTreeSet<String>>, kind: &str) -> bool {
        handled.is_none_or(|handled| handled.contains(kind)) && !self.types.contains(kind)
    }

    /// The pauses whose documents have these `_id`s (others are ignored).
    fn from_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut pauses = Self::default();
        for id in ids {
            if id == QUEUE_ID {
                pauses.queue = true;
            } else if let Some(kind) = id.strip_prefix(TYPE_PREFIX) {
                pauses.types.insert(kind.to_owned());
            }
        }
        pauses
    }
}

impl PauseTarget {
    fn id(&self) -> String {
        match self {
            Self::Queue => QUEUE_ID.into(),
            Self::Type(kind) => format!("{TYPE_PREFIX}{kind}"),
        }
    }
}

/// The `queue_pauses` collection.
#[derive(Clone)]
pub struct PauseStore {
    pauses: Collection<Document>,
}

impl PauseStore {
    pub fn new(db: &Database) -> Self {
        Self {
            pauses: db.collection(PAUSES),
        }
    }

    /// Everything paused now.
    pub async fn read(&self) -> Result<Pauses, QueueError> {
        let docs: Vec<Document> = self
            .pauses
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(Pauses::from_ids(
            docs.iter().filter_map(|d| d.get_str("_id").ok()),
        ))
    }

    /// Pause `target` (again: no change).
    pub async fn pause(&self, target: &PauseTarget) -> Result<(), QueueError> {
        self.pauses
            .update_one(
                doc! { "_id": target.id() },
                doc! { "$setOnInsert": { "since": DateTime::now() } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Resume `target` (not paused: no change).
    pub async fn resume(&self, target: &PauseTarget) -> Result<(), QueueError> {
        self.pauses.delete_one(doc! { "_id": target.id() }).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_allowed_exactly_when_the_restriction_lets_it_through() {
        let pauses = Pauses::from_ids(["type:report"]);
        let handled: BTreeSet<String> = ["noop", "report"].map(String::from).into();
        assert!(pauses.allows(Some(&handled), "noop"));
        assert!(!pauses.allows(Some(&handled), "report"), "paused");
        assert!(!pauses.allows(Some(&handled), "mail"), "not handled here");
        assert!(
            pauses.allows(None, "mail"),
            "any type, when not restricted to some"
        );
        assert!(!pauses.allows(None, "report"));
        let mut filter = Document::new();
        pauses.restrict(Some(&handled), &mut filter);
        assert_eq!(filter, doc! { "type": { "$in": ["noop"] } });
    }

    #[test]
    fn pauses_read_back_from_their_ids() {
        let ids = ["type:mail.send", "queue", "type:report", "other"];
        let pauses = Pauses::from_ids(ids);
        assert!(pauses.queue);
        assert_eq!(
            pauses.types.iter().collect::<Vec<_>>(),
            ["mail.send", "report"]
        );
        for target in [PauseTarget::Queue, PauseTarget::Type("x".into())] {
            let id = target.id();
            let read = Pauses::from_ids([id.as_str()]);
            assert_eq!(read.queue, target == PauseTarget::Queue);
        }
    }

    #[test]
    fn a_filter_keeps_the_handled_types_that_are_not_paused() {
        let handled: BTreeSet<String> = ["noop", "report"].map(String::from).into();
        let mut pauses = Pauses::default();
        let mut filter = doc! { "status": "pending" };
        pauses.restrict(Some(&handled), &mut filter);
        let expected = doc! { "status": "pending", "type": { "$in": ["noop", "report"] } };
        assert_eq!(filter, expected);
        pauses.types.extend(["report".into(), "other".into()]);
        pauses.restrict(Some(&handled), &mut filter);
        assert_eq!(
            filter,
            doc! { "status": "pending", "type": { "$in": ["noop"] } }
        );
        pauses.types.insert("noop".into());
        pauses.restrict(Some(&handled), &mut filter);
        let none: Vec<&str> = vec![];
        assert_eq!(
            filter,
            doc! { "status": "pending", "type": { "$in": none } }
        );
    }

    #[test]
    fn a_paused_type_is_blocked_and_left_out_of_filters() {
        let mut pauses = Pauses::default();
        let mut filter = doc! { "status": "pending" };
        pauses.restrict(None, &mut filter);
        assert_eq!(filter, doc! { "status": "pending" }, "nothing paused");
        pauses.types.insert("report".into());
        assert!(pauses.blocks("report") && !pauses.blocks("noop"));
        pauses.restrict(None, &mut filter);
        assert_eq!(
            filter,
            doc! { "status": "pending", "type": { "$nin": ["report"] } }
        );
        pauses.queue = true;
        assert!(pauses.blocks("noop"), "the whole queue");
    }
}

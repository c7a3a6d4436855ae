//! How many mails of one kind an account is sent per window, fleet-wide:
//! reset mails, verification resends, attack notices.
//!
//! Windows are cut from the wall clock (multiples of the window since the
//! Unix epoch), so every instance cuts the same ones. A mail takes one of
//! the window's `per_window` *slots*, each a document whose `_id` names
//! (kind, account, window, slot): a unique-key insert, atomic on MongoDB
//! and FerretDB alike, so however many instances try at once, at most
//! `per_window` mails of a kind reach an account in a window. The quota
//! only decides whether a mail is *sent*: nothing the client is answered
//! depends on it. Slots expire with their window and are deleted by the
//! UserActor's periodic prune.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::{Collection, Database};
use serde::Deserialize;

use crate::store::is_duplicate_key;
use crate::validate::{ConfigErrors, Validate};

/// `[auth.account_mails]`: reset mails and verification resends an
/// account is sent per window (each kind counted on its own).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct MailQuotaConfig {
    pub per_window: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Validate for MailQuotaConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            (1..=100).contains(&self.per_window),
            "per_window",
            "must be from 1 to 100",
        );
        errors.ensure(
            self.window >= Duration::from_secs(1),
            "window",
            "must be at least 1s",
        );
    }
}

/// The kinds of mail counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Reset,
    Verify,
    AttackNotice,
}

impl MailKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Verify => "verify",
            Self::AttackNotice => "attack",
        }
    }
}

/// What [`MailQuota::take`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Send the mail.
    Slot,
    /// The window's quota is spent: no mail until it ends.
    Spent { until: DateTime },
}

/// The slots' collection.
#[derive(Clone)]
pub struct MailQuota {
    slots: Collection<Document>,
}

/// The window `now` falls in: its index and its end.
fn window_of(now: DateTime, window: Duration) -> (i64, DateTime) {
    let width = window.as_millis().max(1) as i64;
    let index = now.timestamp_millis().div_euclid(width);
    (index, DateTime::from_millis((index + 1) * width))
}

impl MailQuota {
    pub fn new(db: &Database) -> Self {
        Self {
            slots: db.collection("mail_quota"),
        }
    }

    /// Take one of the `per_window` slots of `kind` for `user` in the window
    /// of `now`, for `by` (the job or request that sends the mail; a retry
    /// of the same `by` finds its own slot again): [`Taken::Slot`] if one
    /// was free or already `by`'s (send the mail), [`Taken::Spent`] with
    /// the window's end if the window's quota is spent.
    pub(crate) async fn take(
        &self,
        (kind, user, by): (MailKind, ObjectId, ObjectId),
        (per_window, window): (u32, Duration),
        now: DateTime,
    ) -> mongodb::error::Result<Taken> {
        let (index, ends) = window_of(now, window);
        for slot in 0..per_window {
            let id = format!("{}:{}:{}:{}", kind.as_str(), user.to_hex(), index, slot);
            let record = doc! { "_id": &id, "by": by, "expiresAt": ends };
            match self.slots.insert_one(record).await {
                Ok(_) => return Ok(Taken::Slot),
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(err),
            }
            let holder = self.slots.find_one(doc! { "_id": &id }).await?;
            if holder.is_some_and(|h| h.get_object_id("by").ok() == Some(by)) {
                return Ok(Taken::Slot);
            }
        }
        Ok(Taken::Spent { until: ends })
    }

    /// Delete the slots of windows that ended.
    pub(crate) async fn prune(&self, now: DateTime) -> mongodb::error::Result<u64> {
        let done = self
            .slots
            .delete_many(doc! { "expiresAt": { "$lte": now } })
            .await?;
        Ok(done.deleted_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_cut_from_the_epoch() {
        let hour = Duration::from_secs(3_600);
        let (index, ends) = window_of(DateTime::from_millis(3_600_000 * 5 + 1), hour);
        assert_eq!(index, 5);
        assert_eq!(ends.timestamp_millis(), 3_600_000 * 6);
        let (same, _) = window_of(DateTime::from_millis(3_600_000 * 6 - 1), hour);
        assert_eq!(same, 5);
        let (next, _) = window_of(DateTime::from_millis(3_600_000 * 6), hour);
        assert_eq!(next, 6);
    }

    #[test]
    fn a_quota_sends_something_in_a_window_of_a_second_or_more() {
        use crate::validate::refused_after;
        let ok = MailQuotaConfig {
            per_window: 3,
            window: Duration::from_secs(3_600),
        };
        assert!(refused_after(ok, |_| {}).is_empty());
        assert_eq!(refused_after(ok, |c| c.per_window = 0), ["per_window"]);
        assert_eq!(refused_after(ok, |c| c.per_window = 101), ["per_window"]);
        assert_eq!(
            refused_after(ok, |c| c.window = Duration::from_millis(999)),
            ["window"]
        );
    }
}

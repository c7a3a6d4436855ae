//! Bulk operations: retry, cancel or delete every job a filter matches, in
//! one call (`POST /jobs/bulk`).
//!
//! # Contract
//! A call takes at most `limit` matching jobs, oldest first, and applies the
//! action to each through the same store operation the single-job route
//! uses (a retry is [`JobStore::retry`](crate::queue::store::JobStore::retry),
//! a cancel [`JobStore::cancel`](crate::queue::store::JobStore::cancel), with
//! their fences, unique keys and events), a few at a time. A job the action
//! took no longer matches (a retried job is pending, a cancelled one
//! cancelled or asked to stop, a deleted one gone), so calling again goes on
//! where the last call stopped: the operation is *resumable*, and
//! [`BulkOutcome::more`] says whether to call again.
//!
//! # Failure
//! A job that changed under the call (retried, cancelled or finished by
//! someone else) is skipped: it is counted in `matched`, not in `applied`.
//! A store error ends the call with that error; what was applied stays
//! applied, and the next call resumes.

use std::time::SystemTime;

use mongodb::bson::{doc, DateTime, Document};

use crate::queue::job::JobStatus;

/// The most jobs one call may take.
pub const MAX_LIMIT: u32 = 1000;

/// How many jobs a call takes when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 100;

/// What to do with each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Put a failed job back to pending with a fresh attempt budget.
    Retry,
    /// Cancel a waiting or pending job, or ask a running one to stop.
    Cancel,
    /// Delete a finished job (completed, failed or cancelled) and its history.
    Delete,
}

impl BulkAction {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "retry" => Some(Self::Retry),
            "cancel" => Some(Self::Cancel),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Delete => "delete",
        }
    }

    /// The statuses the action applies to: a filter may narrow them, never
    /// widen them (a running job is never deleted, a completed one never
    /// retried).
    pub fn applies_to(self) -> &'static [JobStatus] {
        match self {
            Self::Retry => &[JobStatus::Failed],
            Self::Cancel => &[
                JobStatus::Waiting,
                JobStatus::Pending,
                JobStatus::Processing,
            ],
            Self::Delete => &[
                JobStatus::Completed,
                JobStatus::Failed,
                JobStatus::Cancelled,
            ],
        }
    }
}

/// Which jobs a bulk operation takes. Every part is optional; the time range
/// is on the job's creation, `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkFilter {
    pub kind: Option<String>,
    pub status: Option<JobStatus>,
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
}

/// Why a filter cannot be used with an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} applies only to {allowed} jobs")]
pub struct StatusNotApplicable {
    pub action: &'static str,
    pub allowed: String,
}

/// An action with the store query of the jobs it takes: built only from a
/// filter the action can apply to ([`BulkFilter::query`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkQuery {
    action: BulkAction,
    query: Document,
}

impl BulkQuery {
    pub fn action(&self) -> BulkAction {
        self.action
    }

    pub(crate) fn document(&self) -> &Document {
        &self.query
    }
}

impl BulkFilter {
    /// The query for the jobs `action` takes under this filter.
    pub fn query(&self, action: BulkAction) -> Result<BulkQuery, StatusNotApplicable> {
        let allowed = action.applies_to();
        let mut query = match self.status {
            Some(status) if !allowed.contains(&status) => {
                return Err(StatusNotApplicable {
                    action: action.as_str(),
                    allowed: allowed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Some(status) => doc! { "status": status.as_str() },
            None => {
                let statuses: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                doc! { "status": { "$in": statuses } }
            }
        };
        if action == BulkAction::Cancel {
            // A running job asked to stop already is on its way to `cancelled`.
            query.insert("cancelRequested", doc! { "$ne": true });
        }
        if let Some(kind) = &self.kind {
            query.insert("type", kind);
        }
        let mut created = Document::new();
        if let Some(from) = self.from {
            created.insert("$gte", DateTime::from_system_time(from));
        }
        if let Some(to) = self.to {
            created.insert("$lt", DateTime::from_system_time(to));
        }
        if !created.is_empty() {
            query.insert("createdAt", created);
        }
        Ok(BulkQuery { action, query })
    }
}

/// What a bulk call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Jobs the filter matched when the call began (all of them, not only
    /// the `limit` it took).
    pub matched: u64,
    /// Jobs the action was applied to (0 on a dry run).
    pub applied: u64,
    /// More matching jobs are left than this call took: call again.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_applies_only_to_its_statuses() {
        let retry = BulkFilter::default().query(BulkAction::Retry).unwrap();
        assert_eq!(retry.query, doc! { "status": { "$in": ["failed"] } });
        let delete = BulkFilter::default().query(BulkAction::Delete).unwrap();
        assert_eq!(
            delete.query,
            doc! { "status": { "$in": ["completed", "failed", "cancelled"] } }
        );
        let cancel = BulkFilter::default().query(BulkAction::Cancel).unwrap();
        assert_eq!(
            cancel.query,
            doc! { "status": { "$in": ["waiting", "pending", "processing"] }, "cancelRequested": { "$ne": true } }
        );
    }

    #[test]
    fn a_status_the_action_does_not_apply_to_is_refused() {
        let running = BulkFilter {
            status: Some(JobStatus::Processing),
            ..BulkFilter::default()
        };
        let refused = running.query(BulkAction::Delete).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "delete applies only to completed, failed, cancelled jobs"
        );
        assert!(running.query(BulkAction::Cancel).is_ok());
        assert!(running.query(BulkAction::Retry).is_err());
    }

    #[test]
    fn type_and_time_range_narrow_the_query() {
        let from = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        let to = from + std::time::Duration::from_secs(1);
        let filter = BulkFilter {
            kind: Some("mail.send".into()),
            status: Some(JobStatus::Failed),
            from: Some(from),
            to: Some(to),
        };
        assert_eq!(
            filter.query(BulkAction::Retry).unwrap().query,
            doc! { "status": "failed", "type": "mail.send", "createdAt": {
                "$gte": DateTime::from_millis(1_000), "$lt": DateTime::from_millis(2_000),
            } }
        );
    }

    #[test]
    fn actions_parse_from_their_names_only() {
        for action in [BulkAction::Retry, BulkAction::Cancel, BulkAction::Delete] {
            assert_eq!(BulkAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(BulkAction::parse("Retry"), None);
        assert_eq!(BulkAction::parse("purge"), None);
    }
}

//! The database before the actors use it: migrated (an empty one
//! initialised), or retried while MongoDB is unreachable at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::Database;
use tokio::task::JoinHandle;

use crate::migrate::{self, ApplyOptions, MongoLedger};
use crate::store::error_chain;

/// The service's collections: the closed set of the `collection` label of
/// `troupe_store_commands_total` (see [`crate::store::MongoCommands`]); a
/// command on any other collection counts as `other`.
pub const STORE_COLLECTIONS: &[&str] = &[
    "jobs",
    "job_attempts",
    "job_keys",
    "queue_slots",
    "queue_pauses",
    "users",
    "sessions",
    "used_refresh_tokens",
    "signup_idempotency",
    "email_deliveries",
    "login_events",
    "signing_keys",
    "mail_tokens",
    "mail_token_uses",
    "mail_quota",
    "migrations",
    "migration_locks",
];

/// Bring the database to this binary's migrations before the actors use it
/// (see [`crate::migrate`]): an empty database is initialised under the
/// lock; one already migrated is left as it is. One attempt now; if MongoDB
/// is unreachable, keep retrying (with backoff up to 30 s) in a task the
/// [`super::ActorSystem`] owns (returned); `ready` is set once the database is
/// ready. A database found to need `troupe migrate` only then (MongoDB was
/// down at start, so start-up could not refuse it) is never marked ready:
/// readiness stays 503 and the error says why.
pub(super) async fn prepare_database(
    db: Database,
    ready: Arc<AtomicBool>,
    timeout: Duration,
    instance: Arc<str>,
) -> Option<JoinHandle<()>> {
    let ledger = MongoLedger::new(&db);
    let options = ApplyOptions::new(instance.as_ref());
    let create = move || {
        let (ledger, options) = (ledger.clone(), options.clone());
        async move { migrate::initialise(&ledger, &migrate::migrations(), &options).await }
    };
    match create().await {
        Ok(_) => {
            ready.store(true, Ordering::Release);
            return None;
        }
        Err(err) if !err.is_transient() => {
            tracing::error!(target: "system", error = %err, "the database needs migrating; not ready");
            return None;
        }
        Err(err) => {
            // One line that names the setting; the retries below repeat it
            // at a growing interval (not the driver's topology dump each time).
            tracing::error!(target: "system", "MongoDB at MONGODB_URI (mongodb.uri) is unreachable at start-up: {}; the service runs but is not ready until it answers (retrying); fix: start MongoDB, or set MONGODB_URI to a reachable server", error_chain(&err))
        }
    }
    Some(tokio::spawn(async move {
        let mut delay = timeout.max(Duration::from_millis(500));
        loop {
            tokio::time::sleep(delay).await;
            match create().await {
                Ok(_) => {
                    tracing::info!(target: "system", "MongoDB answers; database ready");
                    ready.store(true, Ordering::Release);
                    return;
                }
                Err(err) if !err.is_transient() => {
                    tracing::error!(target: "system", error = %err, "the database needs migrating; not ready");
                    return;
                }
                Err(err) => {
                    tracing::warn!(target: "system", "MongoDB at MONGODB_URI still unreachable: {}", error_chain(&err));
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::STORE_COLLECTIONS;

    #[test]
    fn the_counted_collections_include_every_named_collection_of_the_service() {
        use crate::migrate::ledger::{LOCKS, RECORDS};
        use crate::queue::store::{ATTEMPTS, JOBS, KEYS, PAUSES, SLOTS};
        use crate::users::idempotency::COLLECTION;
        use crate::users::keys::COLLECTION as SIGNING_KEYS;
        for name in [
            JOBS,
            ATTEMPTS,
            KEYS,
            SLOTS,
            PAUSES,
            RECORDS,
            LOCKS,
            COLLECTION,
            SIGNING_KEYS,
        ] {
            assert!(STORE_COLLECTIONS.contains(&name), "{name}");
        }
    }
}

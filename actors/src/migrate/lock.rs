//! The migration lock: a lease held in the database, built from unique-key
//! inserts, one document per generation (`migration_locks`, `_id` the
//! generation number).
//!
//! Why not one document updated in place: FerretDB v1 has no TTL index and
//! its `findAndModify` reads then writes, so two migrators could both "take"
//! an expired lock. An insert of `_id: n + 1` is atomic on both servers: of
//! everyone who saw generation `n` released or expired, exactly one inserts
//! `n + 1`; the others get a duplicate key and read the new holder.
//!
//! # Failure
//! A migrator that crashes leaves its generation unreleased; once its
//! `expiresAt` passes, the next one takes `n + 1`. A holder renews its lease
//! while it works; a renewal that finds its generation gone or superseded
//! (it stalled past its lease and another took over) reports the lock lost,
//! and the runner stops before recording anything more.

use std::time::Duration;

use mongodb::bson::DateTime;

use super::ledger::{Ledger, LockEnd, LockRecord};
use super::MigrateError;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a holder renews it.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A held generation of the lock.
#[derive(Debug, Clone)]
pub struct Held {
    pub generation: i64,
    pub holder: String,
}

fn plus(at: DateTime, lease: Duration) -> DateTime {
    DateTime::from_millis(at.timestamp_millis() + lease.as_millis() as i64)
}

/// Whether `lock` is free to take over: released, or its lease expired.
pub fn is_free(lock: &LockRecord, now: DateTime) -> bool {
    lock.released || lock.expires_at <= now
}

/// Take the lock for `holder` once: `Ok(Err(current))` when another holds it.
pub async fn try_acquire<L: Ledger + ?Sized>(
    ledger: &L,
    holder: &str,
    lease: Duration,
) -> Result<Result<Held, LockRecord>, MigrateError> {
    loop {
        let now = ledger.now();
        let next = match ledger.latest_lock().await? {
            None => 1,
            Some(lock) if is_free(&lock, now) => lock.generation + 1,
            Some(lock) => return Ok(Err(lock)),
        };
        let record = LockRecord {
            generation: next,
            holder: holder.to_owned(),
            acquired_at: now,
            expires_at: plus(now, lease),
            released: false,
        };
        if ledger.insert_lock(&record).await? {
            return Ok(Ok(Held {
                generation: next,
                holder: holder.to_owned(),
            }));
        }
        // Another migrator inserted `next` first: read who holds it now.
    }
}

/// Take the lock, waiting up to `wait` (polling every `poll`) for its
/// holder to release it or its lease to expire. [`MigrateError::Locked`]
/// names the holder if it is still held after `wait`.
pub async fn acquire<L: Ledger + ?Sized>(
    ledger: &L,
    holder: &str,
    lease: Duration,
    wait: Duration,
    poll: Duration,
) -> Result<Held, MigrateError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match try_acquire(ledger, holder, lease).await? {
            Ok(held) => return Ok(held),
            Err(current) if tokio::time::Instant::now() >= deadline => {
                return Err(MigrateError::Locked {
                    holder: current.holder,
                    since: current.acquired_at,
                    expires: current.expires_at,
                })
            }
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// Extend `held`'s lease; [`MigrateError::LockLost`] if another took over.
pub async fn renew<L: Ledger + ?Sized>(
    ledger: &L,
    held: &Held,
    lease: Duration,
) -> Result<(), MigrateError> {
    let superseded = ledger
        .latest_lock()
        .await?
        .is_some_and(|latest| latest.generation != held.generation);
    let expires = plus(ledger.now(), lease);
    if superseded
        || !ledger
            .update_lock(
                held.generation,
                &held.holder,
                LockEnd {
                    expires_at: expires,
                    released: false,
                },
            )
            .await?
    {
        return Err(MigrateError::LockLost {
            generation: held.generation,
        });
    }
    Ok(())
}

/// Give the lock back (the next migrator need not wait for the lease).
pub async fn release<L: Ledger + ?Sized>(ledger: &L, held: &Held) -> Result<(), MigrateError> {
    ledger
        .update_lock(
            held.generation,
            &held.holder,
            LockEnd {
                expires_at: ledger.now(),
                released: true,
            },
        )
        .await?;
    Ok(())
}

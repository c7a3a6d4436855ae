//! Versioned schema migrations: an ordered list of named migrations in code
//! ([`list::migrations`]), the applied ones recorded in the `migrations`
//! collection, applied in order under a lock held in the database.
//!
//! # Contract
//! - [`apply`] applies the pending migrations in order, each recorded once
//!   done (version, name, description, compatibility, when, by which
//!   instance, its summary). Every migration is idempotent: one killed
//!   half-way is not recorded, and the next run finishes it.
//! - [`apply`] with `dry_run` plans every pending migration (what it would
//!   change, counts and conflicts) and writes nothing, not even the lock.
//!   Conflicts stop a real run before *any* migration changes anything.
//! - [`status`] lists applied, pending and unknown (newer) migrations and
//!   the lock, read only.
//! - [`readiness`] is what start-up asks, read only: serve, initialise, or
//!   refuse (pending migrations on a database with data; a breaking
//!   migration this binary does not know). It initialises an empty
//!   database, and one Troupe wrote before migrations existed (no record,
//!   no NestJS-shaped document) if every pending migration is
//!   [`Migration::before_records`].
//! - [`initialise`] is what start-up then does: apply the pending
//!   migrations under the lock (many instances starting together: one
//!   applies, the others wait and find nothing left to do).
//!
//! # Failure
//! Every error is a [`MigrateError`]; its text names what to do (run
//! `troupe migrate`, wait for or clear the lock, fix the listed documents).
//! The lock is a lease: a crashed migrator's expires (see [`lock`]).
//!
//! # Seam
//! The runner reaches the database through [`Ledger`] (records, lock, "has
//! data"), and each migration's step gets the same ledger: the unit tests run
//! the runner on an in-memory ledger; the service uses [`MongoLedger`].

mod error;
pub mod ledger;
pub mod list;
pub mod lock;
mod nestjs;
mod report;
mod runner;

pub use self::error::{MigrateError, Refusal};
pub use self::ledger::{Applied, Compat, Ledger, MongoLedger, Shape};
pub use self::list::migrations;
pub use self::report::{Outcome, Plan, Report, Status};
pub use self::runner::{apply, initialise, readiness, status, ApplyOptions, Readiness};

use futures::future::BoxFuture;

/// One migration: a version (its place in the order, never reused), a name,
/// what it does, whether binaries that predate it may serve a database it
/// was applied to, and its step.
pub struct Migration<L> {
    pub version: i32,
    pub name: &'static str,
    pub description: &'static str,
    pub compat: Compat,
    /// Whether a database Troupe wrote before migrations existed is already
    /// in this migration's state (true of the first ones only: the indexes
    /// every Troupe created at start, nothing of NestJS's to adopt). Start-up
    /// records such migrations itself on such a database.
    pub before_records: bool,
    pub step: Box<dyn Step<L>>,
}

/// What [`Step::plan`] returns: the plan, once the database was read.
pub type Planned<'a> = BoxFuture<'a, Result<Plan, MigrateError>>;
/// What [`Step::apply`] returns: the lines of its summary, once applied.
pub type Applying<'a> = BoxFuture<'a, Result<Vec<String>, MigrateError>>;

/// What a migration does. Both methods are idempotent; `plan` writes nothing.
pub trait Step<L>: Send + Sync {
    /// What `apply` would change on the database as it is: lines for the
    /// report, and conflicts (documents that stop the migration).
    fn plan<'a>(&'a self, on: &'a L) -> Planned<'a>;
    /// Make the change; the lines of its summary. Run again after a crash
    /// half-way, it finishes what is left.
    fn apply<'a>(&'a self, on: &'a L) -> Applying<'a>;
}

#[cfg(test)]
mod tests;

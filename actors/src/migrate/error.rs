//! [`MigrateError`] and [`Refusal`]: why migrations did not run, or why the
//! service will not serve a database. Every text says what to do next.

use std::fmt;

use mongodb::bson::DateTime;

use crate::store::StoreError;

/// Why the service refuses to serve a database (start-up, before binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The database holds data and these migrations (version, name) are
    /// pending.
    Pending(Vec<(i32, String)>),
    /// A newer binary applied these breaking migrations, which this binary
    /// does not know.
    NewerBreaking(Vec<(i32, String)>),
}

fn listed(migrations: &[(i32, String)]) -> String {
    migrations
        .iter()
        .map(|(version, name)| format!("{version} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pending(pending) => write!(
                f,
                "the database has data and pending migrations ({}): run `troupe migrate` \
                 (`troupe migrate --dry-run` shows what it changes), then start the service",
                listed(pending)
            ),
            Self::NewerBreaking(unknown) => write!(
                f,
                "the database was migrated by a newer Troupe: breaking migrations unknown to \
                 this binary ({}); run a binary that knows them",
                listed(unknown)
            ),
        }
    }
}

/// A time as the API writes times ([`crate::rfc3339`]); a date outside
/// its years in BSON's own notation.
pub(super) fn rfc3339(at: DateTime) -> String {
    crate::rfc3339::format_bson(at).unwrap_or_else(|| at.to_string())
}

/// Why [`super::apply`] (or start-up) could not migrate.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the database at MONGODB_URI (mongodb.uri) is unreachable or failed")]
    Store(#[from] StoreError),
    #[error(
        "another migrator holds the lock ({holder}, since {}, lease until {}); \
         wait for it to finish, or for its lease to expire if it crashed",
        rfc3339(*.since),
        rfc3339(*.expires)
    )]
    Locked {
        holder: String,
        since: DateTime,
        expires: DateTime,
    },
    #[error("the migration lock (generation {generation}) was lost to another migrator; run `troupe migrate` again")]
    LockLost { generation: i64 },
    #[error("{0}")]
    Refused(Refusal),
    #[error("migration {version} {name} cannot run until these are fixed (nothing was changed):\n{}", .conflicts.join("\n"))]
    Conflicts {
        version: i32,
        name: String,
        conflicts: Vec<String>,
    },
    #[error("migration {version} {name} failed: {message}")]
    Step {
        version: i32,
        name: String,
        message: String,
    },
}

impl From<mongodb::error::Error> for MigrateError {
    fn from(err: mongodb::error::Error) -> Self {
        Self::Store(StoreError::Mongo(err))
    }
}

impl MigrateError {
    /// Whether retrying later may help (the store, the lock), as opposed to
    /// a state someone must change first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Store(_) | Self::Locked { .. } | Self::LockLost { .. }
        )
    }
}

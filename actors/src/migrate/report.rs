//! What the runner hands back: [`Plan`] (one migration's dry run),
//! [`Report`] (a run) and [`Status`]; each prints as the CLI shows it.

use std::fmt;

use super::error::rfc3339;
use super::ledger::{Applied, Compat, LockRecord};

/// What one migration would change: report lines, and conflicts (each a
/// document or group of documents that stops it until fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<String>,
    pub conflicts: Vec<String>,
}

/// One pending migration in a run: what it would change (dry run) or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub version: i32,
    pub name: String,
    pub compat: Compat,
    /// Dry run: the plan's lines; otherwise the step's summary.
    pub lines: Vec<String>,
    pub conflicts: Vec<String>,
}

/// A run of [`super::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    /// The pending migrations, in order.
    pub migrations: Vec<Outcome>,
}

impl Report {
    /// Whether any migration has conflicts (a dry run lists them; a real
    /// run stops on them).
    pub fn has_conflicts(&self) -> bool {
        self.migrations.iter().any(|m| !m.conflicts.is_empty())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.migrations.is_empty() {
            return writeln!(f, "no pending migrations: the database is up to date");
        }
        let verb = if self.dry_run {
            "would apply"
        } else {
            "applied"
        };
        for m in &self.migrations {
            writeln!(f, "{verb} {} {} ({})", m.version, m.name, m.compat.as_str())?;
            for line in &m.lines {
                writeln!(f, "  {line}")?;
            }
            for conflict in &m.conflicts {
                writeln!(f, "  CONFLICT {conflict}")?;
            }
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was changed")?;
        }
        Ok(())
    }
}

/// What [`super::status`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub applied: Vec<Applied>,
    /// Known to this binary, not applied: (version, name, compat).
    pub pending: Vec<(i32, &'static str, Compat)>,
    /// Applied by a newer binary, unknown to this one.
    pub unknown: Vec<Applied>,
    /// The newest lock generation, if it is held (unreleased, unexpired).
    pub lock: Option<LockRecord>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.applied {
            writeln!(
                f,
                "applied  {} {} ({}) at {} by {}",
                a.version,
                a.name,
                a.compat.as_str(),
                rfc3339(a.applied_at),
                a.by
            )?;
        }
        for (version, name, compat) in &self.pending {
            writeln!(f, "pending  {version} {name} ({})", compat.as_str())?;
        }
        for a in &self.unknown {
            writeln!(
                f,
                "unknown  {} {} ({}): applied by a newer binary",
                a.version,
                a.name,
                a.compat.as_str()
            )?;
        }
        if let Some(lock) = &self.lock {
            writeln!(
                f,
                "locked   by {} since {} (lease until {})",
                lock.holder,
                rfc3339(lock.acquired_at),
                rfc3339(lock.expires_at)
            )?;
        }
        if self.pending.is_empty() && self.unknown.is_empty() {
            writeln!(f, "up to date")?;
        }
        Ok(())
    }
}

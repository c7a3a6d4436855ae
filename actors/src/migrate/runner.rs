//! The runner: [`readiness`] and [`initialise`] (start-up), [`apply`] and
//! [`status`] (the `troupe migrate` commands).

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::DateTime;

use super::ledger::{Applied, Ledger};
use super::lock::{self, Held};
use super::report::{Outcome, Plan, Report, Status};
use super::{Compat, MigrateError, Migration, Refusal, Shape};

/// How [`apply`] runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Plan and print; write nothing (not even the lock).
    pub dry_run: bool,
    /// Who applies (recorded with each migration and on the lock).
    pub instance: String,
    /// How long to wait for another migrator's lock before giving up.
    pub wait: Duration,
    /// The lock's lease, and how often it is renewed while migrating.
    pub lease: Duration,
    pub renew_every: Duration,
    /// How often a waiter looks at the lock again.
    pub poll: Duration,
}

impl ApplyOptions {
    /// A run by `instance`: waits up to two leases for another migrator.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            dry_run: false,
            instance: instance.into(),
            wait: lock::LEASE * 2,
            lease: lock::LEASE,
            renew_every: lock::RENEW_EVERY,
            poll: Duration::from_millis(500),
        }
    }

    /// The same, as a dry run.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What start-up does with the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every migration this binary knows is applied (and none it does not
    /// know is breaking): serve.
    Ready,
    /// Migrations are pending on a database start-up may migrate itself
    /// (empty, or Troupe's own from before migrations): [`initialise`] it.
    Initialise,
    /// Do not serve (nothing was changed).
    Refused(Refusal),
}

/// Records unknown to `list` whose migration is breaking.
fn newer_breaking<L>(applied: &[Applied], list: &[Migration<L>]) -> Vec<(i32, String)> {
    let known: HashSet<i32> = list.iter().map(|m| m.version).collect();
    applied
        .iter()
        .filter(|a| !known.contains(&a.version) && a.compat == Compat::Breaking)
        .map(|a| (a.version, a.name.clone()))
        .collect()
}

/// The migrations of `list` not recorded in `applied`, in order.
fn pending<'l, L>(applied: &[Applied], list: &'l [Migration<L>]) -> Vec<&'l Migration<L>> {
    let done: HashSet<i32> = applied.iter().map(|a| a.version).collect();
    let mut pending: Vec<_> = list.iter().filter(|m| !done.contains(&m.version)).collect();
    pending.sort_by_key(|m| m.version);
    pending
}

fn refuse_newer<L>(applied: &[Applied], list: &[Migration<L>]) -> Result<(), MigrateError> {
    let newer = newer_breaking(applied, list);
    if newer.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Refused(Refusal::NewerBreaking(newer)))
    }
}

/// What start-up does with `pending` on a database of `shape` with
/// `records` (any applied migration recorded).
fn decide<L>(pending: &[&Migration<L>], records: bool, shape: Shape) -> Readiness {
    let initialise = match shape {
        Shape::Empty => true,
        // Troupe's own data from before migrations: what the first
        // migrations describe, and nothing more.
        Shape::Troupe => !records && pending.iter().all(|m| m.before_records),
        Shape::Nestjs => false,
    };
    if initialise {
        Readiness::Initialise
    } else {
        let names = pending.iter().map(|m| (m.version, m.name.to_owned()));
        Readiness::Refused(Refusal::Pending(names.collect()))
    }
}

/// Read only: whether start-up may serve this database, must initialise
/// it, or must refuse it.
pub async fn readiness<L: Ledger>(
    ledger: &L,
    list: &[Migration<L>],
) -> Result<Readiness, MigrateError> {
    let applied = ledger.applied().await?;
    if let Err(MigrateError::Refused(refusal)) = refuse_newer(&applied, list) {
        return Ok(Readiness::Refused(refusal));
    }
    let pending = pending(&applied, list);
    if pending.is_empty() {
        return Ok(Readiness::Ready);
    }
    Ok(decide(&pending, !applied.is_empty(), ledger.shape().await?))
}

/// Start-up on a database that needs it: apply every migration to an empty
/// database under the lock. Instances starting together on one empty
/// database: one applies, the others wait for the lock and then find
/// nothing pending. `Ok(true)` if this instance applied any.
pub async fn initialise<L: Ledger>(
    ledger: &L,
    list: &[Migration<L>],
    options: &ApplyOptions,
) -> Result<bool, MigrateError> {
    loop {
        match readiness(ledger, list).await? {
            Readiness::Ready => return Ok(false),
            Readiness::Refused(refusal) => return Err(MigrateError::Refused(refusal)),
            Readiness::Initialise => match run(ledger, list, options, true).await {
                Ok(report) => return Ok(!report.migrations.is_empty()),
                // A crashed initialiser's lease runs out; keep waiting.
                Err(MigrateError::Locked { .. }) => continue,
                Err(err) => return Err(err),
            },
        }
    }
}

/// Apply the pending migrations in order under the lock (or, dry run, plan
/// them and change nothing). Conflicts in any pending migration stop the
/// run before anything changes.
pub async fn apply<L: Ledger>(
    ledger: &L,
    list: &[Migration<L>],
    options: &ApplyOptions,
) -> Result<Report, MigrateError> {
    run(ledger, list, options, false).await
}

async fn run<L: Ledger>(
    ledger: &L,
    list: &[Migration<L>],
    options: &ApplyOptions,
    at_start: bool,
) -> Result<Report, MigrateError> {
    let applied = ledger.applied().await?;
    refuse_newer(&applied, list)?;
    if options.dry_run {
        let mut report = Report {
            dry_run: true,
            migrations: Vec::new(),
        };
        for m in pending(&applied, list) {
            let plan = m.step.plan(ledger).await?;
            report
                .migrations
                .push(outcome(m, plan.changes, plan.conflicts));
        }
        return Ok(report);
    }
    if pending(&applied, list).is_empty() {
        return Ok(Report {
            dry_run: false,
            migrations: Vec::new(),
        });
    }
    let held = lock::acquire(
        ledger,
        &options.instance,
        options.lease,
        options.wait,
        options.poll,
    )
    .await?;
    let result = locked(ledger, list, options, at_start, &held).await;
    if let Err(err) = lock::release(ledger, &held).await {
        // Its lease runs out by itself.
        tracing::warn!(target: "system", error = %err, "could not release the migration lock");
    }
    result
}

fn outcome<L>(m: &Migration<L>, lines: Vec<String>, conflicts: Vec<String>) -> Outcome {
    Outcome {
        version: m.version,
        name: m.name.to_owned(),
        compat: m.compat,
        lines,
        conflicts,
    }
}

/// Under the lock: read the records again (another migrator may have
/// applied some while this one waited), plan every pending migration, stop
/// on conflicts, then apply and record each in order.
async fn locked<L: Ledger>(
    ledger: &L,
    list: &[Migration<L>],
    options: &ApplyOptions,
    at_start: bool,
    held: &Held,
) -> Result<Report, MigrateError> {
    let applied = ledger.applied().await?;
    refuse_newer(&applied, list)?;
    let pending = pending(&applied, list);
    if at_start && !pending.is_empty() {
        let shape = ledger.shape().await?;
        if let Readiness::Refused(refusal) = decide(&pending, !applied.is_empty(), shape) {
            return Err(MigrateError::Refused(refusal));
        }
    }
    for m in &pending {
        let Plan { conflicts, .. } = m.step.plan(ledger).await?;
        if !conflicts.is_empty() {
            return Err(MigrateError::Conflicts {
                version: m.version,
                name: m.name.to_owned(),
                conflicts,
            });
        }
    }
    let mut report = Report {
        dry_run: false,
        migrations: Vec::new(),
    };
    for m in pending {
        let summary = renewing(ledger, held, options, m.step.apply(ledger)).await?;
        // Recorded only if this instance still holds the lock: a migrator
        // that stalled past its lease leaves the record to the one that
        // took over (which runs the idempotent step again).
        lock::renew(ledger, held, options.lease).await?;
        ledger
            .record(&Applied {
                version: m.version,
                name: m.name.to_owned(),
                description: m.description.to_owned(),
                compat: m.compat,
                applied_at: DateTime::now(),
                by: options.instance.clone(),
                summary: summary.clone(),
            })
            .await?;
        tracing::info!(target: "system", version = m.version, name = m.name, "migration applied");
        report.migrations.push(outcome(m, summary, Vec::new()));
    }
    Ok(report)
}

/// Run `work`, renewing the lease every `renew_every` meanwhile; a lost
/// lock drops `work` at its next await.
async fn renewing<L: Ledger, T>(
    ledger: &L,
    held: &Held,
    options: &ApplyOptions,
    work: impl std::future::Future<Output = Result<T, MigrateError>>,
) -> Result<T, MigrateError> {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(options.renew_every);
    ticker.tick().await; // (the first tick is immediate)
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticker.tick() => lock::renew(ledger, held, options.lease).await?,
        }
    }
}

/// Read only: applied, pending and unknown migrations, and the lock.
pub async fn status<L: Ledger>(ledger: &L, list: &[Migration<L>]) -> Result<Status, MigrateError> {
    let all = ledger.applied().await?;
    let known: HashSet<i32> = list.iter().map(|m| m.version).collect();
    let (applied, unknown) = all
        .iter()
        .cloned()
        .partition(|a| known.contains(&a.version));
    let pending = pending(&all, list)
        .into_iter()
        .map(|m| (m.version, m.name, m.compat))
        .collect();
    let now = ledger.now();
    let lock = ledger
        .latest_lock()
        .await?
        .filter(|l| !lock::is_free(l, now));
    Ok(Status {
        applied,
        pending,
        unknown,
        lock,
    })
}

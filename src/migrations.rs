//! `troupe migrate [--dry-run]` and `troupe migrate status` as functions:
//! the command line only parses its arguments, calls one of these, prints
//! what it returns (a report, a status, or the error with its causes) and
//! exits with [`exit_code`].
//!
//! ```ignore
//! let outcome = troupe::migrations::migrate(&settings, dry_run).await;
//! match &outcome { Ok(report) => print!("{report}"), Err(err) => eprintln!("{err}") }
//! return troupe::migrations::exit_code(&outcome);
//! ```

use std::process::ExitCode;

use secrecy::ExposeSecret;
use troupe_actors::migrate::{self, ApplyOptions, MigrateError, MongoLedger, Report, Status};
use troupe_actors::store::{self, MongoCommands};

use crate::config::Settings;

/// Why a `troupe migrate` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("invalid MongoDB settings: {0}")]
    Settings(#[source] store::StoreError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

async fn ledger(settings: &Settings) -> Result<MongoLedger, CommandError> {
    let db = store::connect_mongo(
        settings.mongodb.uri.expose_secret(),
        &settings.mongodb.database,
        settings.mongodb.timeout,
        &MongoCommands::default(),
    )
    .await
    .map_err(CommandError::Settings)?;
    Ok(MongoLedger::new(&db))
}

/// Who applies, as recorded: `migrate@<host>-<pid>`.
fn operator() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".into());
    format!("migrate@{host}-{}", std::process::id())
}

/// Apply the pending migrations (`dry_run`: print what each would change,
/// change nothing). Waits up to two lock leases for another migrator.
pub async fn migrate(settings: &Settings, dry_run: bool) -> Result<Report, CommandError> {
    let ledger = ledger(settings).await?;
    let options = ApplyOptions::new(operator()).dry_run(dry_run);
    let report = migrate::apply(&ledger, &migrate::migrations(), &options).await;
    ledger.db().client().clone().shutdown().await;
    Ok(report?)
}

/// Applied, pending and unknown migrations, and the lock.
pub async fn status(settings: &Settings) -> Result<Status, CommandError> {
    let ledger = ledger(settings).await?;
    let status = migrate::status(&ledger, &migrate::migrations()).await;
    ledger.db().client().clone().shutdown().await;
    Ok(status?)
}

/// 0 done (or nothing to do); 1 failed or refused (conflicts included: a
/// dry run that lists conflicts exits 1 too, so scripts can check first).
pub fn exit_code(outcome: &Result<Report, CommandError>) -> ExitCode {
    match outcome {
        Ok(report) if !report.has_conflicts() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

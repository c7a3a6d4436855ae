//! Troupe with a job type of your own: `report.build`.
//!
//! ```sh
//! cargo run --example custom_job          # serves like `troupe serve`, plus report.build
//! curl -s -X POST localhost:3000/jobs -H 'authorization: Bearer dev-ops-token-change-me' \
//!   -H 'content-type: application/json' -d '{"type":"report.build","payload":{"owner":"ann"}}'
//! ```
//!
//! A handler gets the [`Job`] (its `payload` is a BSON document) and returns
//! the job's result document, or a [`HandlerError`]: any error is retried with
//! backoff until the job's attempts run out, except a permanent one (a
//! malformed payload), which fails the job at once with its reason. Jobs are
//! delivered at least once, so a handler must be idempotent by job id.
//! Instances claim only the types they register: roll a new type out by
//! deploying the binary that has it (see docs/queue-safety.md).

use std::process::ExitCode;

use mongodb::bson::doc;
use troupe::config::Settings;
use troupe::{telemetry, Application};
use troupe_actors::queue::handlers::{HandlerError, HandlerResult, JobHandlers};
use troupe_actors::queue::job::Job;

/// `report.build`: needs `owner` (a string) in its payload.
async fn build_report(job: Job) -> HandlerResult {
    let Ok(owner) = job.payload.get_str("owner") else {
        return Err(HandlerError::permanent("payload lacks owner (a string)"));
    };
    Ok(doc! { "report": format!("report for {owner}"), "job": job.id.to_hex() })
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    // Logs only: no span export (see src/main.rs for the export set up).
    let _logs = telemetry::init(
        &settings.log.level,
        &settings.log.dir,
        true,
        &telemetry::no_export(),
    );
    let jobs = JobHandlers::new().with("report.build", build_report);
    let app = match Application::build_with_jobs(settings, jobs).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("start-up failed: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("server error: {err}");
            ExitCode::FAILURE
        }
    }
}

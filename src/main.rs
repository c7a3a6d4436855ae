use std::error::Error;
use std::process::ExitCode;

use troupe::config::Settings;
use troupe::{telemetry, Application};

/// mimalloc rather than glibc's malloc: under load glibc's arenas contend on
/// a lock (futex waits in the profile of a cached GET); mimalloc's
/// per-thread heaps do not. Measured in `results/` (cached GET, RSS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match telemetry::init(&settings.log.level, &settings.log.dir, true) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!(
                "cannot set up logging in {}: {err}",
                settings.log.dir.display()
            );
            return ExitCode::from(2);
        }
    };
    tracing::info!(target: "system", profile = settings.environment.as_str(), "starting troupe");
    let placeholders = settings.placeholder_secrets();
    if !placeholders.is_empty() {
        // The keys only: never a value.
        tracing::warn!(target: "system", keys = %placeholders.join(", "),
            "development placeholder secrets in use; anyone can read them in config/default.toml: set real secrets before exposing this instance");
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => return failed("start-up failed", &err),
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failed("server error", &err),
    }
}

/// Log and print `err` with its causes (`cannot listen on 0.0.0.0:3000:
/// Address already in use (os error 98)`); the process then exits 1.
fn failed(what: &str, err: &(dyn Error + 'static)) -> ExitCode {
    let message = with_causes(err);
    tracing::error!(target: "system", "{what}: {message}");
    eprintln!("{what}: {message}");
    ExitCode::FAILURE
}

/// `err`, then each cause `source()` leads to, joined by `: `.
fn with_causes(err: &(dyn Error + 'static)) -> String {
    std::iter::successors(Some(err), |&err| err.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

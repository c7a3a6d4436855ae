//! `troupe [serve]`, `troupe config check` and `troupe migrate [status]`
//! (src/cli.rs has the command line; docs/cli.md the commands,
//! configuration sources and exit codes).
//!
//! Exit codes: 0 success; 1 a runtime failure, `config check` found
//! problems, or `migrate` failed; 2 a usage error, or a configuration that
//! cannot be used; 3 `serve` refused a database that needs migrating.

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use troupe::cli::{Cli, Command, ConfigCommand, MigrateArgs, MigrateCommand};
use troupe::config::{Problem, Settings};
use troupe::{telemetry, Application};
use troupe_actors::store::error_chain;

/// mimalloc rather than glibc's malloc: under load glibc's arenas contend on
/// a lock (futex waits in the profile of a cached GET); mimalloc's
/// per-thread heaps do not. Measured in `results/` (cached GET, RSS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A usage error or a configuration `serve` refuses.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage(err),
    };
    match cli.command() {
        Command::Serve => serve(),
        Command::Config(ConfigCommand::Check) => config_check(),
        Command::Migrate(args) => migrate(args),
    }
}

/// `--help` and `--version` print and exit 0; a usage error is one line on
/// stderr (clap's tip included), exit 2.
fn usage(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", troupe::cli::one_line(&err));
    ExitCode::from(EXIT_USAGE)
}

/// `troupe config check`: every problem and unknown key on stderr, exit 1;
/// or one line on stdout, exit 0. Contacts no server.
fn config_check() -> ExitCode {
    let checked = Settings::check();
    let bad: Vec<&Problem> = checked.problems.iter().chain(&checked.unknown).collect();
    match checked.settings {
        Some(settings) if bad.is_empty() => {
            println!(
                "configuration is valid (profile {})",
                settings.environment.as_str()
            );
            ExitCode::SUCCESS
        }
        _ => {
            for problem in &checked.problems {
                eprintln!("configuration error: {problem}");
            }
            for problem in &checked.unknown {
                eprintln!("unknown setting: {problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The settings, or every problem printed and `None`.
fn usable_settings() -> (Option<Settings>, Vec<Problem>) {
    let checked = Settings::check();
    if checked.settings.is_none() {
        for problem in &checked.problems {
            eprintln!("configuration error: {problem}");
        }
    }
    (checked.settings, checked.unknown)
}

/// A multi-threaded runtime for `work`.
fn block_on<F: std::future::Future<Output = ExitCode>>(work: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(err) => failed("cannot start the runtime", &err),
    }
}

/// `troupe migrate [--dry-run]` and `troupe migrate status`: the report on
/// stdout; an error with its causes on stderr.
fn migrate(args: &MigrateArgs) -> ExitCode {
    let (Some(settings), _) = usable_settings() else {
        return ExitCode::from(EXIT_USAGE);
    };
    block_on(async move {
        if let Some(MigrateCommand::Status) = args.command {
            return match troupe::migrations::status(&settings).await {
                Ok(status) => {
                    print!("{status}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("migrate status failed: {}", error_chain(&err));
                    ExitCode::FAILURE
                }
            };
        }
        let outcome = troupe::migrations::migrate(&settings, args.dry_run).await;
        match &outcome {
            Ok(report) => print!("{report}"),
            Err(err) => eprintln!("migrate failed: {}", error_chain(err)),
        }
        troupe::migrations::exit_code(&outcome)
    })
}

/// Load the configuration, set up logging, serve until SIGINT or SIGTERM.
fn serve() -> ExitCode {
    let (Some(mut settings), unknown) = usable_settings() else {
        return ExitCode::from(EXIT_USAGE);
    };
    // Made here, not at start: the traces' resource names the instance.
    let instance = troupe_actors::system::instance_id();
    settings.instance = Some(instance.clone());
    let export = settings.telemetry.export(instance);
    let telemetry = match telemetry::init(&settings.log.level, &settings.log.dir, true, &export) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!(
                "cannot set up logging in {} (LOG_DIR, log.dir) or the span export to {} (telemetry.otlp_endpoint): {}; fix: LOG_DIR=<a writable directory>, OTEL_EXPORTER_OTLP_ENDPOINT=http://<collector>:4318",
                settings.log.dir.display(),
                export.endpoint.as_deref().unwrap_or("nowhere"),
                error_chain(err.as_ref())
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // A key only a newer binary knows is no reason to refuse to start (a
    // fleet mid-deploy); a misspelling is worth a warning that says so.
    for problem in &unknown {
        tracing::warn!(target: "system", "unknown setting ignored: {problem}");
    }
    let code = block_on(run(settings));
    // After the runtime: the last spans are exported (a blocking wait).
    drop(telemetry);
    code
}

async fn run(settings: Settings) -> ExitCode {
    tracing::info!(target: "system", profile = settings.environment.as_str(), "starting troupe");
    let placeholders = settings.placeholder_secrets();
    if !placeholders.is_empty() {
        // The keys only: never a value.
        tracing::warn!(target: "system", keys = %placeholders.join(", "),
            "development placeholder secrets in use; anyone can read them in config/default.toml: set real secrets before exposing this instance");
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            failed("start-up failed", &err);
            return ExitCode::from(err.exit_code());
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failed("server error", &err),
    }
}

/// Log and print `err` with its causes (`cannot listen on 0.0.0.0:3000:
/// Address already in use (os error 98)`); the process then exits 1.
fn failed(what: &str, err: &(dyn Error + 'static)) -> ExitCode {
    let message = error_chain(err);
    tracing::error!(target: "system", "{what}: {message}");
    eprintln!("{what}: {message}");
    ExitCode::FAILURE
}

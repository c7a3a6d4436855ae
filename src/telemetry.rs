//! Logging: human-readable lines on stdout, plus one file per category and day
//! under `log.dir` (`cache.2026-11-29.log`, ...), written by background threads
//! so a slow disk never stalls a request or an actor.
//!
//! A category is a tracing *target*: `tracing::info!(target: "cache", ...)`
//! lands on stdout and in the `cache` file.

use std::path::Path;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

/// The log categories, each with its own daily file.
pub const CATEGORIES: &[&str] = &["system", "requests", "cache", "worker", "auth", "user"];

/// Flushes the background writers when dropped: keep it alive in `main`.
#[must_use = "dropping the guard stops the log file writers"]
pub struct TelemetryGuard {
    _writers: Vec<WorkerGuard>,
}

/// Lines each category's writer thread may have queued before new lines are
/// dropped (requests never wait on the disk). tracing-appender's default,
/// 128,000, preallocates ≈ 4 MB per category; six of them were most of the
/// service's idle memory.
const BUFFERED_LINES: usize = 16_384;

/// The file name of `category`'s log for `date` (`YYYY-MM-DD`, UTC).
pub fn log_file_name(category: &str, date: &str) -> String {
    format!("{category}.{date}.log")
}

/// Colour codes only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (no-color.org): redirected output and log
/// collectors get plain text.
pub fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The MongoDB driver's targets that repeat for every heartbeat and
/// selection attempt while a server is down (when a dependency turns on its
/// tracing events); the service reports an outage itself, in one line.
const DRIVER_BOUNDS: &[&str] = &[
    "mongodb::topology=warn",
    "mongodb::server_selection=warn",
    "mongodb::connection=warn",
];

/// `directives` with the driver's chatter bounded, unless they say
/// something about `mongodb` themselves (then they are the operator's
/// choice).
pub fn bounded(directives: &str) -> String {
    if directives.contains("mongodb") {
        return directives.to_string();
    }
    std::iter::once(directives)
        .chain(DRIVER_BOUNDS.iter().copied())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Install the global subscriber. `level` is an EnvFilter directive; `RUST_LOG`
/// wins when set. `stdout` turns the console layer on (tests keep it off).
/// Fails if `dir` cannot be created or a subscriber exists.
pub fn init(level: &str, dir: &Path, stdout: bool) -> anyhow::Result<TelemetryGuard> {
    std::fs::create_dir_all(dir)?;
    let filter = || {
        let from_env = std::env::var("RUST_LOG").ok();
        from_env
            .and_then(|env| EnvFilter::try_new(bounded(&env)).ok())
            .map_or_else(|| EnvFilter::try_new(bounded(level)), Ok)
    };
    let mut guards = Vec::new();
    let mut layers: Vec<Box<dyn Layer<_> + Send + Sync>> = Vec::new();
    if stdout {
        let colour = colour(
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::env::var_os("NO_COLOR"),
        );
        layers.push(
            fmt::layer()
                .with_ansi(colour)
                .with_target(true)
                .with_filter(filter()?)
                .boxed(),
        );
    }
    for &category in CATEGORIES {
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(category)
            .filename_suffix("log")
            .build(dir)?;
        let (writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(BUFFERED_LINES)
            .lossy(true)
            .finish(appender);
        guards.push(guard);
        layers.push(
            fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(writer)
                .with_filter(filter_fn(move |meta| meta.target() == category))
                .with_filter(filter()?)
                .boxed(),
        );
    }
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(TelemetryGuard { _writers: guards })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_topology_chatter_is_bounded_unless_asked_for() {
        assert_eq!(
            bounded("info"),
            "info,mongodb::topology=warn,mongodb::server_selection=warn,mongodb::connection=warn"
        );
        assert!(EnvFilter::try_new(bounded("debug")).is_ok());
        assert_eq!(bounded("info,mongodb=debug"), "info,mongodb=debug");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}

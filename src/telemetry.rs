//! Logging: human-readable lines on stdout, plus one file per category and day
//! under `log.dir` (`cache.2026-11-29.log`, ...), written by background threads
//! so a slow disk never stalls a request or an actor.
//!
//! A category is a tracing *target*: `tracing::info!(target: "cache", ...)`
//! lands on stdout and in the `cache` file.
//!
//! Traces: the service's spans (targets `troupe*`, INFO and up) have W3C
//! ids, written at the end of each log line inside a span ([`ids`]). When
//! `telemetry.otlp_endpoint` is set they go to OpenTelemetry ([`otel`]),
//! which gives them their ids and exports the sampled ones ([`export`]);
//! spans only: log events never become span events, so no field of a log
//! line reaches a collector. When it is not, no OpenTelemetry layer is
//! installed at all: the registry makes a span's ids when they are first
//! asked for (`troupe_actors::trace::LocalIds`), so a span no one asks about
//! costs what any span costs. See docs/observability.md.

mod export;
mod ids;
mod otel;

pub use otel::Export;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::metrics::counter::Counter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};
use troupe_actors::trace;

/// The log categories, each with its own daily file.
pub const CATEGORIES: &[&str] = &["system", "requests", "cache", "worker", "auth", "user"];

/// Flushes the background writers and the span export when dropped: keep
/// it alive in `main`, drop it after the application stopped.
#[must_use = "dropping the guard stops the log file writers"]
pub struct TelemetryGuard {
    _writers: Vec<WorkerGuard>,
    /// With export on.
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    /// The spans still queued are exported (within the export timeout):
    /// the last requests and jobs before a shutdown are in the traces.
    fn drop(&mut self) {
        if let Some(provider) = &self.provider {
            let _ = provider.shutdown();
        }
    }
}

/// Spans the export queue had no room for, since the process started
/// (`troupe_trace_spans_dropped_total`). One per process: so is the
/// subscriber that exports.
pub fn dropped_spans() -> Counter {
    static DROPPED: OnceLock<Counter> = OnceLock::new();
    DROPPED.get_or_init(Counter::default).clone()
}

/// No export, for a caller with no settings (the tests' subscriber).
pub fn no_export() -> Export {
    Export {
        endpoint: None,
        service_name: "troupe".into(),
        instance: "local".into(),
        sample_ratio: 1.0,
        queue: 1,
        timeout: Duration::from_secs(1),
    }
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
/// `export` says where spans go. Fails if `dir` cannot be created, the
/// exporter cannot be built or a subscriber exists.
pub fn init(
    level: &str,
    dir: &Path,
    stdout: bool,
    export: &Export,
) -> anyhow::Result<TelemetryGuard> {
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
                .event_format(ids::WithTraceIds(fmt::format().with_ansi(colour)))
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
                .event_format(ids::WithTraceIds(fmt::format().with_target(false)))
                .with_writer(writer)
                .with_filter(filter_fn(move |meta| meta.target() == category))
                .with_filter(filter()?)
                .boxed(),
        );
    }
    // The service's spans are enabled whatever the log level: they carry
    // the trace through (a request's `traceresponse`, a job's `trace`).
    let service_spans = || {
        filter_fn(|meta| {
            meta.is_span()
                && meta.target().starts_with("troupe")
                && *meta.level() <= LevelFilter::INFO
        })
    };
    let provider = if export.endpoint.is_some() {
        let (provider, tracer) = otel::provider(export, dropped_spans())?;
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        layers.push(layer.with_filter(service_spans()).boxed());
        Some(provider)
    } else {
        layers.push(trace::LocalIds.with_filter(service_spans()).boxed());
        None
    };
    tracing_subscriber::registry().with(layers).try_init()?;
    ids::installed();
    Ok(TelemetryGuard {
        _writers: guards,
        provider,
    })
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

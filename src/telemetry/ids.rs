//! Every log line written inside a span ends with the span's trace and span
//! ids (`trace_id=… span_id=…`), export on or off (the OpenTelemetry
//! layer's ids, or the registry's own: `troupe_actors::trace`), so a line
//! can be looked up in the trace and a trace's lines found with grep, or in
//! the log viewer. A line outside any span is written as it was.

use std::fmt;
use std::sync::OnceLock;

use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `F`'s line, with the ids of the event's span appended.
pub(super) struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = ids(event) else {
            return self.0.format_event(ctx, writer, event);
        };
        // The inner format ends its line: write it aside, then put the ids
        // before the line's end. (Lines inside spans lose ANSI colours on a
        // terminal: a writer on a String cannot have them.)
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{body} {ids}")
    }
}

/// The subscriber, for the spans' contexts: inside an event
/// `tracing::dispatcher::get_default` answers "no subscriber" (it is not
/// re-entrant), so the global one is kept here as it is installed.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Remember the global subscriber (just installed).
pub(super) fn installed() {
    tracing::dispatcher::get_default(|dispatch| {
        let _ = DISPATCH.set(dispatch.downgrade());
    });
}

/// `trace_id=<32 hex> span_id=<16 hex>` of the event's span (its explicit
/// parent, or the current span: the registry's, whatever this layer's
/// filter lets it see), if it is in a trace.
fn ids(event: &Event<'_>) -> Option<String> {
    let dispatch = DISPATCH.get()?.upgrade()?;
    let id = match event.parent() {
        Some(id) => id.clone(),
        None if event.is_contextual() => dispatch.current_span().id()?.clone(),
        None => return None,
    };
    let span = troupe_actors::trace::context_in(&dispatch, &id)?;
    Some(format!(
        "trace_id={} span_id={}",
        span.trace_id(),
        span.span_id()
    ))
}

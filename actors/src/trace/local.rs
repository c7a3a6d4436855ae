//! Span ids made in the process, for when no OpenTelemetry layer is
//! installed (export off): the same W3C ids the log lines and the
//! `traceresponse` header show, at the cost of a registry lookup and a
//! random number — and only for a span someone asks about.
//!
//! Nothing happens when a span starts. The first time a span's ids are
//! wanted (a log line inside it, its `traceparent` for a response header or
//! a job), they are made and kept in the span's extensions in the
//! subscriber's registry: the trace id of its remote parent (a request's
//! `traceparent`, a job's stored one) or of its parent span (asked for in
//! turn: a child's trace is its parent's), else a new one; a new span id.
//! The registry keeps a span while it has children, so a parent is there to
//! ask however late a child is looked at.
//!
//! The sampled flag is the remote parent's; a trace started here is not
//! sampled (nothing of it is recorded). Ids need to be unique, not secret: a
//! per-thread xorshift generator, seeded from the standard library's random
//! hash keys, makes them.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracing::span::Id;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanRef};

/// A span's ids, once made (in its extensions).
#[derive(Clone, Copy, Debug)]
struct Ids {
    trace: u128,
    span: u64,
    sampled: bool,
}

/// The remote context a span was made a child of before its ids were made.
#[derive(Clone, Copy, Debug)]
struct Remote {
    trace: u128,
    sampled: bool,
}

/// The context of span `id`, its ids made now if not yet; `None` if the
/// registry does not know the span.
pub(super) fn context(registry: &Registry, id: &Id) -> Option<SpanContext> {
    let span = registry.span(id)?;
    let ids = ids_of(&span);
    let flags = if ids.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        TraceId::from(ids.trace),
        SpanId::from(ids.span),
        flags,
        false,
        TraceState::NONE,
    ))
}

/// Make span `id` a child of the remote `parent`, unless its ids were made
/// already (then it keeps them).
pub(super) fn adopt(registry: &Registry, id: &Id, parent: &SpanContext) {
    let Some(span) = registry.span(id) else {
        return;
    };
    let mut extensions = span.extensions_mut();
    if extensions.get_mut::<Ids>().is_none() {
        extensions.replace(Remote {
            trace: u128::from_be_bytes(parent.trace_id().to_bytes()),
            sampled: parent.is_sampled(),
        });
    }
}

/// `span`'s ids, made (and its ancestors', up to the first that has them)
/// if not yet. One span's extensions are locked at a time: none while a
/// parent is asked.
fn ids_of(span: &SpanRef<'_, Registry>) -> Ids {
    let remote = {
        let extensions = span.extensions();
        if let Some(ids) = extensions.get::<Ids>() {
            return *ids;
        }
        extensions.get::<Remote>().copied()
    };
    let (trace, sampled) = match (remote, span.parent()) {
        (Some(remote), _) => (remote.trace, remote.sampled),
        (None, Some(parent)) => {
            let ids = ids_of(&parent);
            (ids.trace, ids.sampled)
        }
        (None, None) => (
            nonzero(|| (u128::from(next()) << 64) | u128::from(next())),
            false,
        ),
    };
    let mut extensions = span.extensions_mut();
    // Another thread may have made them meanwhile: theirs stand.
    if let Some(ids) = extensions.get_mut::<Ids>() {
        return *ids;
    }
    let ids = Ids {
        trace,
        span: nonzero(next),
        sampled,
    };
    extensions.insert(ids);
    ids
}

/// A draw of `draw` that is not zero (an all-zero id is invalid).
fn nonzero<T: PartialEq + Default>(draw: impl Fn() -> T) -> T {
    loop {
        let value = draw();
        if value != T::default() {
            return value;
        }
    }
}

/// The thread's next random number (xorshift64*; the state is never 0).
fn next() -> u64 {
    thread_local! {
        static STATE: Cell<u64> =
            Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

//! Trace context across the hops `tracing` cannot follow by itself: an
//! actor's mailbox, the blocking pool, a job stored in MongoDB and run later
//! (maybe by another instance), an HTTP request from a client.
//!
//! A `tracing::Span` holds its OpenTelemetry context (tracing-opentelemetry,
//! installed by the binary's subscriber). Within the process a message
//! carries the sender's span itself ([`Parent`]), and the receiver opens its
//! span as a child of it; across processes and time the context travels as a
//! W3C `traceparent` string (`00-<trace id>-<span id>-<flags>`): in the
//! request's header, in the job's `trace` field. Without the OpenTelemetry
//! layer (a test's own subscriber, none at all) every span's context is
//! empty: nothing is carried, nothing fails.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The sender's span, carried inside an actor message so the receiver's
/// span is its child (a handle on the span: cheap to clone, `Send`). Taken
/// from the sender's current span when the message is made; the default is
/// no span (the receiver's span then starts its own trace, or none).
#[derive(Clone, Debug)]
pub struct Parent(pub Span);

impl Parent {
    /// The caller's current span.
    pub fn current() -> Self {
        Self(Span::current())
    }
}

impl Default for Parent {
    fn default() -> Self {
        Self(Span::none())
    }
}

/// Where a message came from is no part of its value: two messages that
/// differ only in their parent span are equal.
impl PartialEq for Parent {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// The `traceparent` of `span`, if it belongs to a trace (the
/// OpenTelemetry layer is installed and the span is enabled).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let span = span_ref.span_context();
    span.is_valid().then(|| format(span))
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// `span`'s W3C form: version 00, lower-case hex ids, the flags byte.
pub fn format(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// Parse a W3C `traceparent` (version 00, or a later version's first four
/// fields); `None` for anything else, all-zero ids and version `ff`
/// included, as the recommendation asks: a bad header starts a new trace,
/// it never fails a request.
pub fn parse(header: &str) -> Option<SpanContext> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; a later one may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Make `span` a child of the remote context `traceparent` names, when it
/// names one; otherwise `span` keeps its own parent (or starts a trace).
/// Call it before the span is first entered.
pub fn adopt(span: &Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(parse) {
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Fails only when the span was already started: then it keeps its parent.
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_w3c_traceparent_round_trips() {
        let parsed = parse(GOOD).expect("valid");
        assert_eq!(
            parsed.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parsed.is_sampled() && parsed.is_remote());
        assert_eq!(format(&parsed), GOOD);
    }

    #[test]
    fn a_bad_traceparent_is_no_context() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
        // A later version may carry more fields; its first four are read.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn without_the_opentelemetry_layer_nothing_is_carried() {
        let span = tracing::info_span!("no layer");
        assert_eq!(traceparent_of(&span), None);
        adopt(&span, Some(GOOD));
    }
}

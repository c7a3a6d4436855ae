//! Trace context across the hops `tracing` cannot follow by itself: an
//! actor's mailbox, the blocking pool, a job stored in MongoDB and run later
//! (maybe by another instance), an HTTP request from a client.
//!
//! A `tracing::Span`'s ids come from the OpenTelemetry layer when the
//! binary's subscriber has one (export on: tracing-opentelemetry), else from
//! the registry itself ([`local`]: made in the process, only when asked
//! for; export off). Within the process a message
//! carries the sender's span itself ([`Parent`]), and the receiver opens its
//! span as a child of it; across processes and time the context travels as a
//! W3C `traceparent` string (`00-<trace id>-<span id>-<flags>`): in the
//! request's header, in the job's `trace` field. With no subscriber, or
//! one with neither [`LocalIds`] nor the OpenTelemetry layer, every span's
//! context is empty: nothing is carried, nothing fails.

mod local;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::span::Id;
use tracing::{Dispatch, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;

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

    /// The span of handling one message, `actor` receiving `message`: a
    /// child of this parent, shown as `<actor> <message>` (`UserActor
    /// login`), with both as attributes. No span when there is no parent:
    /// an actor's housekeeping (timers, its own follow-ups) makes no trace.
    /// Nothing is formatted unless a layer records the span's fields.
    pub fn span(&self, actor: &'static str, message: &'static str) -> Span {
        if self.0.is_none() {
            return Span::none();
        }
        tracing::info_span!(parent: &self.0, "actor.message",
            otel.name = %format_args!("{actor} {message}"), actor, actor.message = message)
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

/// The layer that has span ids made in the process ([`local`]): install it
/// (with a filter that lets the service's spans through) in a subscriber
/// built on a [`Registry`] *instead of* the OpenTelemetry layer. It does
/// nothing as spans come and go; it marks the subscriber as one whose ids
/// the registry keeps, and its filter keeps the spans it lets through
/// enabled whatever the log level (a request span needs its ids for the
/// `traceresponse` header even when no log line is written).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalIds;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LocalIds {}

/// The context of span `id` in `dispatch`: from the registry when the
/// subscriber has [`LocalIds`], else the OpenTelemetry layer's. `None` when
/// the subscriber has neither (or the span is not in a trace).
pub fn context_in(dispatch: &Dispatch, id: &Id) -> Option<SpanContext> {
    let context = if dispatch.is::<LocalIds>() {
        local::context(dispatch.downcast_ref::<Registry>()?, id)?
    } else {
        let context = tracing_opentelemetry::get_otel_context(id, dispatch)?;
        context.span().span_context().clone()
    };
    context.is_valid().then_some(context)
}

/// The `traceparent` of `span`, if it belongs to a trace (the span is
/// enabled and the subscriber makes ids).
pub fn traceparent_of(span: &Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| context_in(dispatch, id))
        .flatten()
        .map(|context| format(&context))
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
    let Some(remote) = traceparent.and_then(parse) else {
        return;
    };
    let local = span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch
            .is::<LocalIds>()
            .then(|| dispatch.downcast_ref::<Registry>())
            .flatten();
        registry
            .inspect(|registry| local::adopt(registry, id, &remote))
            .is_some()
    });
    if local == Some(false) {
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
    fn without_a_subscriber_nothing_is_carried() {
        let span = tracing::info_span!("no subscriber");
        assert_eq!(traceparent_of(&span), None);
        adopt(&span, Some(GOOD));
        assert_eq!(traceparent_of(&span), None);
    }

    /// `f` under a registry with [`LocalIds`] (export off).
    fn with_local_ids(f: impl FnOnce()) {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(LocalIds);
        tracing::subscriber::with_default(subscriber, f);
    }

    fn parsed(span: &Span) -> SpanContext {
        parse(&traceparent_of(span).expect("a traceparent")).expect("valid")
    }

    #[test]
    fn with_local_ids_children_share_their_parents_trace_and_a_new_trace_is_not_sampled() {
        with_local_ids(|| {
            let root = tracing::info_span!("request");
            let child = root.in_scope(|| tracing::info_span!("handler"));
            // Carried inside a message: an explicit parent, asked first.
            let message = tracing::info_span!(parent: &child, "actor message");
            let (root_ids, message_ids) = (parsed(&root), parsed(&message));
            let child_ids = parsed(&child);
            assert_eq!(message_ids.trace_id(), root_ids.trace_id());
            assert_eq!(child_ids.trace_id(), root_ids.trace_id());
            assert_ne!(message_ids.span_id(), child_ids.span_id());
            assert_ne!(child_ids.span_id(), root_ids.span_id());
            assert!(!root_ids.is_sampled(), "nothing of it is recorded");
            assert_eq!(parsed(&root).span_id(), root_ids.span_id(), "made once");
            let other = tracing::info_span!("another request");
            assert_ne!(parsed(&other).trace_id(), root_ids.trace_id());
        });
    }

    #[test]
    fn with_local_ids_an_adopted_traceparent_is_followed_by_the_span_and_its_children() {
        with_local_ids(|| {
            let remote = parse(GOOD).unwrap();
            let span = tracing::info_span!("request");
            adopt(&span, Some(GOOD));
            let child = tracing::info_span!(parent: &span, "handler");
            let (ids, child_ids) = (parsed(&span), parsed(&child));
            assert_eq!(ids.trace_id(), remote.trace_id());
            assert_eq!(child_ids.trace_id(), remote.trace_id());
            assert!(ids.is_sampled() && child_ids.is_sampled());
            assert_ne!(ids.span_id(), remote.span_id(), "a span of its own");
            // Once its ids are made, a span keeps them.
            let late = tracing::info_span!("late");
            let before = parsed(&late);
            adopt(&late, Some(GOOD));
            assert_eq!(parsed(&late).trace_id(), before.trace_id());
        });
    }

    #[test]
    fn a_message_span_is_a_child_of_the_senders_and_there_is_none_without_a_sender() {
        with_local_ids(|| {
            let request = tracing::info_span!("request");
            let parent = request.in_scope(Parent::current);
            let handling = parent.span("UserActor", "login");
            assert_eq!(handling.metadata().map(|m| m.name()), Some("actor.message"));
            let (request_ids, handling_ids) = (parsed(&request), parsed(&handling));
            assert_eq!(handling_ids.trace_id(), request_ids.trace_id());
            assert_ne!(handling_ids.span_id(), request_ids.span_id());
            assert!(Parent::default().span("UserActor", "login").is_none());
        });
    }
}

//! Store calls as spans, inside a trace only: a MongoDB command from the
//! driver's command monitoring (started → succeeded or failed), a Redis
//! command or pipeline around its round trip. A span names the command and
//! the collection (closed sets: the labels of `troupe_store_commands_total`)
//! or the Redis command's name: never a filter, a document, a key or a
//! value. Outside any span (lease renewals, the heartbeat) no span is
//! made: they would each start a trace of one span. Inside a
//! [`BATCH_SPAN`] (the poller's claim of a batch, which takes each job with
//! a command of its own) neither: the batch's span says how many it took,
//! and a span per job would drown it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::Span;

/// Commands in flight whose span is still open, at most this many: past it
/// a command gets no span (a driver stuck on a dead server must not grow
/// this map without bound).
const MAX_OPEN: usize = 4096;

/// The span of a batch whose store calls get no span each (see the module
/// docs): the poller's claim of a batch of jobs.
pub const BATCH_SPAN: &str = "job.claim";

/// Whether a store call now gets a span: inside a span, not a batch's.
fn spanned() -> bool {
    let current = Span::current();
    !current.is_none() && current.metadata().is_none_or(|m| m.name() != BATCH_SPAN)
}

/// The open MongoDB command spans, by the driver's request id (unique
/// within the client).
#[derive(Clone, Default)]
pub(super) struct CommandSpans(Arc<Mutex<HashMap<i32, Span>>>);

impl CommandSpans {
    /// A command started, in the caller's task: open its span as a child
    /// of the caller's, if the caller is in one.
    pub(super) fn started(&self, request_id: i32, command: &'static str, collection: &'static str) {
        if !spanned() {
            return;
        }
        let span = tracing::info_span!(
            "mongodb.command",
            otel.name = %format!("{command} {collection}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "mongodb",
            db.operation.name = command,
            db.collection.name = collection,
        );
        let mut open = self.0.lock().expect("command spans lock");
        if open.len() < MAX_OPEN {
            open.insert(request_id, span);
        }
    }

    /// The command `request_id` ended: close its span (marked an error if
    /// it `failed`).
    pub(super) fn ended(&self, request_id: i32, failed: bool) {
        let span = self
            .0
            .lock()
            .expect("command spans lock")
            .remove(&request_id);
        if let (Some(span), true) = (span, failed) {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of a Redis round trip (`name`: the command's, or `pipeline`),
/// or a disabled one outside any span.
pub(super) fn redis(name: &str) -> Span {
    if !spanned() {
        return Span::none();
    }
    tracing::info_span!(
        "redis.command",
        otel.name = %format!("redis {name}"),
        otel.kind = "client",
        db.system = "redis",
        db.operation.name = name,
    )
}

/// The name of `cmd` (its first argument, upper-cased), if it looks like
/// one: a short word of letters. Never the key or a value.
pub(super) fn redis_command_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name))
            if name.len() <= 24 && name.iter().all(|b| b.is_ascii_alphabetic() || *b == b'.') =>
        {
            String::from_utf8_lossy(name).to_ascii_uppercase()
        }
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_span_names_the_command_never_its_arguments() {
        let mut cmd = redis::cmd("get");
        cmd.arg("troupe:secret-key");
        assert_eq!(redis_command_name(&cmd), "GET");
        assert_eq!(redis_command_name(&redis::cmd("42 odd")), "other");
    }

    #[test]
    fn no_span_is_opened_outside_a_trace() {
        let spans = CommandSpans::default();
        spans.started(1, "find", "users");
        assert!(spans.0.lock().unwrap().is_empty());
        spans.ended(1, false);
        assert!(redis("GET").is_none());
    }

    #[test]
    fn a_batchs_store_calls_get_no_span_each_and_others_do() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(crate::trace::LocalIds);
        tracing::subscriber::with_default(subscriber, || {
            let spans = CommandSpans::default();
            tracing::info_span!("job.claim").in_scope(|| {
                spans.started(1, "findAndModify", "jobs");
                assert!(redis("GET").is_none());
            });
            assert!(spans.0.lock().unwrap().is_empty());
            tracing::info_span!("request").in_scope(|| {
                spans.started(2, "find", "users");
                assert!(!redis("GET").is_none());
            });
            assert_eq!(spans.0.lock().unwrap().len(), 1);
        });
    }
}

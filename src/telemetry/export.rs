//! The span processor between the tracer and the OTLP exporter: a bounded
//! queue that never waits. A span ends on whatever thread ended it (a
//! request's, an actor's); it is put on the queue if there is room and
//! dropped (and counted in `troupe_trace_spans_dropped_total`) if not. One
//! thread, owned by the processor, takes spans off the queue in batches and
//! exports them: a slow or unreachable collector slows that thread only.
//!
//! The SDK's own batch processor is bounded too, but keeps its drop count to
//! itself (one log line at shutdown); the metric needs it as it happens.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;

/// Spans sent to the collector in one request, at most (and at most the
/// queue's capacity: the spans held, queued or batched, stay within twice
/// `telemetry.export_queue`).
const MAX_BATCH: usize = 512;
/// Longest a span waits on the queue for its batch to fill.
const DELAY: Duration = Duration::from_secs(1);

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
    /// Export what is queued, shut the exporter down, stop.
    Shutdown,
}

/// See the module's documentation.
#[derive(Debug)]
pub(super) struct BoundedExport {
    queue: SyncSender<Message>,
    worker: Mutex<Option<JoinHandle<()>>>,
    dropped: Counter,
    /// How long a flush or the shutdown waits for the export thread.
    timeout: Duration,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl BoundedExport {
    /// Start the export thread for `exporter`, with room for `capacity`
    /// spans; drops are counted in `dropped`.
    pub(super) fn start<E: SpanExporter + 'static>(
        exporter: E,
        capacity: usize,
        timeout: Duration,
        dropped: Counter,
    ) -> std::io::Result<Self> {
        let (queue, spans) = mpsc::sync_channel(capacity);
        let worker = std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || export_loop(exporter, &spans, capacity.min(MAX_BATCH)))?;
        Ok(Self {
            queue,
            worker: Mutex::new(Some(worker)),
            dropped,
            timeout,
        })
    }
}

impl SpanProcessor for BoundedExport {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Span(Box::new(span)))
        {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, flushed) = mpsc::sync_channel(1);
        self.queue
            .send(Message::Flush(done))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        flushed
            .recv_timeout(self.timeout)
            .map_err(|_| OTelSdkError::Timeout(self.timeout))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let Some(worker) = self.worker.lock().expect("export worker lock").take() else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        // Blocks while the queue is full: the thread is draining it.
        let _ = self.queue.send(Message::Shutdown);
        worker
            .join()
            .map_err(|_| OTelSdkError::InternalFailure("the export thread panicked".into()))
    }
}

/// Batch spans until `batch_size` or [`DELAY`], export, repeat; on
/// shutdown (or when every sender is gone) export the rest and stop.
fn export_loop<E: SpanExporter>(exporter: E, spans: &Receiver<Message>, batch_size: usize) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(batch_size);
    let mut since = Instant::now();
    loop {
        let wait = DELAY.saturating_sub(since.elapsed());
        let message = spans.recv_timeout(wait);
        match message {
            Ok(Message::Span(span)) => batch.push(*span),
            Ok(Message::Flush(done)) => {
                export(&exporter, &mut batch);
                let _ = done.send(());
            }
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                export(&exporter, &mut batch);
                let _ = exporter.shutdown();
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if batch.len() >= batch_size || since.elapsed() >= DELAY {
            export(&exporter, &mut batch);
            since = Instant::now();
        }
    }
}

/// Send `batch` (emptied); a failure is one warning: the spans are lost,
/// the service goes on.
fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len();
    if let Err(err) = futures::executor::block_on(exporter.export(spans)) {
        tracing::warn!(target: "system", spans = count, error = %err, "trace export failed; the spans are lost");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// An exporter that blocks until `gate` opens, then records what it got.
    #[derive(Debug, Clone, Default)]
    struct Stuck {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        got: Arc<Mutex<usize>>,
    }

    impl Stuck {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    impl SpanExporter for Stuck {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            *self.got.lock().unwrap() += batch.len();
            Ok(())
        }
    }

    fn span(sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Internal,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: opentelemetry::trace::Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn a_stuck_collector_drops_and_counts_spans_and_never_blocks_the_caller() {
        let exporter = Stuck::default();
        let dropped = Counter::default();
        let processor =
            BoundedExport::start(exporter.clone(), 4, Duration::from_secs(5), dropped.clone())
                .unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            processor.on_end(span(true));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "on_end waited");
        // At most the queue (4) and one batch (4) in the exporter's hands are kept.
        assert!(dropped.get() >= 92, "dropped {}", dropped.get());
        exporter.open();
        processor.shutdown().unwrap();
        assert_eq!(*exporter.got.lock().unwrap() as u64 + dropped.get(), 100);
    }

    #[test]
    fn unsampled_spans_are_not_exported_and_shutdown_flushes_the_rest() {
        let exporter = Stuck::default();
        exporter.open();
        let dropped = Counter::default();
        let processor = BoundedExport::start(
            exporter.clone(),
            64,
            Duration::from_secs(5),
            dropped.clone(),
        )
        .unwrap();
        processor.on_end(span(false));
        processor.on_end(span(true));
        processor.on_end(span(true));
        processor.shutdown().unwrap();
        assert_eq!(*exporter.got.lock().unwrap(), 2);
        assert_eq!(dropped.get(), 0);
        assert!(
            processor.shutdown().is_err(),
            "a second shutdown is refused"
        );
    }
}

//! The OpenTelemetry side of the subscriber: a tracer provider whose spans
//! get W3C trace and span ids, the sampler, and — when a collector is set —
//! the export of sampled spans over OTLP/HTTP ([`super::export`]).

use std::time::Duration;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, Tracer,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

use super::export::BoundedExport;

/// Where spans go and which are kept (from `telemetry.*`).
#[derive(Debug, Clone)]
pub struct Export {
    /// OTLP/HTTP collector base URL; `None`: spans are not exported.
    pub endpoint: Option<String>,
    pub service_name: String,
    /// `service.instance.id`: the fleet registry's id of this instance.
    pub instance: String,
    pub sample_ratio: f64,
    pub queue: usize,
    pub timeout: Duration,
}

/// The span names that may start a trace: a request, a job's attempt, the
/// poller's claim of a batch of jobs (one per batch, none per job).
/// Anything else with no parent (an actor's own `handle` span, the poller's
/// ticks and listings) is not sampled, and neither is what runs inside it:
/// a trace is always about a request, a job or the claim of jobs.
const ROOTS: &[&str] = &["request", "job.attempt", "job.claim"];

/// Parent-based ratio sampling of [`ROOTS`] only.
#[derive(Debug, Clone)]
struct RootsOnly(Sampler);

impl ShouldSample for RootsOnly {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let has_parent = parent.is_some_and(|cx| cx.has_active_span());
        if !has_parent && !ROOTS.contains(&name) {
            return SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: Default::default(),
            };
        }
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// The provider (keep it: dropping it ends the export) and its tracer.
/// `dropped` counts spans the export queue had no room for.
pub(super) fn provider(
    export: &Export,
    dropped: Counter,
) -> anyhow::Result<(SdkTracerProvider, Tracer)> {
    let ratio = Sampler::TraceIdRatioBased(export.sample_ratio);
    let resource = Resource::builder()
        .with_service_name(export.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", export.instance.clone()),
        ])
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(RootsOnly(Sampler::ParentBased(Box::new(ratio))))
        .with_resource(resource.clone());
    if let Some(endpoint) = &export.endpoint {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(export.timeout)
            .build()?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let processor = BoundedExport::start(exporter, export.queue, export.timeout, dropped)?;
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    let tracer = provider.tracer("troupe");
    Ok((provider, tracer))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    use super::*;

    fn decide(sampler: &RootsOnly, parent: Option<&Context>, name: &str) -> SamplingDecision {
        let trace_id = TraceId::from(42u128);
        sampler
            .should_sample(parent, trace_id, name, &SpanKind::Internal, &[], &[])
            .decision
    }

    #[test]
    fn only_requests_and_job_attempts_start_traces_and_children_follow_their_parent() {
        let sampler = RootsOnly(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        assert_eq!(
            decide(&sampler, None, "request"),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(&sampler, None, "job.attempt"),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(&sampler, None, "executor"), SamplingDecision::Drop);
        let remote = |flags| {
            let span = SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(2u64),
                flags,
                true,
                TraceState::default(),
            );
            Context::new().with_remote_span_context(span)
        };
        let sampled = remote(TraceFlags::SAMPLED);
        assert_eq!(
            decide(&sampler, Some(&sampled), "mongodb.command"),
            SamplingDecision::RecordAndSample
        );
        let unsampled = remote(TraceFlags::default());
        assert_eq!(
            decide(&sampler, Some(&unsampled), "request"),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn a_ratio_of_zero_samples_no_new_trace() {
        let sampler = RootsOnly(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            0.0,
        ))));
        assert_eq!(decide(&sampler, None, "request"), SamplingDecision::Drop);
    }
}

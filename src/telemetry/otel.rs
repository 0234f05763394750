//! OpenTelemetry traces, off unless `--otlp-endpoint` is given. Spans of
//! target [`TARGET`] (login, a message's accept, store and deliver, hook
//! calls) go to an OTLP/HTTP (JSON) collector in batches from a thread of
//! their own. A message's trace context rides in its envelopes
//! ([`TraceParent`]), so its delivery on another node joins the same trace.
//! With tracing off those spans are disabled at their call sites and
//! [`current`] is one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::model::TraceParent;

/// The target of every exported span.
pub(crate) const TARGET: &str = "rtgate::otel";

static ON: AtomicBool = AtomicBool::new(false);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// The traces URL.
        endpoint: String,
        /// What failed.
        reason: String,
    },
}

/// The export pipeline; [`Traces::shutdown`] flushes what is pending.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports to `endpoint` (the collector's base URL; `/v1/traces` is
    /// added when it has no path), sampling `ratio` of new traces (a
    /// message keeps the decision of the trace it arrived with). `node`
    /// names this node in the spans' resource.
    pub fn start(endpoint: &str, ratio: f64, node: Option<&str>) -> Result<Traces, OtelError> {
        let url = traces_url(endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url.clone())
            .build()
            .map_err(|e| OtelError::Exporter {
                endpoint: url,
                reason: e.to_string(),
            })?;
        let mut resource = Resource::builder().with_service_name("rtgate");
        if let Some(node) = node {
            resource = resource.with_attribute(opentelemetry::KeyValue::new(
                "service.instance.id",
                node.to_string(),
            ));
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_resource(resource.build())
            .build();
        ON.store(true, Ordering::Relaxed);
        Ok(Traces { provider })
    }

    /// The layer that turns the spans of target `rtgate::otel` into exported ones.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer("rtgate");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE))
    }

    /// Exports what is pending and stops the export thread.
    pub fn shutdown(self) {
        ON.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("traces not flushed at shutdown: {e}");
        }
    }
}

/// `endpoint` with `/v1/traces` when it names no path (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let path = trimmed
        .split_once("://")
        .map_or(trimmed, |(_, rest)| rest)
        .split_once('/');
    match path {
        Some((_, p)) if !p.is_empty() => trimmed.to_string(),
        _ => format!("{trimmed}/v1/traces"),
    }
}

/// Whether traces are exported.
pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The trace context of the current span, to hand on with a message.
pub(crate) fn current() -> Option<TraceParent> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceParent {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
    })
}

/// Makes `span` a child of the (possibly remote) span `parent` names.
pub(crate) fn set_parent(span: &tracing::Span, parent: TraceParent) {
    if span.is_disabled() {
        return;
    }
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(parent.trace_id.to_be_bytes()),
        SpanId::from_bytes(parent.span_id.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/custom/path"),
            "http://c:4318/custom/path"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}

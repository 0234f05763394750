//! The process's tracing subscriber: logs to stderr, filtered by `RUST_LOG`,
//! and, when traces are exported, the OpenTelemetry layer. Each layer has
//! its own filter: the exported spans (target `rtgate::otel`) never reach
//! the log, and without traces their call sites are disabled outright.

use tracing::Subscriber;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

use super::otel::{TARGET, Traces};

/// The subscriber: log lines as text (or JSON objects when `json`), with
/// `filter` (`RUST_LOG`'s directives) on the log layer, and `traces`' layer
/// beside it.
pub fn subscriber(
    json: bool,
    filter: EnvFilter,
    traces: Option<&Traces>,
) -> Box<dyn Subscriber + Send + Sync> {
    let filter = filter.add_directive(format!("{TARGET}=off").parse().expect("a valid directive"));
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = match json {
        false => logs.boxed(),
        true => logs.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    // Without traces, no layer at all (not a `None` one, which leaves the
    // exported spans' call sites of interest to the registry).
    match traces {
        Some(t) => Box::new(registry.with(t.layer())),
        None => Box::new(registry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_spans_are_disabled_without_traces_even_when_logging_everything() {
        let s = subscriber(false, EnvFilter::new("trace"), None);
        tracing::subscriber::with_default(s, || {
            let exported = tracing::trace_span!(target: "rtgate::otel", "message.accept");
            assert!(exported.is_disabled());
            let logged = tracing::trace_span!("session");
            assert!(!logged.is_disabled());
        });
    }

    #[test]
    fn with_traces_the_exported_spans_are_live() {
        // A collector nobody listens on: nothing is exported in this test.
        let traces = Traces::start("http://127.0.0.1:9", 1.0, None).unwrap();
        let s = subscriber(true, EnvFilter::new("warn"), Some(&traces));
        tracing::subscriber::with_default(s, || {
            let span = tracing::trace_span!(target: "rtgate::otel", "message.accept");
            assert!(!span.is_disabled());
            let _in = span.enter();
            let tp = super::super::otel::current().expect("a trace context");
            assert_ne!(tp.trace_id, 0);
            assert!(tp.sampled);
        });
        traces.shutdown();
    }
}

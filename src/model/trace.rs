//! A trace context as it travels with a message between nodes: the W3C
//! `traceparent` fields (trace id, parent span id, sampled flag), so that a
//! message's spans on every node it crosses join one trace. Plain data: the
//! OpenTelemetry glue lives in `telemetry::otel`.

use std::fmt;

/// The trace a message belongs to and the span that handed it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// The parent span's id (never zero).
    pub span_id: u64,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a version-00 `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`);
    /// `None` for anything else, all-zero ids included.
    pub fn parse(s: &str) -> Option<TraceParent> {
        let mut f = s.split('-');
        let (version, trace, span, flags) = (f.next()?, f.next()?, f.next()?, f.next()?);
        if f.next().is_some() || version != "00" {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let tp = TraceParent {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            sampled: u8::from_str_radix(flags, 16).ok()? & 1 == 1,
        };
        (tp.trace_id != 0 && tp.span_id != 0).then_some(tp)
    }
}

/// The `traceparent` form.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(s).unwrap();
        assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.span_id, 0x00f067aa0ba902b7);
        assert!(tp.sampled);
        assert_eq!(tp.to_string(), s);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let unsampled = TraceParent {
            sampled: false,
            ..tp
        };
        assert!(unsampled.to_string().ends_with("-00"));
    }
}

//! Prometheus metrics: every metric name lives here, behind small functions
//! the rest of the code calls, and `/metrics` renders them (`catalog`
//! describes each and registers it at zero).

mod catalog;
pub(crate) mod logs;
pub(crate) mod otel;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::TransportKind;
use crate::protocol::CloseCode;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub(crate) fn install() -> PrometheusHandle {
    static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let handle = recorder();
    // Once the recorder is in place (registering reaches `install` again,
    // which then finds the flag set).
    if !REGISTERED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        catalog::register();
    }
    handle
}

fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &sizes)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_queue_depth".into()), &sizes)
                })
                .expect("bucket lists are not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding program's):
                // keep ours private so /metrics still renders.
                Err(_) => {
                    let recorder = PrometheusBuilder::new().build_recorder();
                    recorder.handle()
                }
            }
        })
        .clone()
}

/// Drains histogram buffers now and then (the exporter needs it).
pub(crate) async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// Metric handles one session updates on its hot path, resolved once so
/// that a frame costs an atomic add, not a registry lookup.
pub(crate) struct SessionMetrics {
    /// Frames received.
    pub frames_in: metrics::Counter,
    /// Frames written.
    pub frames_out: metrics::Counter,
    /// Outbound queue depth when the writer wakes.
    pub queue_depth: metrics::Histogram,
    /// Sessions closed 4008 because a write made no progress for the
    /// heartbeat interval (a peer that stopped reading).
    pub write_stalls: metrics::Counter,
    /// Open connections.
    connections: metrics::Gauge,
    /// Connections ever opened.
    connections_total: metrics::Counter,
}

impl SessionMetrics {
    /// A connection opened on this transport.
    pub(crate) fn opened(&self) {
        self.connections.increment(1.0);
        self.connections_total.increment(1);
    }

    /// A connection closed.
    pub(crate) fn closed(&self) {
        self.connections.decrement(1.0);
    }
}

/// The handles for sessions on `kind`: resolved once per process (after the
/// recorder is installed), shared by every session, so a connection costs
/// neither a registry lookup nor a handle allocation.
pub(crate) fn session_metrics(kind: TransportKind) -> &'static SessionMetrics {
    static BY_KIND: [OnceLock<SessionMetrics>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match kind {
        TransportKind::WebSocket => &BY_KIND[0],
        TransportKind::WebTransport => &BY_KIND[1],
        TransportKind::Sse => &BY_KIND[2],
    };
    if let Some(m) = slot.get() {
        return m;
    }
    // Outside the slot's initialization: installing registers the catalog,
    // which comes back here.
    install();
    slot.get_or_init(|| SessionMetrics {
        frames_in: counter!("rtgate_frames_in_total", "transport" => kind.as_str()),
        frames_out: counter!("rtgate_frames_out_total", "transport" => kind.as_str()),
        queue_depth: histogram!("rtgate_outbound_queue_depth"),
        write_stalls: counter!("rtgate_write_stalls_total", "transport" => kind.as_str()),
        connections: gauge!("rtgate_connections", "transport" => kind.as_str()),
        connections_total: counter!("rtgate_connections_total", "transport" => kind.as_str()),
    })
}

/// A connection refused at accept by a connection cap (`global`, `per_ip`).
pub(crate) fn connection_refused(kind: TransportKind, cap: &'static str) {
    counter!("rtgate_connections_refused_total", "transport" => kind.as_str(), "cap" => cap)
        .increment(1);
}

/// A WebTransport datagram received (`in`), sent (`out`), or a volatile
/// frame quinn no longer took when its batch was sent (`dropped`).
pub(crate) fn datagram(direction: &'static str) {
    // Once per datagram per recipient: the handles are resolved once.
    static SLOTS: [OnceLock<metrics::Counter>; 3] = [const { OnceLock::new() }; 3];
    let slot = match direction {
        "in" => &SLOTS[0],
        "out" => &SLOTS[1],
        _ => &SLOTS[2],
    };
    slot.get_or_init(|| {
        install();
        counter!("rtgate_datagrams_total", "direction" => direction)
    })
    .increment(1);
}

/// A redundant datagram copy of a stored frame: `sent`, or `dropped`
/// (waiting copies past their bound, or one quinn would not take).
pub(crate) fn datagram_copy(outcome: &'static str) {
    counter!("rtgate_datagram_copies_total", "outcome" => outcome).increment(1);
}

/// A login attempt and its outcome (`ok`, `unauthorized`, `forbidden`, `timeout`).
pub(crate) fn login(result: &'static str) {
    counter!("rtgate_logins_total", "result" => result).increment(1);
}

/// A fan-out: frames queued to sessions, and frames dropped on full queues.
pub(crate) fn delivered(queued: usize, dropped: usize) {
    counter!("rtgate_deliveries_total").increment(queued as u64);
    if dropped > 0 {
        counter!("rtgate_drops_total").increment(dropped as u64);
    }
}

/// A session closed by the server with this code.
pub(crate) fn closed(code: CloseCode) {
    counter!("rtgate_closes_total", "reason" => code.label()).increment(1);
}

/// An error frame sent to a client.
pub(crate) fn client_error(code: u16) {
    counter!("rtgate_client_errors_total", "code" => code.to_string()).increment(1);
}

/// A store commit: its duration and how many requests it carried.
pub(crate) fn store_commit(took: Duration, batch: usize) {
    histogram!("rtgate_store_write_seconds").record(took.as_secs_f64());
    histogram!("rtgate_store_batch_size").record(batch as f64);
}

/// A failed store commit.
pub(crate) fn store_error() {
    counter!("rtgate_store_errors_total").increment(1);
}

/// A read position a client reported.
pub(crate) fn read_mark() {
    counter!("rtgate_read_marks_total").increment(1);
}

/// One batched write of read positions.
pub(crate) fn read_batch() {
    counter!("rtgate_read_batches_total").increment(1);
}

/// A receipt notice stored in a sender's inbox.
pub(crate) fn receipt_notice() {
    counter!("rtgate_receipt_notices_total").increment(1);
}

/// An envelope handed to the broker.
pub(crate) fn broker_published() {
    counter!("rtgate_broker_published_total").increment(1);
}

/// An envelope received from the broker for local delivery.
pub(crate) fn broker_received() {
    counter!("rtgate_broker_received_total").increment(1);
}

/// An envelope dropped because the broker's queue was full.
pub(crate) fn broker_dropped() {
    counter!("rtgate_broker_dropped_total").increment(1);
}

/// Local sessions were told to resync (close 1001) because the broker may
/// have missed envelopes for them.
pub(crate) fn broker_resync() {
    counter!("rtgate_broker_resyncs_total").increment(1);
}

/// The broker reconnected to its backend.
pub(crate) fn broker_reconnect() {
    counter!("rtgate_broker_reconnects_total").increment(1);
}

/// Messages replayed to a session at login.
pub(crate) fn replayed(channel_kind: &'static str, n: usize) {
    counter!("rtgate_replayed_messages_total", "channel" => channel_kind).increment(n as u64);
}

/// A backend hook call: how long it took and how it ended (`answered`, or
/// the kind of failure: `busy`, `timeout`, `unreachable`, `status`, `answer`).
pub(crate) fn hook_call(hook: &'static str, took: Duration, result: &'static str) {
    histogram!("rtgate_hook_seconds", "hook" => hook).record(took.as_secs_f64());
    counter!("rtgate_hook_calls_total", "hook" => hook, "result" => result).increment(1);
}

/// One batched hook call of `n` messages.
pub(crate) fn hook_batch(hook: &'static str, n: usize) {
    histogram!("rtgate_hook_batch_size", "hook" => hook).record(n as f64);
}

/// What a hook's answer (or its failure policy) decided: `accept`,
/// `rewrite`, `refuse`, `allowed_on_failure` or `refused_on_failure`.
pub(crate) fn hook_decision(hook: &'static str, decision: &'static str) {
    counter!("rtgate_hook_decisions_total", "hook" => hook, "decision" => decision).increment(1);
}

/// A configured hook's series, at zero before its first call, so
/// dashboards and `rate()` see them from the first scrape.
pub(crate) fn hook_registered(hook: &'static str) {
    let _ = histogram!("rtgate_hook_seconds", "hook" => hook);
    for result in [
        "answered",
        "busy",
        "timeout",
        "unreachable",
        "status",
        "answer",
    ] {
        counter!("rtgate_hook_calls_total", "hook" => hook, "result" => result).absolute(0);
    }
    for decision in [
        "accept",
        "rewrite",
        "refuse",
        "allowed_on_failure",
        "refused_on_failure",
    ] {
        counter!("rtgate_hook_decisions_total", "hook" => hook, "decision" => decision).absolute(0);
    }
}

/// Events the event webhook took (a 2xx answer).
pub(crate) fn events_delivered(n: usize) {
    counter!("rtgate_events_delivered_total").increment(n as u64);
}

/// A batch of events the webhook did not take; it is sent again.
pub(crate) fn event_batch_failed() {
    counter!("rtgate_event_batches_failed_total").increment(1);
}

/// An event that could not be put in the outbox (the store refused it).
pub(crate) fn event_lost() {
    counter!("rtgate_events_lost_total").increment(1);
}

/// Events the outbox dropped, oldest first, because they were older than
/// its age bound (`"age"`) or past its byte bound (`"bytes"`).
pub(crate) fn events_dropped(reason: &'static str, n: u64) {
    if n > 0 {
        counter!("rtgate_events_dropped_total", "reason" => reason).increment(n);
    }
}

/// An event the webhook refused on its own, repeatedly: taken out of the
/// outbox and kept aside (`/api/events`).
pub(crate) fn event_quarantined() {
    counter!("rtgate_events_quarantined_total").increment(1);
}

/// What the outbox holds.
pub(crate) fn outbox_depth(events: u64, bytes: u64) {
    gauge!("rtgate_event_outbox_events").set(events as f64);
    gauge!("rtgate_event_outbox_bytes").set(bytes as f64);
}

/// The event webhook's series, at zero from the first scrape.
pub(crate) fn events_registered() {
    counter!("rtgate_events_delivered_total").absolute(0);
    counter!("rtgate_event_batches_failed_total").absolute(0);
    counter!("rtgate_events_lost_total").absolute(0);
    counter!("rtgate_events_dropped_total", "reason" => "age").absolute(0);
    counter!("rtgate_events_dropped_total", "reason" => "bytes").absolute(0);
    counter!("rtgate_events_quarantined_total").absolute(0);
    outbox_depth(0, 0);
}

/// A push request's result (see `rtgate_pushes_total`).
pub(crate) fn push(service: &'static str, result: &'static str) {
    counter!("rtgate_pushes_total", "service" => service, "result" => result).increment(1);
}

/// A user's push window ended this way (see `rtgate_push_checks_total`).
pub(crate) fn push_check(outcome: &'static str) {
    counter!("rtgate_push_checks_total", "outcome" => outcome).increment(1);
}

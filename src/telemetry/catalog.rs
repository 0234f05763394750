//! Every metric rtgate exports, described once (the `# HELP` lines), and
//! present from the first scrape: each series a dashboard or an alert names
//! is registered at zero when the recorder is installed, not on its first
//! event, so `rate()` and "absent" checks see it on a fresh node.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::model::TransportKind;
use crate::protocol::CloseCode;

/// Describes every metric and registers its known series at zero.
pub(super) fn register() {
    describe();
    for kind in [
        TransportKind::WebSocket,
        TransportKind::WebTransport,
        TransportKind::Sse,
    ] {
        // The session handles register connections, frames and queue depth.
        let _ = super::session_metrics(kind);
        for cap in ["global", "per_ip"] {
            counter!("rtgate_connections_refused_total", "transport" => kind.as_str(), "cap" => cap)
                .absolute(0);
        }
    }
    for direction in ["in", "out", "dropped"] {
        counter!("rtgate_datagrams_total", "direction" => direction).absolute(0);
    }
    for outcome in ["sent", "dropped"] {
        counter!("rtgate_datagram_copies_total", "outcome" => outcome).absolute(0);
    }
    for result in [
        "ok",
        "unauthorized",
        "forbidden",
        "timeout",
        "unavailable",
        "too_many_sessions",
    ] {
        counter!("rtgate_logins_total", "result" => result).absolute(0);
    }
    for code in [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::SlowConsumer,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::Timeout,
        CloseCode::TooLarge,
        CloseCode::RateLimited,
        CloseCode::Other(4000),
    ] {
        counter!("rtgate_closes_total", "reason" => code.label()).absolute(0);
    }
    for code in ["400", "401", "403", "409", "413", "429", "503"] {
        counter!("rtgate_client_errors_total", "code" => code).absolute(0);
    }
    for channel in ["inbox", "room"] {
        counter!("rtgate_replayed_messages_total", "channel" => channel).absolute(0);
    }
    for service in ["webpush", "apns", "fcm"] {
        for result in ["sent", "gone", "retried", "failed"] {
            counter!("rtgate_pushes_total", "service" => service, "result" => result).absolute(0);
        }
    }
    for outcome in ["received", "undelivered", "deferred"] {
        counter!("rtgate_push_checks_total", "outcome" => outcome).absolute(0);
    }
    for name in [
        "rtgate_deliveries_total",
        "rtgate_drops_total",
        "rtgate_store_errors_total",
        "rtgate_broker_published_total",
        "rtgate_broker_received_total",
        "rtgate_broker_dropped_total",
        "rtgate_broker_resyncs_total",
        "rtgate_broker_reconnects_total",
        "rtgate_read_marks_total",
        "rtgate_read_batches_total",
        "rtgate_receipt_notices_total",
    ] {
        counter!(name).absolute(0);
    }
    gauge!("rtgate_sessions").set(0.0);
    gauge!("rtgate_ready").set(0.0);
    gauge!("rtgate_connections_held").set(0.0);
    let _ = histogram!("rtgate_store_write_seconds");
    let _ = histogram!("rtgate_store_batch_size");
}

fn describe() {
    describe_gauge!("rtgate_sessions", "Logged-in sessions on this node");
    describe_gauge!(
        "rtgate_redis_acks_on_disk",
        "Cluster mode: 1 when every Redis primary persists each write before answering (appendonly yes, appendfsync always), so an ack means on disk; 0 when not or unknown (the log and /readyz say why)"
    );
    describe_gauge!(
        "rtgate_ready",
        "1 when the node serves (store and broker answer, not draining), as /readyz; set at each scrape"
    );
    describe_gauge!(
        "rtgate_connections",
        "Open connections on this node, by transport"
    );
    describe_gauge!(
        "rtgate_connections_held",
        "Connections counted against --max-conns, both transports"
    );
    describe_counter!(
        "rtgate_connections_total",
        "Connections opened, by transport"
    );
    describe_counter!(
        "rtgate_connections_refused_total",
        "Connections refused at accept by a connection cap (global or per_ip), by transport"
    );
    describe_counter!("rtgate_frames_in_total", "Frames received from clients");
    describe_counter!("rtgate_frames_out_total", "Frames written to clients");
    describe_counter!(
        "rtgate_write_stalls_total",
        "Sessions closed 4008 because a write to the peer made no progress for the heartbeat interval (a reader that stopped)"
    );
    describe_counter!(
        "rtgate_datagrams_total",
        "WebTransport datagrams received (in), sent (out), and volatile frames quinn no longer took when their turn's batch was sent (dropped)"
    );
    describe_counter!(
        "rtgate_datagram_copies_total",
        "Redundant datagram copies of stored frames (login's redundancy), sent or dropped"
    );
    describe_histogram!(
        "rtgate_outbound_queue_depth",
        "A session's outbound queue depth when its writer wakes"
    );
    describe_counter!(
        "rtgate_logins_total",
        "Login attempts by result (ok, unauthorized, forbidden, timeout, unavailable, too_many_sessions)"
    );
    describe_counter!(
        "rtgate_closes_total",
        "Sessions closed by the server, by reason (slow_consumer is close 4008)"
    );
    describe_counter!(
        "rtgate_client_errors_total",
        "Error frames (msgType 9) sent to clients, by code"
    );
    describe_counter!(
        "rtgate_deliveries_total",
        "Frames queued to local sessions by fan-out"
    );
    describe_counter!(
        "rtgate_drops_total",
        "Frames dropped on full session queues (the session is closed 4008)"
    );
    describe_counter!(
        "rtgate_replayed_messages_total",
        "Messages replayed at login, by channel kind"
    );
    describe_histogram!(
        "rtgate_store_write_seconds",
        Unit::Seconds,
        "Duration of one store commit (a batch of appends, one fsync)"
    );
    describe_histogram!(
        "rtgate_store_batch_size",
        "Requests carried by one store commit"
    );
    describe_counter!("rtgate_store_errors_total", "Failed store commits");
    describe_counter!(
        "rtgate_read_marks_total",
        "Read positions clients reported (msgType 12, and own room messages)"
    );
    describe_counter!(
        "rtgate_read_batches_total",
        "Batched writes of read positions (each carries every mark of a flush)"
    );
    describe_counter!(
        "rtgate_receipt_notices_total",
        "Receipt notices stored in senders' inboxes (merged per reader and second)"
    );
    describe_counter!(
        "rtgate_broker_published_total",
        "Envelopes handed to the broker"
    );
    describe_counter!(
        "rtgate_broker_received_total",
        "Envelopes received from the broker for local delivery"
    );
    describe_counter!(
        "rtgate_broker_dropped_total",
        "Envelopes dropped because the broker's queue was full"
    );
    describe_counter!(
        "rtgate_broker_resyncs_total",
        "Times local sessions were told to resync (close 1001) after a broker fault"
    );
    describe_counter!(
        "rtgate_broker_reconnects_total",
        "Times the broker got Redis back after an outage"
    );
    describe_histogram!(
        "rtgate_hook_seconds",
        Unit::Seconds,
        "Duration of one backend hook call, waiting for a slot included, by hook"
    );
    describe_counter!(
        "rtgate_hook_calls_total",
        "Backend hook calls by hook and result (answered, busy, timeout, unreachable, status, answer)"
    );
    describe_histogram!(
        "rtgate_hook_batch_size",
        Unit::Count,
        "Messages per batched publish hook call (--publish-hook-batch)"
    );
    describe_counter!(
        "rtgate_hook_decisions_total",
        "What hook answers or failure policies decided, by hook and decision"
    );
    describe_counter!(
        "rtgate_events_delivered_total",
        "Events the event webhook took"
    );
    describe_counter!(
        "rtgate_event_batches_failed_total",
        "Event batches the webhook did not take (sent again)"
    );
    describe_counter!(
        "rtgate_events_lost_total",
        "Events that could not be put in the outbox"
    );
    describe_counter!(
        "rtgate_events_dropped_total",
        "Events the outbox dropped, oldest first, past --event-outbox-max-age-sec (reason age) or --event-outbox-max-bytes (reason bytes)"
    );
    describe_counter!(
        "rtgate_pushes_total",
        "Push requests by service (webpush, apns, fcm) and result: sent (2xx), gone (the registration was removed: 404/410 or an invalid token), retried (429, 5xx, unreachable: sent again later), failed (given up)"
    );
    describe_counter!(
        "rtgate_push_checks_total",
        "Users' push windows by outcome: received (every message reached a session in time), undelivered (pushed and reported), deferred (another node held the user's window)"
    );
    describe_counter!(
        "rtgate_events_quarantined_total",
        "Events the webhook refused on their own, repeatedly: taken out of the outbox, listed at /api/events"
    );
    describe_gauge!(
        "rtgate_event_outbox_events",
        "Events waiting in the outbox for the event webhook"
    );
    describe_gauge!(
        "rtgate_event_outbox_bytes",
        "Bytes of the events waiting in the outbox (in Redis: estimated from the newest and oldest ten)"
    );
}

//! The event webhook (`--event-hook`): what happened becomes an event in
//! the store's outbox (stored messages in their own write, presence edges
//! as the broker reports them), and one task per node takes events out in
//! batches, POSTs them (signed) and removes them only once the backend
//! answered 2xx. A failure is retried with backoff, so a backend outage or
//! a node restart loses no event; the backend dedupes by `id`. The outbox
//! is bounded (bytes and age: an outage longer than that loses the oldest
//! events, counted), batches are bounded in bytes, and an event the backend
//! refuses on its own is quarantined (`quarantine`) instead of blocking
//! the rest for ever.

mod quarantine;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub(crate) use quarantine::{Quarantine, Quarantined};

use crate::hooks::{HookError, Hooks};
use crate::model::event::{Edge, EdgeSink, of_edge};
use crate::store::{OutboxEntry, OutboxLimits, Store};
use crate::telemetry;

/// Events per POST.
const BATCH: usize = 100;
/// How often an empty outbox is looked at again.
const IDLE: Duration = Duration::from_millis(200);
/// Backoff between failed deliveries: from this, doubling...
const RETRY_MIN: Duration = Duration::from_millis(250);
/// ...up to this (full jitter).
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Puts presence edges into the outbox, in the order they happened, a
/// batch per store write.
pub(crate) struct EdgeRecorder {
    tx: mpsc::UnboundedSender<String>,
}

impl EdgeRecorder {
    /// A recorder writing to `store`'s outbox.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let n = batch.len();
                if let Err(e) = store.push_events(std::mem::take(&mut batch)).await {
                    warn!(error = %e, events = n, "events could not be put in the outbox");
                    for _ in 0..n {
                        telemetry::event_lost();
                    }
                }
            }
        });
        Self { tx }
    }
}

impl EdgeSink for EdgeRecorder {
    fn edge(&self, edge: Edge<'_>, info: Option<&RawValue>) {
        let _ = self.tx.send(of_edge(edge, info));
    }
}

/// How the outbox and the batches sent from it are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// The outbox's bounds.
    pub(crate) limits: OutboxLimits,
    /// Most bytes one POST carries (an event larger than this goes alone).
    pub(crate) batch_bytes: usize,
}

/// A lone event the backend refused this many times (400, 413, 415 or
/// 422: about the request itself) is set aside.
const QUARANTINE_AFTER: u32 = 3;
/// How often the outbox's depth is read for its gauges.
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// Whether the backend refused the request itself (it would refuse it
/// again), rather than failed (down, busy, misconfigured: retried as is).
fn refused(e: &HookError) -> bool {
    matches!(e, HookError::Status(400 | 413 | 415 | 422))
}

/// Delivers the outbox to the event webhook until `stop`: batches of at
/// most [`BATCH`] events and `delivery.batch_bytes` bytes; a batch the
/// backend refuses is halved until the event it refuses stands alone, and
/// that one is quarantined after [`QUARANTINE_AFTER`] refusals, so one bad
/// event never holds up the rest.
pub(crate) async fn deliver(
    store: Arc<dyn Store>,
    hooks: Arc<Hooks>,
    quarantine: Arc<Quarantine>,
    delivery: Delivery,
    stop: CancellationToken,
) {
    store.limit_outbox(delivery.limits);
    let mut failures = 0u32;
    let mut refusals: HashMap<String, u32> = HashMap::new();
    let mut depth_read: Option<Instant> = None;
    loop {
        if depth_read.is_none_or(|t| t.elapsed() >= DEPTH_EVERY) {
            depth_read = Some(Instant::now());
            if let Ok(d) = store.outbox_depth().await {
                telemetry::outbox_depth(d.events, d.bytes);
            }
        }
        let batch = tokio::select! {
            b = store.claim_events(BATCH) => b,
            _ = stop.cancelled() => return,
        };
        let batch = match batch {
            Ok(b) if b.is_empty() => {
                failures = 0;
                if pause(&stop, IDLE).await {
                    return;
                }
                continue;
            }
            Ok(b) => b,
            Err(e) => {
                debug!(error = %e, "the outbox cannot be read now");
                failures += 1;
                if pause(&stop, backoff(failures)).await {
                    return;
                }
                continue;
            }
        };
        // Pieces to send, the next one last.
        let mut pieces = pieces(batch, delivery.batch_bytes);
        pieces.reverse();
        while let Some(piece) = pieces.pop() {
            let sent = hooks.events(body(&piece)).await;
            let done = match sent {
                Ok(()) => {
                    telemetry::events_delivered(piece.len());
                    failures = 0;
                    for e in &piece {
                        refusals.remove(&e.key);
                    }
                    piece
                }
                Err(e) if refused(&e) && piece.len() > 1 => {
                    // Which event does it refuse? Halve until it stands alone.
                    let mut first = piece;
                    let second = first.split_off(first.len() / 2);
                    pieces.push(second);
                    pieces.push(first);
                    continue;
                }
                Err(e) if refused(&e) => {
                    let n = refusals.entry(piece[0].key.clone()).or_default();
                    *n += 1;
                    if *n >= QUARANTINE_AFTER {
                        refusals.remove(&piece[0].key);
                        let q = quarantine
                            .add(&piece[0].body, format!("{e} ({QUARANTINE_AFTER} times)"));
                        telemetry::event_quarantined();
                        warn!(id = ?q.id, kind = ?q.kind, error = %e, "the event webhook refused an event {QUARANTINE_AFTER} times; it is quarantined (see /api/events)");
                        piece
                    } else {
                        if retry_later(&stop, &mut failures, &e, 1).await {
                            return;
                        }
                        pieces.push(piece);
                        continue;
                    }
                }
                Err(e) => {
                    if retry_later(&stop, &mut failures, &e, piece.len()).await {
                        return;
                    }
                    pieces.push(piece);
                    continue;
                }
            };
            let keys = done.into_iter().map(|e| e.key).collect::<Vec<_>>();
            while let Err(e) = store.ack_events(keys.clone()).await {
                // Delivered but still in the outbox: sent again later unless
                // this succeeds (the backend dedupes by id).
                warn!(error = %e, "delivered events could not be removed from the outbox");
                if pause(&stop, RETRY_MIN).await {
                    return;
                }
            }
        }
    }
}

/// Counts and logs a failed POST and waits before the next attempt; true
/// when `stop` came first.
async fn retry_later(
    stop: &CancellationToken,
    failures: &mut u32,
    e: &HookError,
    n: usize,
) -> bool {
    *failures += 1;
    warn!(error = %e, events = n, attempt = *failures, "event webhook failed; retrying");
    telemetry::event_batch_failed();
    pause(stop, backoff(*failures)).await
}

/// Splits a batch into pieces of at most `max_bytes` of JSON each (an
/// event larger than that is a piece of its own), in order.
fn pieces(batch: Vec<OutboxEntry>, max_bytes: usize) -> Vec<Vec<OutboxEntry>> {
    let mut out: Vec<Vec<OutboxEntry>> = Vec::new();
    let mut size = 0;
    for e in batch {
        let len = e.body.len() + 1;
        match out.last_mut() {
            Some(last) if size + len <= max_bytes => last.push(e),
            _ => {
                size = 0;
                out.push(vec![e]);
            }
        }
        size += len;
    }
    out
}

/// The JSON array a piece is POSTed as.
fn body(piece: &[OutboxEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(piece.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, e) in piece.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e.body.as_bytes());
    }
    body.push(b']');
    body
}

/// The wait before attempt `n + 1`: half to all of a doubling ceiling, at
/// random, so nodes that failed together do not retry together.
fn backoff(n: u32) -> Duration {
    let ceiling = RETRY_MIN.saturating_mul(1 << n.min(16)).min(RETRY_MAX);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Sleeps `d`; true when `stop` came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize, len: usize) -> OutboxEntry {
        OutboxEntry {
            key: n.to_string(),
            body: "x".repeat(len),
        }
    }

    #[test]
    fn batches_are_cut_by_bytes_and_a_big_event_goes_alone() {
        let batch = vec![
            event(1, 40),
            event(2, 40),
            event(3, 300),
            event(4, 10),
            event(5, 10),
        ];
        let cut = pieces(batch, 100);
        let keys: Vec<Vec<&str>> = cut
            .iter()
            .map(|p| p.iter().map(|e| e.key.as_str()).collect())
            .collect();
        assert_eq!(keys, vec![vec!["1", "2"], vec!["3"], vec!["4", "5"]]);
        assert_eq!(body(&cut[2]), b"[xxxxxxxxxx,xxxxxxxxxx]".to_vec());
        assert!(refused(&HookError::Status(413)) && !refused(&HookError::Status(401)));
        assert!(!refused(&HookError::Status(503)) && !refused(&HookError::Timeout(5)));
    }

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_its_ceiling() {
        for n in 0..40 {
            let d = backoff(n);
            let ceiling = RETRY_MIN.saturating_mul(1 << n.min(16)).min(RETRY_MAX);
            assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
        }
        assert!(backoff(30) <= RETRY_MAX);
    }
}

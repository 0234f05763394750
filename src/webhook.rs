//! The event webhook (`--event-hook`): what happened becomes an event in
//! the store's outbox (stored messages in their own write, presence edges
//! as the broker reports them), and one task per node takes events out in
//! batches, POSTs them (signed) and removes them only once the backend
//! answered 2xx. A failure is retried with backoff, so a backend outage or
//! a node restart loses no event; the backend dedupes by `id`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::hooks::Hooks;
use crate::model::event::{Edge, EdgeSink, of_edge};
use crate::store::Store;
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

/// Delivers the outbox to the event webhook until `stop`.
pub(crate) async fn deliver(store: Arc<dyn Store>, hooks: Arc<Hooks>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
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
        let mut body =
            Vec::with_capacity(batch.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, e) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e.body.as_bytes());
        }
        body.push(b']');
        // The same batch until the backend has it.
        loop {
            match hooks.events(body.clone()).await {
                Ok(()) => {
                    telemetry::events_delivered(batch.len());
                    failures = 0;
                    break;
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, events = batch.len(), attempt = failures, "event webhook failed; retrying");
                    telemetry::event_batch_failed();
                    if pause(&stop, backoff(failures)).await {
                        return;
                    }
                }
            }
        }
        let keys = batch.into_iter().map(|e| e.key).collect::<Vec<_>>();
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

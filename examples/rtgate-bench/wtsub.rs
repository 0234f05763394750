//! Fan-out subscribers over WebTransport: each logs in to its room and
//! counts what arrives on any path the server uses (the room's stream it
//! opens for stored messages, datagrams for volatile ones, the session's
//! own stream), recording one-way latency like the WebSocket subscribers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::load::{WtSession, now_us, open_many_wt, sent_at, wt_read};

/// What every subscriber of a run shares: whether the measured window is
/// open, the delivery count, and the end of the run.
#[derive(Clone)]
pub(crate) struct Counting {
    pub(crate) measuring: Arc<AtomicBool>,
    pub(crate) count: Arc<AtomicU64>,
    pub(crate) done: CancellationToken,
}

/// Opens `n` subscribers spread over `rooms` rooms and starts counting.
/// Each task returns its latency histogram once `done` is cancelled.
pub(crate) async fn subscribers(
    at: (SocketAddr, SocketAddr),
    n: usize,
    rooms: usize,
    prefix: &str,
    c: Counting,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Histogram<u64>>>> {
    let sessions = open_many_wt(at, n, rooms.max(1), prefix).await?;
    Ok(sessions
        .into_iter()
        .map(|s| tokio::spawn(count_frames(s, c.clone())))
        .collect())
}

/// One subscriber: frames from the streams the server opens, from its own
/// stream and from datagrams, until `done`.
async fn count_frames(
    WtSession {
        conn,
        send,
        mut recv,
    }: WtSession,
    Counting {
        measuring,
        count,
        done,
    }: Counting,
) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    // Stream readers hand their frames' send times to this task.
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let uni = {
        let (conn, tx) = (conn.clone(), tx.clone());
        tokio::spawn(async move {
            while let Ok(mut stream) = conn.accept_uni().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Ok(body) = wt_read(&mut stream).await {
                        if let Some(t) = sent_at(&String::from_utf8_lossy(&body)) {
                            let _ = tx.send(t);
                        }
                    }
                });
            }
        })
    };
    let bidi = tokio::spawn(async move {
        while let Ok(body) = wt_read(&mut recv).await {
            if let Some(t) = sent_at(&String::from_utf8_lossy(&body)) {
                let _ = tx.send(t);
            }
        }
    });
    let mut record = |sent: u64| {
        if measuring.load(Ordering::Relaxed) {
            count.fetch_add(1, Ordering::Relaxed);
            let _ = h.record(now_us().saturating_sub(sent).max(1));
        }
    };
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            Some(sent) = rx.recv() => record(sent),
            d = conn.receive_datagram() => match d {
                Ok(d) => {
                    if let Some(t) = sent_at(&String::from_utf8_lossy(d.payload().as_ref())) {
                        record(t);
                    }
                }
                Err(_) => break,
            },
        }
    }
    uni.abort();
    bidi.abort();
    drop(send);
    h
}

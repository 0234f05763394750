//! Fan-out subscribers over WebTransport: each logs in to its room and
//! counts what arrives on any path the server uses (the room's stream it
//! opens for stored messages, datagrams for volatile ones, the session's
//! own stream), recording one-way latency like the WebSocket subscribers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::load::{cert_hash, now_us, progress, sent_at, wt_frame, wt_read};

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
    (http, wt): (SocketAddr, SocketAddr),
    n: usize,
    rooms: usize,
    prefix: &str,
    c: Counting,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Histogram<u64>>>> {
    let hash = cert_hash(http).await?;
    // An endpoint (one UDP socket) per 50 subscribers: one socket for all
    // would overflow its kernel receive buffer when a message's datagrams
    // to every subscriber arrive at once, and the loss would be the
    // generator's, not the server's.
    let endpoints = (0..n.div_ceil(50))
        .map(|_| {
            let config = wtransport::ClientConfig::builder()
                .with_bind_default()
                .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
                .keep_alive_interval(Some(Duration::from_secs(5)))
                .build();
            wtransport::Endpoint::client(config).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let url = format!("https://127.0.0.1:{}/wt", wt.port());
    let pb = progress(n as u64, "wt subscribers");
    let sem = Arc::new(Semaphore::new(64));
    let mut opening = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (endpoint, url, pb) = (endpoints[i / 50].clone(), url.clone(), pb.clone());
        let user = format!("{prefix}{i}");
        let room = format!("room{}", i % rooms.max(1));
        opening.push(tokio::spawn(async move {
            let r = async {
                let conn = endpoint.connect(&url).await?;
                let (mut send, mut recv) = conn.open_bi().await?.await?;
                let login = json!({"msgType": 2, "sendUserId": user, "roomId": room});
                wt_frame(&mut send, login.to_string().as_bytes()).await?;
                let reply = wt_read(&mut recv).await?;
                anyhow::ensure!(reply.starts_with(b"{\"msgType\":2"), "login failed");
                anyhow::Ok((conn, send, recv))
            }
            .await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    let mut tasks = Vec::with_capacity(n);
    for o in opening {
        let (conn, send, recv) = o.await??;
        tasks.push(tokio::spawn(count_frames(conn, send, recv, c.clone())));
    }
    pb.finish_and_clear();
    // The endpoints live as long as their connections.
    tokio::spawn({
        let done = c.done.clone();
        async move {
            done.cancelled().await;
            drop(endpoints);
        }
    });
    Ok(tasks)
}

/// One subscriber: frames from the streams the server opens, from its own
/// stream and from datagrams, until `done`.
async fn count_frames(
    conn: wtransport::Connection,
    send: wtransport::SendStream,
    mut recv: wtransport::RecvStream,
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

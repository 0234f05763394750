//! Stored-and-acked throughput and ack latency, through the real server.
//!
//! Starts a node in-process on a loopback port with the SQLite store in a
//! temporary folder, and, in the same run, one with the in-memory store as
//! the baseline. C WebSocket clients each keep W durable room messages in
//! flight; the tool reports acked messages per second and the ack latency
//! distribution (HDR histogram) for both, and their ratio.
//!
//!     cargo run --release --example ack_bench -- [clients] [messages per client] [window]

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rtgate::config::{Options, StoreKind};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Result {
    store: &'static str,
    acked: u64,
    secs: f64,
    hist: Histogram<u64>,
}

async fn run(
    store: StoreKind,
    clients: usize,
    per_client: usize,
    window: usize,
) -> anyhow::Result<Result> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    let opts = Options::from_args([
        "--http",
        "127.0.0.1:0",
        "--wt",
        "127.0.0.1:0",
        "--data",
        &data,
        "--store",
        &store.to_string(),
        "--rate-limit",
        "0",
        "--user-rate-limit",
        "0",
    ])?;
    let running = rtgate::server::start(opts.resolve()?).await?;
    let url = format!("ws://{}/ws", running.http_addr);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.context("connect")?;
            let login = json!({"msgType": 2, "sendUserId": format!("bench{c}"), "roomId": format!("room{c}")});
            ws.send(Message::text(login.to_string())).await?;
            ws.next().await.context("login reply")??;
            let mut hist = Histogram::<u64>::new(3)?;
            let mut sent_at = std::collections::HashMap::new();
            let (mut sent, mut acked) = (0usize, 0usize);
            while acked < per_client {
                while sent < per_client && sent - acked < window {
                    let m = json!({"msgType": 3, "roomId": format!("room{c}"), "clientMsgId": sent.to_string(),
                                   "msgBody": {"n": sent, "pad": "x".repeat(100)}});
                    ws.feed(Message::text(m.to_string())).await?;
                    sent_at.insert(sent.to_string(), Instant::now());
                    sent += 1;
                }
                ws.flush().await?;
                let frame = ws.next().await.context("ack")??;
                let v: Value = serde_json::from_str(frame.to_text()?)?;
                if v["msgType"] == 4 {
                    let t = sent_at.remove(v["clientMsgId"].as_str().unwrap_or_default()).context("unknown ack")?;
                    hist.record(t.elapsed().as_micros() as u64)?;
                    acked += 1;
                } else if v["msgType"] == 9 {
                    anyhow::bail!("error frame: {v}");
                }
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let secs = start.elapsed().as_secs_f64();
    running.shutdown().await;
    let name = match store {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Memory => "memory",
    };
    Ok(Result {
        store: name,
        acked: hist.len(),
        secs,
        hist,
    })
}

fn report(r: &Result) -> Value {
    let rate = r.acked as f64 / r.secs;
    let q = |p: f64| r.hist.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "{:>7}: {:>7} acked in {:>6.2} s = {:>8.0} msg/s; ack latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        r.store,
        r.acked,
        r.secs,
        rate,
        q(0.5),
        q(0.9),
        q(0.99),
        r.hist.max() as f64 / 1000.0
    );
    json!({"store": r.store, "acked": r.acked, "secs": r.secs, "msgs_per_sec": rate,
           "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": r.hist.max() as f64 / 1000.0})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<std::result::Result<_, _>>()?;
    let clients = args.first().copied().unwrap_or(50);
    let per_client = args.get(1).copied().unwrap_or(2000);
    let window = args.get(2).copied().unwrap_or(32);
    println!("ack_bench: {clients} clients x {per_client} durable room messages, window {window}");
    let base = run(StoreKind::Memory, clients, per_client, window).await?;
    let disk = run(StoreKind::Sqlite, clients, per_client, window).await?;
    let (b, d) = (report(&base), report(&disk));
    let ratio =
        d["msgs_per_sec"].as_f64().unwrap_or(0.0) / b["msgs_per_sec"].as_f64().unwrap_or(1.0);
    println!("sqlite / memory throughput: {ratio:.2}");
    println!(
        "{}",
        json!({"bench": "ack", "clients": clients, "per_client": per_client, "window": window,
                          "memory": b, "sqlite": d, "ratio": ratio})
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

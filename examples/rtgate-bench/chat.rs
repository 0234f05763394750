//! What the chat features cost (issue 28), each measured with and without
//! in the same invocation:
//!
//! - `unread`: logins of a user in R rooms that each hold history, with
//!   unread counts in the login reply and with `"unread":false`: server
//!   CPU per login and the login's latency.
//! - `receipts`: one room of N members; a publisher sends M messages and
//!   every member reports its read position (msgType 12) for each message
//!   it gets, against the same run without receipts: server CPU per
//!   delivered message and per receipt, and how many batched writes the
//!   read positions took (`rtgate_read_batches_total`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Target, Window, metric, open_many, start, ws_login};

/// Sends `count` messages to `room` from a fresh session and waits for
/// every ack.
async fn fill_room(http: SocketAddr, room: &str, count: usize) -> anyhow::Result<()> {
    let ws = ws_login(http, &format!("filler-{room}"), Some(room)).await?;
    let (mut tx, mut rx) = ws.split();
    for i in 0..count {
        let m = json!({"msgType": 3, "roomId": room, "msgBody": {"n": i}});
        tx.feed(Message::text(m.to_string())).await?;
    }
    tx.flush().await?;
    let mut acked = 0;
    while acked < count {
        match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":4") => acked += 1,
            Ok(Some(Ok(_))) => {}
            other => bail!("filling {room}: {other:?}"),
        }
    }
    Ok(())
}

/// One login of `user` joining `rooms`; answers its latency.
async fn login(
    http: SocketAddr,
    user: &str,
    rooms: &[String],
    unread: bool,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await?;
    let frame = json!({"msgType": 2, "sendUserId": user, "rooms": rooms, "unread": unread});
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":2") => {
                let took = t0.elapsed();
                if unread && !t.contains("\"unread\"") {
                    bail!("a login reply without unread counts: {t}");
                }
                let _ = ws.close(None).await;
                return Ok(took);
            }
            Ok(Some(Ok(_))) => {}
            other => bail!("login: {other:?}"),
        }
    }
}

/// Logins with and without unread counts, alternating in rounds so that
/// both see the same server state.
pub(crate) async fn unread(
    target: &Target,
    rooms: usize,
    history: usize,
    logins: usize,
    pin: bool,
) -> anyhow::Result<Value> {
    let server = start(target, &["--max-rooms", &rooms.max(64).to_string()], pin).await?;
    let names: Vec<String> = (0..rooms).map(|r| format!("u-room{r}")).collect();
    for room in &names {
        fill_room(server.http, room, history).await?;
    }
    // The reader has read half of each room and has a read position in
    // every room (what a real user's counts are computed from).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await?;
    let frame = json!({"msgType": 2, "sendUserId": "reader", "rooms": names});
    ws.send(Message::text(frame.to_string())).await?;
    for room in &names {
        let m = json!({"msgType": 12, "kind": "read", "roomId": room, "seq": history / 2});
        ws.send(Message::text(m.to_string())).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(ws);
    let mut out = Vec::new();
    let mut hist = [Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?];
    let mut cpu = [0.0f64; 2];
    let rounds = 10;
    for round in 0..rounds {
        for (i, with) in [true, false].into_iter().enumerate() {
            let w = Window::open(&[server.pid]);
            for _ in 0..logins / rounds {
                let took = login(server.http, "reader", &names, with).await?;
                hist[i].record(took.as_micros() as u64)?;
            }
            cpu[i] += w.close(&[server.pid]).1;
        }
        let _ = round;
    }
    for (i, with) in [true, false].into_iter().enumerate() {
        let per_login_us = cpu[i] * 1e6 / logins as f64;
        let p50 = hist[i].value_at_quantile(0.5) as f64 / 1000.0;
        let p99 = hist[i].value_at_quantile(0.99) as f64 / 1000.0;
        println!(
            "unread {}: {logins} logins into {rooms} rooms of {history} messages: server CPU {per_login_us:.0} us per login, p50 {p50:.2} ms, p99 {p99:.2} ms",
            if with { "on " } else { "off" },
        );
        out.push(json!({"unread": with, "server_cpu_us_per_login": per_login_us, "p50_ms": p50, "p99_ms": p99}));
    }
    let ratio = cpu[0] / cpu[1];
    println!(
        "unread counts cost {:.2}x the CPU of a login without them",
        ratio
    );
    server.drain().await?;
    Ok(
        json!({"scenario": "unread", "rooms": rooms, "history": history, "logins": logins,
              "runs": out, "cpu_ratio": ratio}),
    )
}

/// A room of `members`; `messages` sent at `rate` per second; every member
/// reports its read position for each message when `receipts`.
async fn room_run(
    target: &Target,
    members: usize,
    messages: usize,
    rate: u64,
    receipts: bool,
    pin: bool,
) -> anyhow::Result<Value> {
    let server = start(target, &[], pin).await?;
    let http = server.http;
    let subs = open_many(http, members, 1, "member", "joining").await?;
    let got = Arc::new(AtomicU64::new(0));
    let sent_receipts = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for ws in subs {
        let (mut tx, mut rx) = ws.split();
        let (got, sent_receipts) = (got.clone(), sent_receipts.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < messages {
                let Some(Ok(Message::Text(t))) = rx.next().await else {
                    break;
                };
                if !t.contains("\"msgType\":3,") {
                    continue;
                }
                n += 1;
                got.fetch_add(1, Ordering::Relaxed);
                if receipts {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    let r =
                        json!({"msgType": 12, "kind": "read", "roomId": "room0", "seq": v["seq"]});
                    if tx.send(Message::text(r.to_string())).await.is_ok() {
                        sent_receipts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (tx, rx)
        }));
    }
    let batches0 = metric(http, "rtgate_read_batches_total")
        .await
        .unwrap_or(0.0);
    let publisher = ws_login(http, "publisher", Some("room0")).await?;
    let (mut ptx, _prx) = publisher.split();
    let w = Window::open(&[server.pid]);
    let every = Duration::from_micros(1_000_000 / rate.max(1));
    for i in 0..messages {
        let m = json!({"msgType": 3, "roomId": "room0", "msgBody": {"n": i}});
        ptx.send(Message::text(m.to_string())).await?;
        tokio::time::sleep(every).await;
    }
    let want = (members * messages) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            bail!(
                "{} of {want} deliveries after 60 s",
                got.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last flush of read positions.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (secs, server_cpu, _) = w.close(&[server.pid]);
    let batches = metric(http, "rtgate_read_batches_total")
        .await
        .unwrap_or(0.0)
        - batches0;
    let receipts_n = sent_receipts.load(Ordering::Relaxed);
    for r in readers {
        r.abort();
    }
    server.drain().await.context("draining")?;
    let per_delivery_us = server_cpu * 1e6 / want as f64;
    println!(
        "receipts {}: {members} members, {messages} messages at {rate}/s: {want} deliveries, {receipts_n} receipts, server CPU {server_cpu:.2} s ({per_delivery_us:.2} us per delivery), {batches:.0} batched writes of read positions in {secs:.1} s",
        if receipts { "on " } else { "off" },
    );
    Ok(
        json!({"receipts": receipts, "members": members, "messages": messages, "deliveries": want,
              "receipts_sent": receipts_n, "server_cpu_s": server_cpu,
              "server_cpu_us_per_delivery": per_delivery_us, "read_batches": batches, "secs": secs}),
    )
}

/// The room with and without receipts.
pub(crate) async fn receipts(
    target: &Target,
    members: usize,
    messages: usize,
    rate: u64,
    pin: bool,
) -> anyhow::Result<Value> {
    let off = room_run(target, members, messages, rate, false, pin).await?;
    let on = room_run(target, members, messages, rate, true, pin).await?;
    let cpu = |v: &Value| v["server_cpu_s"].as_f64().unwrap_or(0.0);
    let n = on["receipts_sent"].as_f64().unwrap_or(1.0).max(1.0);
    let per_receipt_us = (cpu(&on) - cpu(&off)) * 1e6 / n;
    let ratio = cpu(&on) / cpu(&off).max(1e-9);
    println!(
        "receipts cost {per_receipt_us:.2} us of server CPU each; the room costs {ratio:.2}x with them; {} receipts were written in {} batches",
        on["receipts_sent"], on["read_batches"]
    );
    Ok(json!({"scenario": "receipts", "off": off, "on": on,
              "server_cpu_us_per_receipt": per_receipt_us, "cpu_ratio": ratio}))
}

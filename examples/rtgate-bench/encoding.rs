//! JSON against MessagePack (issue 30): one room of N WebSocket members,
//! all JSON in one run and all MessagePack in the other (the subprotocol
//! `rtgate.msgpack`); a JSON publisher sends M chat messages. Reports the
//! bytes each delivery takes on the wire and the server's CPU per
//! delivery, both runs in the same invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::load::{Target, Window, start, ws_login};

/// A chat message as an app sends it.
fn body(i: usize) -> Value {
    json!({"text": format!("message {i}: on my way, be there in ten minutes"),
           "attachments": [], "mentions": ["alice"], "replyTo": null, "n": i})
}

async fn run(
    target: &Target,
    members: usize,
    messages: usize,
    rate: u64,
    packed: bool,
    pin: bool,
) -> anyhow::Result<Value> {
    let server = start(target, &[], pin).await?;
    let http = server.http;
    let (bytes, frames) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut readers = Vec::new();
    for i in 0..members {
        let mut req = format!("ws://{http}/ws").into_client_request()?;
        if packed {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", "rtgate.msgpack".parse()?);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let login = json!({"msgType": 2, "sendUserId": format!("m{i}"), "roomId": "enc"});
        let frame = match packed {
            true => Message::Binary(rmp_serde::to_vec_named(&login)?.into()),
            false => Message::text(login.to_string()),
        };
        ws.send(frame).await?;
        // The login reply (and the join it carries).
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(_))) => {}
            other => bail!("member {i}: no login reply: {other:?}"),
        }
        let (bytes, frames) = (bytes.clone(), frames.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let n = match m {
                    Message::Text(t) => t.len(),
                    Message::Binary(b) => b.len(),
                    _ => continue,
                };
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                frames.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (b0, f0) = (
        bytes.load(Ordering::Relaxed),
        frames.load(Ordering::Relaxed),
    );
    let publisher = ws_login(http, "publisher", Some("enc")).await?;
    let (mut tx, _rx) = publisher.split();
    let w = Window::open(&[server.pid]);
    let every = Duration::from_micros(1_000_000 / rate.max(1));
    for i in 0..messages {
        let m = json!({"msgType": 3, "roomId": "enc", "msgBody": body(i)});
        tx.send(Message::text(m.to_string())).await?;
        tokio::time::sleep(every).await;
    }
    let want = f0 + (members * messages) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while frames.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            bail!(
                "{} of {want} frames after 60 s",
                frames.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, server_cpu, _) = w.close(&[server.pid]);
    let deliveries = (members * messages) as f64;
    let per = (bytes.load(Ordering::Relaxed) - b0) as f64 / deliveries;
    for r in readers {
        r.abort();
    }
    server.drain().await?;
    let cpu_us = server_cpu * 1e6 / deliveries;
    println!(
        "{:>11}: {members} members, {messages} messages: {per:.0} bytes per delivery, server CPU {cpu_us:.2} us per delivery",
        if packed { "MessagePack" } else { "JSON" }
    );
    Ok(
        json!({"encoding": if packed { "msgpack" } else { "json" }, "bytes_per_delivery": per,
              "server_cpu_us_per_delivery": cpu_us, "deliveries": deliveries}),
    )
}

/// Both encodings, alternately, `rounds` times each.
pub(crate) async fn encoding(
    target: &Target,
    members: usize,
    messages: usize,
    rate: u64,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for _ in 0..rounds {
        for packed in [false, true] {
            runs.push(run(target, members, messages, rate, packed, pin).await?);
        }
    }
    Ok(json!({"scenario": "encoding", "members": members, "messages": messages, "runs": runs}))
}

//! Encodings and the HTTP fallback (issue 30): one room of N members, all
//! WebSocket JSON in one run, all WebSocket MessagePack (the subprotocol
//! `rtgate.msgpack`) in another, all Server-Sent Events in a third; a JSON
//! publisher sends M chat messages. Reports the bytes each delivery takes
//! (the WebSocket payload, or the whole event) and the server's CPU per
//! delivery, every run in the same invocation.

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

/// How the members connect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Json,
    MsgPack,
    Sse,
}

/// Counts the events in a chunk of an event stream: the blank lines that
/// end them, one split across chunks included.
fn events_in(chunk: &[u8], last: &mut u8) -> u64 {
    let mut n = chunk.windows(2).filter(|w| *w == b"\n\n").count() as u64;
    if *last == b'\n' && chunk.first() == Some(&b'\n') {
        n += 1;
    }
    *last = chunk.last().copied().unwrap_or(*last);
    n
}

/// An SSE member: opens the stream, logs in by POST into the room, then
/// counts the bytes and events it gets.
async fn sse_member(
    http: std::net::SocketAddr,
    i: usize,
    bytes: Arc<AtomicU64>,
    frames: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use http_body_util::{BodyExt, Empty, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    type B = hyper::body::Bytes;
    let get = Client::builder(TokioExecutor::new()).build_http::<Empty<B>>();
    let req = hyper::Request::get(format!("http://{http}/sse?userId=m{i}")).body(Empty::new())?;
    let mut body = get.request(req).await?.into_body();
    let mut buf = String::new();
    let hello = loop {
        if let Some(end) = buf.find("\n\n") {
            break buf[..end].to_string();
        }
        let f = body
            .frame()
            .await
            .ok_or_else(|| anyhow::anyhow!("no hello"))??;
        if let Ok(d) = f.into_data() {
            buf.push_str(std::str::from_utf8(&d)?);
        }
    };
    let data = hello
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or("{}");
    let v: Value = serde_json::from_str(data)?;
    let sid = v["sessionId"].as_str().unwrap_or_default().to_string();
    let token = v["postToken"].as_str().unwrap_or_default().to_string();
    let post = Client::builder(TokioExecutor::new()).build_http::<Full<B>>();
    let login = json!({"msgType": 2, "roomId": "enc"}).to_string();
    let req = hyper::Request::post(format!("http://{http}/sse/{sid}"))
        .header("content-type", "application/json")
        .header("x-rtgate-post-token", token)
        .body(Full::new(B::from(login)))?;
    post.request(req).await?;
    // The login reply.
    let mut last = 0u8;
    let mut seen = 0;
    while seen < 1 {
        let f = body
            .frame()
            .await
            .ok_or_else(|| anyhow::anyhow!("no login reply"))??;
        if let Ok(d) = f.into_data() {
            seen += events_in(&d, &mut last);
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(f)) = body.frame().await {
            let Ok(d) = f.into_data() else { continue };
            let n = events_in(&d, &mut last);
            bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            frames.fetch_add(n, Ordering::Relaxed);
        }
    }))
}

async fn run(
    target: &Target,
    members: usize,
    messages: usize,
    rate: u64,
    mode: Mode,
    pin: bool,
) -> anyhow::Result<Value> {
    let packed = mode == Mode::MsgPack;
    let server = start(target, &[], pin).await?;
    let http = server.http;
    let (bytes, frames) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut readers = Vec::new();
    for i in 0..members {
        if mode == Mode::Sse {
            readers.push(sse_member(http, i, bytes.clone(), frames.clone()).await?);
            continue;
        }
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
    let name = match mode {
        Mode::Json => "WebSocket JSON",
        Mode::MsgPack => "WebSocket MessagePack",
        Mode::Sse => "SSE",
    };
    println!(
        "{name:>21}: {members} members, {messages} messages: {per:.0} bytes per delivery, server CPU {cpu_us:.2} us per delivery"
    );
    Ok(json!({"mode": name, "bytes_per_delivery": per,
              "server_cpu_us_per_delivery": cpu_us, "deliveries": deliveries}))
}

/// Every mode, alternately, `rounds` times each.
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
        for mode in [Mode::Json, Mode::MsgPack, Mode::Sse] {
            runs.push(run(target, members, messages, rate, mode, pin).await?);
        }
    }
    Ok(json!({"scenario": "encoding", "members": members, "messages": messages, "runs": runs}))
}

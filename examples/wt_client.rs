//! A command-line chat over WebTransport (the `wtransport` crate, an
//! implementation independent of the server's h3 stack).
//!
//!     cargo run --example wt_client -- http://127.0.0.1:8080 alice
//!
//! It reads `/cert-hash` from the server's HTTP side, connects to the URL
//! named there with that certificate hash (as a browser does with
//! `serverCertificateHashes`), opens the bidirectional stream and speaks
//! length-prefixed frames; it also reads the streams the server opens, one
//! per channel. Lines on stdin as for `ws_client`; lines starting
//! with `~` are sent as a datagram (`~{"msgType":1}`). When the session
//! ends (a server restart, a lost network) it reconnects like `ws_client`:
//! jittered back-off, its rooms rejoined, `since` from what it printed. It
//! asks for redundant datagram copies while the network loses packets
//! (`"redundancy":"auto"`) and prints the first copy of each message, in
//! seq order per channel.

#[path = "chat/mod.rs"]
mod chat;

use anyhow::Context;
use chat::{Chat, End};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use tokio::sync::mpsc;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Endpoint};

async fn cert_hash(base: &str) -> anyhow::Result<(String, [u8; 32])> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let resp = client
        .get(format!("{base}/cert-hash").parse()?)
        .await
        .context("GET /cert-hash")?;
    let body = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&body)?;
    let hex = v["hex"].as_str().context("no hex in /cert-hash")?;
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    let url = v["url"]
        .as_str()
        .context("no url in /cert-hash")?
        .replace("localhost", "127.0.0.1");
    Ok((url, hash))
}

async fn write_frame(send: &mut wtransport::SendStream, body: &[u8]) -> anyhow::Result<()> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    send.write_all(&frame).await?;
    Ok(())
}

/// Hands every length-prefixed frame of a stream to `out` until it ends.
async fn read_frames(
    recv: &mut wtransport::RecvStream,
    out: mpsc::UnboundedSender<(String, bool)>,
) {
    let mut len = [0u8; 4];
    loop {
        if recv.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if recv.read_exact(&mut body).await.is_err() {
            break;
        }
        if out
            .send((String::from_utf8_lossy(&body).into_owned(), false))
            .is_err()
        {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().context("usage: wt_client HTTP_BASE USER")?;
    let user = args.next().context("usage: wt_client HTTP_BASE USER")?;
    let mut chat = Chat::new();
    loop {
        let end = session(&base, &user, &mut chat)
            .await
            .unwrap_or_else(|e| End::Lost(format!("{e:#}")));
        if !chat.again(end).await {
            return Ok(());
        }
    }
}

/// How long a connect (certificate hash, handshake, stream) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects, logs in and chats until the session ends.
async fn session(base: &str, user: &str, chat: &mut Chat) -> anyhow::Result<End> {
    // A handshake that gets no answer is given up and tried again.
    let open = async {
        let (url, hash) = cert_hash(base.trim_end_matches('/')).await?;
        let config = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([Sha256Digest::new(hash)])
            .build();
        let conn = Endpoint::client(config)?
            .connect(&url)
            .await
            .context("webtransport connect")?;
        let (send, recv) = conn.open_bi().await?.await?;
        anyhow::Ok((conn, send, recv))
    };
    let (conn, mut send, mut recv) = tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .context("no session within 5 s")??;
    // Redundant datagram copies while the network loses packets.
    let mut login = chat.login(user);
    login["redundancy"] = serde_json::json!("auto");
    write_frame(&mut send, login.to_string().as_bytes()).await?;
    // Frames from the session's stream, the streams the server opens (one
    // per channel) and datagrams, printed and followed in one place.
    let (out, mut frames) = mpsc::unbounded_channel::<(String, bool)>();
    let mut readers = tokio::task::JoinSet::new();
    let own_out = out.clone();
    readers.spawn(async move { read_frames(&mut recv, own_out).await });
    let (uni_conn, uni_out) = (conn.clone(), out.clone());
    readers.spawn(async move {
        while let Ok(mut stream) = uni_conn.accept_uni().await {
            let out = uni_out.clone();
            tokio::spawn(async move { read_frames(&mut stream, out).await });
        }
    });
    let dg_conn = conn.clone();
    readers.spawn(async move {
        while let Ok(d) = dg_conn.receive_datagram().await {
            if out
                .send((String::from_utf8_lossy(&d).into_owned(), true))
                .is_err()
            {
                break;
            }
        }
    });
    let end = loop {
        tokio::select! {
            Some((frame, datagram)) = frames.recv() => chat.received_copy(&frame, datagram),
            e = conn.closed() => {
                let code = match &e {
                    wtransport::error::ConnectionError::ApplicationClosed(c) => {
                        u16::try_from(c.code().into_inner()).ok()
                    }
                    _ => None,
                };
                println!("{}", serde_json::json!({"closed": code}));
                break match code {
                    Some(c) if chat::refused(c) => End::Done,
                    _ => End::Lost(e.to_string()),
                };
            }
            line = chat.lines.next_line() => match line? {
                Some(line) => {
                    if let Some(dg) = line.strip_prefix('~') {
                        conn.send_datagram(dg.trim().as_bytes())?;
                    } else if let Some(f) = chat.typed(&line) {
                        write_frame(&mut send, f.to_string().as_bytes()).await?;
                    }
                }
                None => {
                    // Stdin ended: give the answers a moment, then leave.
                    let drain = async { while let Some((f, d)) = frames.recv().await { chat.received_copy(&f, d); } };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
                    conn.close(wtransport::VarInt::from_u32(1000), b"bye");
                    break End::Done;
                }
            },
        }
    };
    readers.abort_all();
    Ok(end)
}

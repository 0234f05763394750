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
//! with `~` are sent as a datagram (`~{"msgType":1}`).

#[path = "chat/mod.rs"]
mod chat;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
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

/// Prints every length-prefixed frame of a stream until it ends.
async fn print_frames(recv: &mut wtransport::RecvStream) {
    let mut len = [0u8; 4];
    loop {
        if recv.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if recv.read_exact(&mut body).await.is_err() {
            break;
        }
        println!("{}", String::from_utf8_lossy(&body));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().context("usage: wt_client HTTP_BASE USER")?;
    let user = args.next().context("usage: wt_client HTTP_BASE USER")?;
    let (url, hash) = cert_hash(base.trim_end_matches('/')).await?;
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(hash)])
        .build();
    let conn = Endpoint::client(config)?
        .connect(&url)
        .await
        .context("webtransport connect")?;
    let (mut send, mut recv) = conn.open_bi().await?.await?;
    write_frame(&mut send, chat::login(&user).to_string().as_bytes()).await?;
    let reader = tokio::spawn(async move { print_frames(&mut recv).await });
    // The server sends each channel's messages (inbox, each room) on a
    // stream it opens for that channel.
    let uni_conn = conn.clone();
    let channels = tokio::spawn(async move {
        while let Ok(mut stream) = uni_conn.accept_uni().await {
            tokio::spawn(async move { print_frames(&mut stream).await });
        }
    });
    let dg_conn = conn.clone();
    let datagrams = tokio::spawn(async move {
        while let Ok(d) = dg_conn.receive_datagram().await {
            println!("{}", String::from_utf8_lossy(&d));
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut seq = 0;
    while let Some(line) = lines.next_line().await? {
        seq += 1;
        if let Some(dg) = line.strip_prefix('~') {
            conn.send_datagram(dg.trim().as_bytes())?;
        } else if let Some(f) = chat::frame_for(&line, seq) {
            write_frame(&mut send, f.to_string().as_bytes()).await?;
        }
    }
    // Stdin ended: give the answers a moment, then leave.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
    datagrams.abort();
    channels.abort();
    conn.close(wtransport::VarInt::from_u32(1000), b"bye");
    Ok(())
}

//! A command-line chat over WebSocket.
//!
//!     cargo run --example ws_client -- ws://127.0.0.1:8080/ws alice
//!
//! Lines on stdin: `@bob hi`, `#lobby hi`, `/join lobby`, or raw JSON frames.
//! `RTGATE_TOKEN` in the environment logs in with that JWT.
//! Frames received are printed one per line.

#[path = "chat/mod.rs"]
mod chat;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: ws_client URL USER")?;
    let user = args.next().context("usage: ws_client URL USER")?;
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .context("connect")?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(chat::login(&user).to_string()))
        .await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut seq = 0;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(t))) => println!("{t}"),
                Some(Ok(Message::Close(f))) => {
                    println!("{}", serde_json::json!({"closed": f.map(|f| u16::from(f.code))}));
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            line = lines.next_line(), if stdin_open => match line? {
                Some(line) => {
                    seq += 1;
                    if let Some(f) = chat::frame_for(&line, seq) {
                        tx.send(Message::text(f.to_string())).await?;
                    }
                }
                None => stdin_open = false,
            },
        }
    }
}

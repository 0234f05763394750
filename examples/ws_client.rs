//! A command-line chat over WebSocket.
//!
//!     cargo run --example ws_client -- ws://127.0.0.1:8080/ws alice
//!
//! Lines on stdin: `@bob hi`, `#lobby hi`, `/join lobby`, or raw JSON frames.
//! `RTGATE_TOKEN` in the environment logs in with that JWT.
//! Frames received are printed one per line. When the connection drops it
//! reconnects after a jittered back-off, rejoins its rooms and resumes with
//! `since` (notes on stderr); lines typed meanwhile are sent once back.

#[path = "chat/mod.rs"]
mod chat;

use anyhow::Context;
use chat::{Chat, End};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: ws_client URL USER")?;
    let user = args.next().context("usage: ws_client URL USER")?;
    let mut chat = Chat::new();
    let mut stdin_open = true;
    loop {
        let end = match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => session(&mut chat, ws, &user, &mut stdin_open).await?,
            Err(e) => End::Lost(format!("connect: {e}")),
        };
        if !chat.again(end).await {
            return Ok(());
        }
    }
}

/// Logs in on `ws` and chats until the connection ends.
async fn session(
    chat: &mut Chat,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    user: &str,
    stdin_open: &mut bool,
) -> anyhow::Result<End> {
    let (mut tx, mut rx) = ws.split();
    if let Err(e) = tx.send(Message::text(chat.login(user).to_string())).await {
        return Ok(End::Lost(format!("login: {e}")));
    }
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(t))) => chat.received(&t),
                Some(Ok(Message::Close(f))) => {
                    let code = f.as_ref().map(|f| u16::from(f.code));
                    println!("{}", serde_json::json!({"closed": code}));
                    return Ok(match code {
                        Some(c) if chat::refused(c) => End::Done,
                        _ if !*stdin_open => End::Done,
                        _ => End::Lost(format!("closed {code:?}")),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(End::Lost(e.to_string())),
                None => return Ok(End::Lost("connection ended".into())),
            },
            line = chat.lines.next_line(), if *stdin_open => match line? {
                Some(line) => {
                    if let Some(f) = chat.typed(&line)
                        && let Err(e) = tx.send(Message::text(f.to_string())).await
                    {
                        eprintln!("not sent: {line}");
                        return Ok(End::Lost(e.to_string()));
                    }
                }
                None => *stdin_open = false,
            },
        }
    }
}

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
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio_tungstenite::tungstenite::Message;

/// How one connection ended.
enum End {
    /// The server closed it for good, or stdin ended and the server closed.
    Done,
    /// Lost: try again.
    Lost(String),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: ws_client URL USER")?;
    let user = args.next().context("usage: ws_client URL USER")?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut positions = chat::Positions::default();
    let mut backoff = chat::Backoff::new();
    let mut seq = 0;
    let mut stdin_open = true;
    loop {
        let end = match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => {
                let mut s = Session {
                    positions: &mut positions,
                    backoff: &mut backoff,
                    lines: &mut lines,
                    seq: &mut seq,
                    stdin_open: &mut stdin_open,
                };
                s.run(ws, &user).await?
            }
            Err(e) => End::Lost(format!("connect: {e}")),
        };
        match end {
            End::Done => return Ok(()),
            End::Lost(why) => {
                let wait = backoff.next();
                eprintln!("{why}; reconnecting in {} ms", wait.as_millis());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One connection's worth of the client's state.
struct Session<'a> {
    positions: &'a mut chat::Positions,
    backoff: &'a mut chat::Backoff,
    lines: &'a mut Lines<BufReader<Stdin>>,
    seq: &'a mut u64,
    stdin_open: &'a mut bool,
}

impl Session<'_> {
    async fn run(
        &mut self,
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        user: &str,
    ) -> anyhow::Result<End> {
        let (mut tx, mut rx) = ws.split();
        let login = self.positions.login(user).to_string();
        if let Err(e) = tx.send(Message::text(login)).await {
            return Ok(End::Lost(format!("login: {e}")));
        }
        loop {
            tokio::select! {
                frame = rx.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        println!("{t}");
                        if let Ok(f) = serde_json::from_str::<serde_json::Value>(&t) {
                            if f["msgType"] == 2 {
                                self.backoff.reset();
                            }
                            self.positions.observe(&f);
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        let code = f.as_ref().map(|f| u16::from(f.code));
                        println!("{}", serde_json::json!({"closed": code}));
                        return Ok(match code {
                            Some(c) if chat::refused(c) => End::Done,
                            _ if !*self.stdin_open => End::Done,
                            _ => End::Lost(format!("closed {code:?}")),
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ok(End::Lost(e.to_string())),
                    None => return Ok(End::Lost("connection ended".into())),
                },
                line = self.lines.next_line(), if *self.stdin_open => match line? {
                    Some(line) => {
                        *self.seq += 1;
                        if let Some(f) = chat::frame_for(&line, *self.seq)
                            && let Err(e) = tx.send(Message::text(f.to_string())).await
                        {
                            eprintln!("not sent: {line}");
                            return Ok(End::Lost(e.to_string()));
                        }
                    }
                    None => *self.stdin_open = false,
                },
            }
        }
    }
}

//! The floor: a bare tokio + tokio-tungstenite broadcast server speaking the
//! fan-out subset of the protocol (login with a room, room messages,
//! `ping`). No auth, no store, no routing: each frame is serialized once and
//! its bytes shared by every recipient.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Utf8Bytes>)>>>>;

/// Serves on `addr` until killed; prints `baseline listening http=ADDR`.
pub(crate) async fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("baseline listening http={}", listener.local_addr()?);
    let rooms: Rooms = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        next_id += 1;
        let (id, rooms) = (next_id, rooms.clone());
        tokio::spawn(async move {
            // tungstenite 0.26+ reads into a 128 KiB buffer that it zero-fills
            // (128 KiB of RSS per connection); the floor reads 4 KiB at a
            // time, the chunk tungstenite used before, as a bare server would.
            let config = WebSocketConfig::default().read_buffer_size(4096);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
            else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(1024);
            let writer = tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    if sink.feed(Message::Text(first)).await.is_err() {
                        return;
                    }
                    while let Ok(more) = rx.try_recv() {
                        if sink.feed(Message::Text(more)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            let mut room: Option<String> = None;
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                if text.as_str() == "ping" {
                    let _ = tx.try_send(Utf8Bytes::from_static("pong"));
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if v["msgType"] == 2 && v["roomId"].is_null() {
                    let _ = tx.try_send(Utf8Bytes::from_static("{\"msgType\":2}"));
                    continue;
                }
                let Some(r) = v["roomId"].as_str() else {
                    continue;
                };
                match v["msgType"].as_i64() {
                    Some(2) | Some(5) => {
                        rooms
                            .lock()
                            .unwrap()
                            .entry(r.to_string())
                            .or_default()
                            .push((id, tx.clone()));
                        room = Some(r.to_string());
                        let _ = tx.try_send(Utf8Bytes::from(format!(
                            "{{\"msgType\":2,\"roomId\":\"{r}\"}}"
                        )));
                    }
                    _ => {
                        // Serialize once, share the bytes.
                        let frame =
                            Utf8Bytes::try_from(Bytes::from(text.as_str().to_owned())).unwrap();
                        let members = rooms.lock().unwrap().get(r).cloned().unwrap_or_default();
                        for (mid, m) in members {
                            if mid != id {
                                let _ = m.try_send(frame.clone());
                            }
                        }
                    }
                }
            }
            if let Some(r) = room
                && let Some(list) = rooms.lock().unwrap().get_mut(&r)
            {
                list.retain(|(mid, _)| *mid != id);
            }
            writer.abort();
        });
    }
}

//! WebSocket transport: the [`Transport`] implementation over a socket that
//! axum's `ws` (tokio-tungstenite underneath) has upgraded.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

use super::tcp::DirectWs;
use super::{Delivery, DirectSend, Incoming, Transport, TransportError};
use crate::protocol::CloseCode;

/// How long a closing session waits for the peer's close reply.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A WebSocket session. The session's own task reads and writes the socket:
/// no reader task, no inbound queue, so an idle connection holds only the
/// socket and tungstenite's buffers. Reading a stream is cancel-safe (a
/// partly read frame stays in tungstenite's buffer), which is what
/// [`Transport::recv`] asks.
pub(crate) struct WebSocketTransport {
    ws: WebSocket,
    /// The socket's direct way, on a plain TCP connection.
    direct: Option<DirectWs>,
}

impl WebSocketTransport {
    /// Wraps an upgraded socket, with its direct way if it has one.
    pub(crate) fn new(ws: WebSocket, direct: Option<DirectWs>) -> Self {
        Self { ws, direct }
    }
}

/// The next frame of the read half, as the session sees it.
async fn next_incoming(stream: &mut WebSocket) -> Option<Result<Incoming, TransportError>> {
    let msg = match stream.next().await? {
        Ok(m) => m,
        Err(e) => {
            let inner = e.into_inner();
            if let Some(tungstenite::Error::Capacity(c)) =
                inner.downcast_ref::<tungstenite::Error>()
            {
                let size = match c {
                    tungstenite::error::CapacityError::MessageTooLong { size, .. } => *size,
                    _ => usize::MAX,
                };
                return Some(Ok(Incoming::TooLarge(size)));
            }
            return Some(Err(TransportError::Io(inner.to_string())));
        }
    };
    Some(Ok(match msg {
        Message::Text(t) => Incoming::Frame(Bytes::from(t)),
        Message::Binary(b) => Incoming::Frame(b),
        Message::Ping(_) | Message::Pong(_) => Incoming::Activity,
        Message::Close(_) => return None,
    }))
}

fn io(e: axum::Error) -> TransportError {
    TransportError::Io(e.to_string())
}

impl Transport for WebSocketTransport {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        next_incoming(&mut self.ws).await
    }

    async fn send(&mut self, frame: Bytes, _how: Delivery) -> Result<(), TransportError> {
        let text = Utf8Bytes::try_from(frame)
            .map_err(|e| TransportError::Io(format!("frame is not UTF-8: {e}")))?;
        self.ws.feed(Message::Text(text)).await.map_err(io)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.ws.flush().await.map_err(io)
    }

    fn direct(&self) -> Option<Arc<dyn DirectSend>> {
        self.direct.as_ref().map(DirectWs::sender)
    }

    fn sleep(&self) {
        if let Some(d) = &self.direct {
            d.sleep();
        }
    }

    fn wake(&self) -> bool {
        self.direct.as_ref().is_some_and(DirectWs::wake)
    }

    async fn keepalive(&mut self) -> Result<(), TransportError> {
        self.ws.send(Message::Ping(Bytes::new())).await.map_err(io)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from(reason),
        };
        if self.ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        // Keep reading until the peer answers the close, so that unread
        // input does not turn our close into a TCP reset that loses the
        // close frame.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = next_incoming(&mut self.ws).await {}
        })
        .await;
    }
}

//! WebSocket transport: the [`Transport`] implementation over a socket that
//! axum's `ws` (tokio-tungstenite underneath) has upgraded.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::tcp::DirectWs;
use super::{Channel, Incoming, Lane, Liveness, Transport, TransportError};
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
    /// The socket's shared handle on a plain TCP connection: the session's
    /// frames go into its buffer (tungstenite keeps a write buffer for the
    /// connection's life; this one is given back after each flush), and it
    /// is cut when a close cannot be sent. tungstenite still writes its
    /// pongs and the close through the same buffer.
    socket: Option<DirectWs>,
    /// Frames go as binary messages (MessagePack), not text.
    binary: bool,
}

impl WebSocketTransport {
    /// Wraps an upgraded socket, with its shared handle if it has one;
    /// `binary` for a session whose frames are MessagePack.
    pub(crate) fn new(ws: WebSocket, socket: Option<DirectWs>, binary: bool) -> Self {
        Self { ws, socket, binary }
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

    /// Every lane is the one socket: frames keep the order they are written in.
    async fn write(&mut self, frame: Bytes, _lane: Lane<'_>) -> Result<(), TransportError> {
        // A MessagePack session's `pong` stays text, like its `ping`.
        let binary = self.binary && frame != crate::protocol::PONG;
        if let Some(s) = &self.socket {
            // Frames are UTF-8 JSON (or MessagePack) by construction.
            let opcode = match binary {
                true => OpCode::Data(Data::Binary),
                false => OpCode::Data(Data::Text),
            };
            return s
                .push(opcode, &frame)
                .map_err(|e| TransportError::Io(e.to_string()));
        }
        if binary {
            return self.ws.feed(Message::Binary(frame)).await.map_err(io);
        }
        let text = Utf8Bytes::try_from(frame)
            .map_err(|e| TransportError::Io(format!("frame is not UTF-8: {e}")))?;
        self.ws.feed(Message::Text(text)).await.map_err(io)
    }

    /// Every lane is the one socket: nothing is kept per channel.
    fn end_lane(&mut self, _channel: &Channel) {}

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.ws.flush().await.map_err(io)
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        match &self.socket {
            Some(s) => {
                s.push(OpCode::Control(Control::Ping), &[])
                    .map_err(|e| TransportError::Io(e.to_string()))?;
                self.ws.flush().await.map_err(io)?;
            }
            None => self
                .ws
                .send(Message::Ping(Bytes::new()))
                .await
                .map_err(io)?,
        }
        Ok(Liveness::Session)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from(reason),
        };
        // A peer that stopped reading takes no close frame: then the
        // connection is reset.
        let sent = tokio::time::timeout(CLOSE_LINGER, self.ws.send(Message::Close(Some(frame))));
        if !matches!(sent.await, Ok(Ok(()))) {
            if let Some(s) = &self.socket {
                s.abort();
            }
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

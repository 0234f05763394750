//! WebSocket transport over any upgraded byte stream (a TLS connection):
//! tokio-tungstenite drives tungstenite over the async stream. A plain TCP
//! connection takes [`super::websocket_tcp`] instead, which keeps less per
//! connection. What both make of a tungstenite message is here.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::{Channel, Incoming, Lane, Liveness, Transport, TransportError};
use crate::protocol::CloseCode;

/// How long a closing session waits for the peer to take its close, and
/// then for the peer's close reply.
pub(super) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A WebSocket session over an async stream. The session's own task reads
/// and writes the socket: no reader task, no inbound queue. Reading a
/// stream is cancel-safe (a partly read frame stays in tungstenite's
/// buffer), which is what [`Transport::recv`] asks.
pub(crate) struct WebSocketTransport<S> {
    ws: WebSocketStream<S>,
    /// Frames go as binary messages (MessagePack), not text.
    binary: bool,
    /// A read failed: nothing more is read (see `websocket_tcp`).
    failed: bool,
}

/// tungstenite's settings for a server session whose frames are limited to
/// `max_frame`. Frames up to 4x the limit are read whole so they can be
/// answered with 413; beyond that the transport cuts the connection itself.
/// tungstenite keeps its read buffer for the connection's life: 256 bytes
/// hold a short chat frame in one read (a larger one takes more reads and
/// grows the buffer while it is read), and cost an idle connection half of
/// 512's.
pub(super) fn config(max_frame: usize) -> WebSocketConfig {
    let hard_limit = max_frame.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(256)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

impl<S> WebSocketTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The server's side of an upgraded stream whose frames are limited to
    /// `max_frame`; `binary` for a session whose frames are MessagePack.
    pub(crate) async fn accept(io: S, max_frame: usize, binary: bool) -> Self {
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config(max_frame))).await;
        Self {
            ws,
            binary,
            failed: false,
        }
    }
}

/// A message read, as the session sees it: `None` when the peer closed.
pub(super) fn incoming(msg: Message) -> Option<Result<Incoming, TransportError>> {
    Some(Ok(match msg {
        Message::Text(t) => Incoming::Frame(Bytes::from(t)),
        Message::Binary(b) => Incoming::Frame(b),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Incoming::Activity,
        Message::Close(_) => return None,
    }))
}

/// A read that failed, as the session sees it: a frame over the limit is
/// reported with its size (the session answers it), a closed connection
/// ends the frames, anything else is an error.
pub(super) fn read_error(e: tungstenite::Error) -> Option<Result<Incoming, TransportError>> {
    match e {
        tungstenite::Error::Capacity(c) => {
            let size = match c {
                tungstenite::error::CapacityError::MessageTooLong { size, .. } => size,
                _ => usize::MAX,
            };
            Some(Ok(Incoming::TooLarge(size)))
        }
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => None,
        e => Some(Err(TransportError::Io(e.to_string()))),
    }
}

/// The close frame for `code`.
pub(super) fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code: code.code().into(),
        reason: reason.to_owned().into(),
    }
}

/// Whether `frame` goes as a binary message: a MessagePack session's
/// frames do, but its `pong` stays text, like its `ping`.
pub(super) fn is_binary(binary: bool, frame: &[u8]) -> bool {
    binary && frame != crate::protocol::PONG
}

fn io(e: tungstenite::Error) -> TransportError {
    TransportError::Io(e.to_string())
}

impl<S> WebSocketTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn next(&mut self) -> Option<Result<Incoming, TransportError>> {
        if self.failed {
            return None;
        }
        match self.ws.next().await? {
            Ok(msg) => incoming(msg),
            Err(e) => {
                self.failed = true;
                read_error(e)
            }
        }
    }
}

impl<S> Transport for WebSocketTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        self.next().await
    }

    /// Every lane is the one socket: frames keep the order they are written in.
    async fn write(&mut self, frame: Bytes, _lane: Lane<'_>) -> Result<(), TransportError> {
        if is_binary(self.binary, &frame) {
            return self.ws.feed(Message::Binary(frame)).await.map_err(io);
        }
        // Frames are UTF-8 JSON by construction.
        let text = tungstenite::Utf8Bytes::try_from(frame)
            .map_err(|e| TransportError::Io(format!("frame is not UTF-8: {e}")))?;
        self.ws.feed(Message::Text(text)).await.map_err(io)
    }

    /// Every lane is the one socket: nothing is kept per channel.
    fn end_lane(&mut self, _channel: &Channel) {}

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.ws.flush().await.map_err(io)
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        self.ws
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(io)?;
        Ok(Liveness::Session)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = close_frame(code, reason);
        // A peer that stopped reading takes no close frame: the connection
        // is dropped.
        let sent = tokio::time::timeout(CLOSE_LINGER, self.ws.send(Message::Close(Some(frame))));
        if !matches!(sent.await, Ok(Ok(()))) {
            return;
        }
        // Keep reading until the peer answers the close, so that unread
        // input does not turn our close into a TCP reset that loses the
        // close frame.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = self.next().await {}
        })
        .await;
    }
}

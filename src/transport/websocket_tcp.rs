//! WebSocket over a plain TCP connection: tungstenite reads the socket as a
//! non-blocking one, and the session waits for the socket itself when a
//! read would block; the session's frames are appended whole to the
//! socket's shared buffer, which the fan-out's frames take too. No async
//! adapter stands between (tokio-tungstenite's two waker proxies, hyper's
//! boxed stream): an idle connection keeps tungstenite's state and read
//! buffer and the shared socket.

use std::future::poll_fn;

use bytes::Bytes;
use tungstenite::WebSocket;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::tcp::SharedTcp;
use super::websocket::{CLOSE_LINGER, close_frame, config, incoming, is_binary, read_error};
use super::{Channel, Incoming, Lane, Liveness, Transport, TransportError};
use crate::protocol::CloseCode;

/// A WebSocket session on a plain TCP connection.
pub(crate) struct TcpWebSocket {
    ws: WebSocket<SharedTcp>,
    /// Frames go as binary messages (MessagePack), not text.
    binary: bool,
    /// A read failed: tungstenite's reading state is not to be trusted (a
    /// frame over the limit leaves its header behind), nothing more is read.
    failed: bool,
}

impl TcpWebSocket {
    /// The upgraded connection `tcp`, with the bytes the HTTP layer read
    /// past the request (a client may send its first frames at once), its
    /// frames limited to `max_frame`; `binary` for a session whose frames
    /// are MessagePack.
    pub(crate) fn new(tcp: SharedTcp, read: Bytes, max_frame: usize, binary: bool) -> Self {
        let config = config(max_frame);
        let ws = match read.is_empty() {
            true => WebSocket::from_raw_socket(tcp, Role::Server, Some(config)),
            false => WebSocket::from_partially_read(tcp, read.into(), Role::Server, Some(config)),
        };
        Self {
            ws,
            binary,
            failed: false,
        }
    }

    fn socket(&self) -> &SharedTcp {
        self.ws.get_ref()
    }

    /// The next message: what tungstenite holds, else what the socket has,
    /// waiting for it. Cancel-safe: a partly read frame stays in
    /// tungstenite's buffer, and the wait holds nothing.
    ///
    /// Each message costs a unit of tokio's cooperative budget: reads that
    /// do not block (`try_read`) take none of their own, and a peer whose
    /// frames never stop coming would otherwise keep its session's task on
    /// the worker for good, every other session of that worker starved.
    async fn next(&mut self) -> Option<Result<Incoming, TransportError>> {
        tokio::task::coop::consume_budget().await;
        while !self.failed {
            match self.ws.read() {
                Ok(msg) => return incoming(msg),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.failed = true;
                    return read_error(e);
                }
            }
            if let Err(e) = poll_fn(|cx| self.socket().poll_readable(cx)).await {
                return Some(Err(TransportError::Io(e.to_string())));
            }
        }
        None
    }

    async fn flush_out(&self) -> Result<(), TransportError> {
        poll_fn(|cx| self.socket().poll_flush_out(cx))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }
}

impl Transport for TcpWebSocket {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        self.next().await
    }

    /// Every lane is the one socket: frames keep the order they are written
    /// in. The frame goes into the socket's buffer for the next flush.
    async fn write(&mut self, frame: Bytes, _lane: Lane<'_>) -> Result<(), TransportError> {
        // Frames are UTF-8 JSON (or MessagePack) by construction.
        let opcode = match is_binary(self.binary, &frame) {
            true => OpCode::Data(Data::Binary),
            false => OpCode::Data(Data::Text),
        };
        self.socket()
            .push(opcode, &frame)
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    /// Every lane is the one socket: nothing is kept per channel.
    fn end_lane(&mut self, _channel: &Channel) {}

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.flush_out().await
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        self.socket()
            .push(OpCode::Control(Control::Ping), &[])
            .map_err(|e| TransportError::Io(e.to_string()))?;
        self.flush_out().await?;
        Ok(Liveness::Session)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        // Queued behind everything accepted before it (and behind the
        // reply tungstenite owes a peer that closed first, when the close
        // is an answer); an error means the connection has ended already.
        let _ = self.ws.close(Some(close_frame(code, reason)));
        // A peer that stopped reading takes no close frame: then the
        // connection is reset.
        let sent = tokio::time::timeout(CLOSE_LINGER, self.flush_out()).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.socket().abort();
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

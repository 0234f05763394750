//! The session trait that every transport implements (send and receive
//! frames, keep the peer alive, close with a code) and its two
//! implementations. Accepting connections is not done here: the edges above
//! (`api` for WebSocket, `quic` for WebTransport) admit a connection and hand
//! the wrapped session to the session driver, which only sees this trait.

pub(crate) mod tcp;
pub(crate) mod websocket;
pub(crate) mod webtransport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub(crate) use crate::model::{Channel, Delivery, DirectSend, Sent, TransportKind};
use crate::protocol::CloseCode;

/// What the edge knows about the peer and the request that opened a
/// session; the session driver takes it (the transport does not keep it).
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    /// The transport.
    pub kind: TransportKind,
    /// The client's address (after trusted-proxy resolution).
    pub addr: SocketAddr,
    /// `{userId}` from the legacy path `/websocket/{userId}`.
    pub path_user: Option<String>,
    /// `userId` from the query string.
    pub query_user: Option<String>,
    /// `token` from the query string.
    pub query_token: Option<String>,
    /// The `Cookie` header, for a connect hook (none without one).
    pub cookie: Option<String>,
    /// The `Authorization` header, for a connect hook (none without one).
    pub authorization: Option<String>,
}

/// One frame received from the peer.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A frame on the reliable channel: JSON or literal `ping`.
    Frame(Bytes),
    /// A datagram (unreliable, WebTransport only): one JSON object.
    Datagram(Bytes),
    /// Traffic that carries no frame (a WebSocket Pong): proves liveness.
    Activity,
    /// A frame over the size limit; its content was not kept.
    TooLarge(usize),
}

/// A transport failure. The session ends; nothing acknowledged is lost,
/// because acknowledgement follows the durable write, not the send.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The peer closed the connection or the connection broke.
    #[error("connection closed: {0}")]
    Closed(String),
    /// An I/O or protocol error below the frame layer.
    #[error("transport error: {0}")]
    Io(String),
}

/// A connected client, whatever carries it.
///
/// The session driver owns it in one task and selects over [`recv`] and its
/// outbound queue, so `recv` must be cancel-safe: dropping its future loses no
/// frame. `send` may buffer; `flush` pushes buffered frames out.
///
/// [`recv`]: Transport::recv
pub(crate) trait Transport: Send + 'static {
    /// The next frame, `None` when the peer is gone. Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, TransportError>>> + Send;

    /// Queues one frame (UTF-8 JSON, or `pong`) for sending.
    fn send(
        &mut self,
        frame: Bytes,
        how: Delivery,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Queues one stored frame of `channel` (a live message or its replay).
    /// A transport with a stream per channel keeps each channel's frames in
    /// order on a stream of their own, so a loss on one channel does not
    /// delay another; others send it as a reliable frame.
    fn send_in(
        &mut self,
        frame: Bytes,
        channel: &Channel,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let _ = channel;
        self.send(frame, Delivery::Reliable)
    }

    /// A way to send volatile frames without the session's task, if the
    /// transport has one (WebTransport datagrams); the hub then hands them
    /// over as it fans out instead of queueing them.
    fn direct(&self) -> Option<Arc<dyn DirectSend>> {
        None
    }

    /// The session is about to sleep with everything it wrote flushed:
    /// its [`direct`](Transport::direct) way may write until it wakes (and
    /// wakes it through its queue when it leaves bytes for it to flush).
    fn sleep(&self) {}

    /// The session woke: from now on only it writes. True when a direct
    /// write left bytes that its next flush must send.
    fn wake(&self) -> bool {
        false
    }

    /// The session left `channel`: a stream kept for it can end.
    fn end_channel(&mut self, _channel: &Channel) {}

    /// The client reads only its one stream: every frame goes there.
    fn single_stream(&mut self) {}

    /// Sends everything queued by [`Transport::send`].
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// True when the transport notices dead peers itself (QUIC idle
    /// timeout), so the session does not close quiet clients for silence.
    fn detects_dead_peers(&self) -> bool {
        false
    }

    /// A transport-level liveness probe (WebSocket Ping). Transports with
    /// their own keep-alive (QUIC) do nothing.
    fn keepalive(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Closes the session with a code and reason, best effort.
    fn close(&mut self, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send;
}

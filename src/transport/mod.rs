//! The session trait that every transport implements (receive frames, write
//! them on a lane and end a lane, flush, heartbeat, close with a code) and its
//! implementations (WebSocket on a plain TCP socket or over any other stream,
//! WebTransport, SSE), with the fan-out's one side door ([`DirectSend`]) that
//! each may offer beside it. Accepting connections is not done here: the
//! edges above (`api` for WebSocket, `quic` for WebTransport) admit a
//! connection and hand the wrapped session to the session driver, which
//! only sees this trait.

mod cork;
pub(crate) mod sse;
pub(crate) mod tcp;
pub(crate) mod websocket;
pub(crate) mod websocket_tcp;
pub(crate) mod webtransport;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;

pub(crate) use crate::model::{Channel, DirectSend, Sent, TransportKind};
use crate::protocol::{CloseCode, Redundancy};

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
    /// The browser's `Origin`, for a connect hook (none without one).
    pub origin: Option<String>,
    /// The `Authorization` header, for a connect hook (none without one).
    pub authorization: Option<String>,
    /// The WebTransport draft the client speaks (`None` on WebSocket),
    /// reported in the login reply.
    pub wt_draft: Option<&'static str>,
    /// The place of a client behind a trusted proxy under the per-address
    /// cap, held for the session's life.
    pub address_permit: Option<std::sync::Arc<crate::caps::ConnPermit>>,
    /// How the session's frames are encoded (`encoding=msgpack`, or the
    /// WebSocket subprotocol `rtgate.msgpack`).
    pub encoding: crate::protocol::Encoding,
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

/// Where a frame goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lane<'a> {
    /// The session's reliable, ordered stream: replies, acks, notices.
    Reliable,
    /// The reliable stream of one channel: its stored frames, in `seq`
    /// order. A transport with a stream per channel keeps each channel on
    /// a stream of its own, so a loss on one does not delay another; others
    /// use the session's stream. With [`Redundancy`] on, a transport with
    /// datagrams also sends each frame that fits as one (the client keeps
    /// the first copy by `msgId`); the others ignore it.
    Channel(&'a Channel, Redundancy),
    /// Unreliable: a datagram where the transport has them and it fits,
    /// else the session's stream.
    Unreliable,
}

/// Who tells a live peer from a dead one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The session: a peer silent for three heartbeats is closed 4408 (the
    /// heartbeat made it answer, as a WebSocket Ping does).
    Session,
    /// The transport itself (QUIC keep-alive and idle timeout): the session
    /// does not close a quiet peer.
    Transport,
}

/// A connected client, whatever carries it.
///
/// The session driver owns it in one task and selects over [`recv`] and its
/// outbound queue, so `recv` must be cancel-safe: dropping its future loses no
/// frame. `write` may buffer; `flush` pushes written frames out. A write or
/// flush that waits on the peer may be dropped (the session gives up on a
/// peer that stopped reading) and then `close` is the only call left.
///
/// [`recv`]: Transport::recv
pub(crate) trait Transport: Send + 'static {
    /// The next frame, `None` when the peer is gone. Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, TransportError>>> + Send;

    /// Writes one frame (UTF-8 JSON, or `pong`) on `lane`.
    fn write(
        &mut self,
        frame: Bytes,
        lane: Lane<'_>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The session is done with `channel` (it left the room): what the
    /// transport keeps for the channel's lane (a stream) can go.
    fn end_lane(&mut self, channel: &Channel);

    /// Sends everything written so far.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The session's heartbeat: the transport's own liveness probe if it
    /// needs one (a WebSocket Ping), and who judges the peer dead.
    fn heartbeat(&mut self) -> impl Future<Output = Result<Liveness, TransportError>> + Send;

    /// Closes the session with a code and reason: gracefully when the peer
    /// takes it within a moment, else the connection is cut.
    fn close(&mut self, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send;
}

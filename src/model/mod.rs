//! The shared domain types every layer above the wire protocol uses: session
//! ids, channels, frames on their way to sessions, the clock, and the one
//! fan-out plan. Nothing here does I/O; everybody may import it.

pub mod clock;
pub mod control;
pub mod event;
pub mod fanout;
pub mod frame;
pub mod presence;
pub mod trace;
pub mod watch;

use std::fmt;

use crate::protocol::Id;

pub use clock::now_ms;
pub use control::Control;
pub use fanout::plan;
pub use frame::{Delivery, DirectSend, Envelope, OutFrame, Position, Sent, Target};
pub use trace::TraceParent;

/// A session's id, unique across the cluster (a UUIDv7).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SessionId(pub u128);

impl SessionId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().as_u128())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0), f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A message's channel: a user's inbox or a room. Stored messages get their
/// `seq` in it; volatile ones use it only to name their recipients.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Channel {
    /// The inbox of a user: direct messages to them.
    Inbox(Id),
    /// A room's history.
    Room(Id),
}

impl fmt::Display for Channel {
    /// `inbox` or `room:<id>`, the form used in the login reply's `unrecovered`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inbox(_) => f.write_str("inbox"),
            Self::Room(r) => write!(f, "room:{r}"),
        }
    }
}

/// Which transport a session came on (for logs and metrics only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// WebSocket over TCP.
    WebSocket,
    /// WebTransport over HTTP/3 and QUIC.
    WebTransport,
    /// Server-Sent Events down, HTTP POST up (the fallback).
    Sse,
}

impl TransportKind {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::WebTransport => "webtransport",
            Self::Sse => "sse",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

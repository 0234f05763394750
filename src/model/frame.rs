//! Frames on their way to sessions: what one session's queue holds, and the
//! envelope that carries a frame to every session of a target, on this node
//! or another.

use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

use super::{Channel, SessionId};
use crate::protocol::{Encoding, Id};

/// How a frame should travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// On the reliable, ordered channel.
    Reliable,
    /// As a datagram when the transport has one and it fits; else reliable.
    Volatile,
    /// Not sent: an instruction for the session itself ([`super::Control`]),
    /// queued behind the frames before it.
    Control,
    /// A presence event of a room (msgType 11), sent reliably to the
    /// sessions that asked for its room's events and dropped by the others.
    Presence,
}

/// The fan-out's side door into a session: a volatile frame handed to the
/// session's peer from the thread that fans it out, without waking the
/// session's task. A WebTransport session gives it to QUIC as a datagram,
/// a WebSocket's socket appends it to its ordered buffer; either writes it
/// with the other frames of the same scheduler turns (one packet, one
/// `write`). The only other way in
/// is the session's queue.
pub trait DirectSend: Send + Sync + std::fmt::Debug {
    /// Takes `payload` for the peer, or says it must go through the
    /// session's queue instead (too large for a datagram, a peer that takes
    /// none, a socket whose peer is behind, a connection already lost).
    fn send_volatile(&self, payload: &Bytes) -> Sent;

    /// True when a frame sent this way must not overtake the frames in the
    /// session's queue (a byte stream); datagrams are unordered anyway.
    fn ordered(&self) -> bool {
        false
    }
}

/// What became of a frame handed to [`DirectSend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Taken: it reaches the peer without the session's task.
    Yes,
    /// Not taken: it goes through the session's queue.
    No,
}

/// Where a frame sits in its channel, so a session can drop live frames that
/// its replay already sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The channel.
    pub channel: Channel,
    /// The frame's seq in it.
    pub seq: u64,
}

/// One frame queued for one session: a pointer to a frame that every
/// recipient of a broadcast shares (serialized once, cloned by one reference
/// count), so a session's queue holds a word per frame.
#[derive(Debug, Clone)]
pub struct OutFrame(Arc<Frame>);

/// What an [`OutFrame`] points to.
#[derive(Debug)]
pub struct Frame {
    /// The serialized frame.
    pub payload: Bytes,
    /// Reliable or volatile.
    pub how: Delivery,
    /// Channel position, for stored messages.
    pub position: Option<Position>,
    /// A volatile "latest value wins" update's key (its sender, destination
    /// and `latest`, hashed): a newer one replaces it in a session's queue.
    pub latest: Option<u64>,
    /// The payload as MessagePack, made by the first MessagePack session
    /// that writes the frame and shared by the others: once per message
    /// per node, not once per recipient.
    msgpack: std::sync::OnceLock<Bytes>,
}

impl OutFrame {
    /// A frame to queue.
    pub fn new(payload: Bytes, how: Delivery, position: Option<Position>) -> Self {
        let latest = match how {
            Delivery::Volatile => latest_key(&payload),
            _ => None,
        };
        Self(Arc::new(Frame {
            payload,
            how,
            position,
            latest,
            msgpack: std::sync::OnceLock::new(),
        }))
    }

    /// The payload in `encoding`.
    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        match encoding {
            Encoding::Json => self.payload.clone(),
            Encoding::MsgPack => self
                .msgpack
                .get_or_init(|| encode(&self.payload, encoding))
                .clone(),
        }
    }
}

/// A JSON frame in `encoding`. The server writes only valid JSON, so
/// MessagePack always has one; if ever not, the JSON goes as it is (the
/// client answers with an error, not silence).
pub fn encode(json: &Bytes, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Json => json.clone(),
        Encoding::MsgPack => crate::protocol::encoding::json_to_msgpack(json)
            .map(Bytes::from)
            .unwrap_or_else(|_| json.clone()),
    }
}

/// The coalescing key of a volatile frame that carries `latest`: its
/// sender, destination and key, hashed (`None` for any other frame).
pub fn latest_key(payload: &[u8]) -> Option<u64> {
    // Most volatile frames have no key: no parse for them.
    memchr_latest(payload)?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Keyed<'a> {
        #[serde(borrow)]
        latest: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        send_user_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        received_user_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        room_id: Option<std::borrow::Cow<'a, str>>,
    }
    let k: Keyed<'_> = serde_json::from_slice(payload).ok()?;
    let latest = k.latest?;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (latest, k.send_user_id, k.received_user_id, k.room_id).hash(&mut h);
    Some(h.finish())
}

fn memchr_latest(payload: &[u8]) -> Option<()> {
    payload.windows(8).any(|w| w == b"\"latest\"").then_some(())
}

impl Deref for OutFrame {
    type Target = Frame;

    fn deref(&self) -> &Frame {
        &self.0
    }
}

/// Who a routed frame is for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// Every session of a user.
    User(Id),
    /// Every member session of a room.
    Room(Id),
}

/// A frame on its way to the sessions of a target, on this node or another.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Who it is for.
    pub target: Target,
    /// A session that must not get it (the sender's own).
    pub exclude: Option<SessionId>,
    /// The frame.
    pub frame: OutFrame,
    /// The trace of the message it carries, when traces are exported.
    pub trace: Option<super::TraceParent>,
}

#[cfg(test)]
mod latest_tests {
    use super::*;

    #[test]
    fn only_volatile_frames_with_latest_have_a_key_and_it_names_sender_destination_and_key() {
        let frame =
            |s: &'static str, how| OutFrame::new(Bytes::from_static(s.as_bytes()), how, None);
        let a1 = frame(
            r#"{"msgType":3,"sendUserId":"a","roomId":"r","latest":"pos","msgBody":1}"#,
            Delivery::Volatile,
        );
        let a2 = frame(
            r#"{"msgType":3,"sendUserId":"a","roomId":"r","latest":"pos","msgBody":2}"#,
            Delivery::Volatile,
        );
        let b = frame(
            r#"{"msgType":3,"sendUserId":"b","roomId":"r","latest":"pos","msgBody":2}"#,
            Delivery::Volatile,
        );
        let other_key = frame(
            r#"{"msgType":3,"sendUserId":"a","roomId":"r","latest":"typing"}"#,
            Delivery::Volatile,
        );
        let plain = frame(
            r#"{"msgType":3,"sendUserId":"a","roomId":"r","msgBody":"latest"}"#,
            Delivery::Volatile,
        );
        let stored = frame(
            r#"{"msgType":3,"sendUserId":"a","roomId":"r","latest":"pos"}"#,
            Delivery::Reliable,
        );
        assert!(a1.latest.is_some());
        assert_eq!(a1.latest, a2.latest);
        assert_ne!(a1.latest, b.latest);
        assert_ne!(a1.latest, other_key.latest);
        assert_eq!((plain.latest, stored.latest), (None, None));
    }
}

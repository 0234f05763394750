//! The message object on the wire (PROTOCOL.md §3): the loose form a client
//! sends, the business message as it is delivered, and the server's replies.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::error::ProtoError;
use super::id::Id;

/// msgType 1: heartbeat.
pub const HEARTBEAT: i64 = 1;
/// msgType 2: login.
pub const LOGIN: i64 = 2;
/// msgType 3: business message (as are all values >= 100).
pub const BUSINESS: i64 = 3;
/// msgType 4: ack (server to client) or inbox cursor (client to server).
pub const ACK: i64 = 4;
/// msgType 5: join a room.
pub const JOIN: i64 = 5;
/// msgType 6: leave a room.
pub const LEAVE: i64 = 6;
/// msgType 7: history.
pub const HISTORY: i64 = 7;
/// msgType 8: presence.
pub const PRESENCE: i64 = 8;
/// msgType 9: error.
pub const ERROR: i64 = 9;
/// msgType 10: credentials expire soon (server), or a refresh (client).
pub const REFRESH: i64 = 10;
/// msgType 11: a presence event.
pub const PRESENCE_EVENT: i64 = 11;
/// msgType 12: a receipt.
pub const RECEIPT: i64 = 12;
/// msgType 13: read state and unread counts.
pub const READ_STATE: i64 = 13;
/// msgType 14: an amendment (edit, delete, reaction).
pub const AMEND: i64 = 14;
/// msgType 15: typing.
pub const TYPING: i64 = 15;
/// msgType 16: a push registration.
pub const PUSH: i64 = 16;
/// Every msgType at or above this one is a business message.
pub const FIRST_CUSTOM: i64 = 100;

/// A frame as a client sends it: every field optional, types checked,
/// unknown fields ignored (legacy clients send more than we read).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wire {
    /// The message type; required.
    pub msg_type: Option<i64>,
    /// Claimed identity; only read at login.
    #[serde(default, deserialize_with = "opt_id")]
    pub send_user_id: Option<Id>,
    /// Direct-message recipient.
    #[serde(default, deserialize_with = "opt_id")]
    pub received_user_id: Option<Id>,
    /// Room.
    #[serde(default, deserialize_with = "opt_id")]
    pub room_id: Option<Id>,
    /// Rooms to join at login.
    pub rooms: Option<Vec<Id>>,
    /// Opaque business type, preserved end to end.
    pub biz_type: Option<i64>,
    /// Opaque business module, preserved end to end.
    pub biz_opt_module: Option<i64>,
    /// Opaque body, preserved byte for byte.
    pub msg_body: Option<Box<RawValue>>,
    /// Idempotency key for sends.
    pub client_msg_id: Option<String>,
    /// Not stored, not acked, not replayed.
    pub volatile: Option<bool>,
    /// A JWT, at login.
    pub token: Option<String>,
    /// Replay positions (login) or the history start (msgType 7).
    pub since: Option<Since>,
    /// History page size.
    pub limit: Option<u32>,
    /// Inbox cursor (msgType 4).
    pub seq: Option<u64>,
    /// Presence query by user.
    pub user_ids: Option<Vec<Id>>,
    /// At login over WebTransport: `"single"` when the client reads only
    /// its bidirectional stream.
    pub streams: Option<String>,
    /// Login: `"datagram"`, `"auto"` or `"off"`: redundant datagram copies
    /// of stored-channel frames (WebTransport).
    pub redundancy: Option<String>,
    /// A volatile update's key ("typing", "cursor"): receivers keep only
    /// the newest per sender, destination and key.
    pub latest: Option<String>,
    /// At a join (or login): send msgType 11 presence events of the rooms.
    pub presence_events: Option<bool>,
    // The fields of msgTypes 12 to 15 (and history's `view`), loosely
    // typed: a legacy client's frame of another msgType may carry fields of
    // these names with any type; `chat.rs` checks them.
    /// Receipt kind (msgType 12).
    pub kind: Option<serde_json::Value>,
    /// Receipt: the messages (msgType 12).
    pub msg_ids: Option<serde_json::Value>,
    /// Amendment: the target (msgType 14).
    pub msg_id: Option<serde_json::Value>,
    /// Amendment: what it does (msgType 14).
    pub op: Option<serde_json::Value>,
    /// Amendment: the reaction (msgType 14).
    pub reaction: Option<serde_json::Value>,
    /// Typing or not (msgType 15).
    pub typing: Option<serde_json::Value>,
    /// History: `"latest"` folds amendments into their messages.
    pub view: Option<serde_json::Value>,
    /// Read state: where the page of members starts (msgType 13).
    pub after: Option<serde_json::Value>,
    /// Login: `false` when the client does not want unread counts.
    pub unread: Option<serde_json::Value>,
    /// A browser's `PushSubscription` (msgType 16).
    pub push: Option<serde_json::Value>,
    /// An APNs device token (msgType 16).
    pub apns: Option<serde_json::Value>,
    /// An FCM registration token (msgType 16).
    pub fcm: Option<serde_json::Value>,
    /// msgType 16: remove the registration instead.
    pub remove: Option<serde_json::Value>,
}

/// `since`: a plain position for history, an object of positions at login.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Since {
    /// History: messages after this seq.
    Seq(u64),
    /// Login: replay positions per channel.
    Positions(SincePositions),
}

/// Login replay positions: `{"inbox":17,"rooms":{"123456":40}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SincePositions {
    /// Replay the inbox after this seq.
    pub inbox: Option<u64>,
    /// Replay each room after its seq.
    #[serde(default)]
    pub rooms: BTreeMap<Id, u64>,
}

/// Optional ids: `null` and `""` mean absent, as legacy clients send them.
fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Id>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Id::parse(&s).map(Some).map_err(Error::custom),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Id::parse(&n.to_string()).map(Some).map_err(Error::custom)
        }
        Some(_) => Err(Error::custom("expected a string or integer id")),
    }
}

/// Whether a msgType is a business message routed by the hub.
pub fn is_business(msg_type: i64) -> bool {
    msg_type == BUSINESS || msg_type >= FIRST_CUSTOM
}

/// A business message as recipients see it. The server stamps `sendUserId`,
/// `msgId` and `ts`; the store adds `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// The business msgType, preserved.
    pub msg_type: i64,
    /// The authenticated sender.
    pub send_user_id: Id,
    /// Direct-message recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_user_id: Option<Id>,
    /// Room (destination, or context of a direct message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<Id>,
    /// Opaque, preserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_type: Option<i64>,
    /// Opaque, preserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_opt_module: Option<i64>,
    /// Opaque, preserved byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_body: Option<Box<RawValue>>,
    /// Unique id assigned by the server.
    pub msg_id: String,
    /// Position in the channel; absent on volatile messages and copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Server acceptance time, ms since the epoch.
    pub ts: u64,
    /// Set on volatile messages only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
    /// A volatile update's "latest value wins" key: a receiver drops one
    /// whose `msgId` (time-ordered) is not above the last it kept for this
    /// sender, destination and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    /// The fields of receipts, amendments and typing (msgTypes 12, 14, 15).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Box<ChatFields>>,
}

/// What receipts (12), amendments (14) and typing notices (15) carry
/// beside a message's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatFields {
    /// Receipt: `"delivered"` or `"read"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Receipt: who delivered or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Id>,
    /// Receipt: the messages it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_ids: Option<Vec<String>>,
    /// Amendment: the msgId of the message it amends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<String>,
    /// Amendment: `"edit"`, `"delete"`, `"react"` or `"unreact"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Amendment: the reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    /// Typing: started (true) or stopped (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing: Option<bool>,
}

impl Delivered {
    /// Serializes the message once, to be shared among recipients.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a Delivered always serializes"))
    }
}

/// A server reply that is not a business message. Unset fields are omitted.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// The reply's msgType.
    pub msg_type: i64,
    /// Login: the identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_user_id: Option<Id>,
    /// Login: this session's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Login: the node that holds the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Login: heartbeat interval in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_sec: Option<u64>,
    /// Login: latest seq in the user's inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_seq: Option<u64>,
    /// Login over WebTransport: the draft the session speaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wt_draft: Option<&'static str>,
    /// Login: channels whose history no longer reaches back to `since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecovered: Option<Vec<String>>,
    /// Join, leave, presence, history: the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<Id>,
    /// Ack and error: the client's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// Ack: the stored message's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// Ack, join, history: a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Presence: the online users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<Id>>,
    /// History: the messages, in seq order, as they were delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Box<RawValue>>>,
    /// Error: the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Error: the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Server time, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// Refresh: when the session's credentials expire, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Read state: members' read positions in a room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<BTreeMap<Id, u64>>,
    /// Login and read state: unread counts (a number for one room, or
    /// `{"inbox":N,"rooms":{...}}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<serde_json::Value>,
    /// Read state: where the next page of members starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Reply {
    /// Serializes the reply.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a Reply always serializes"))
    }

    /// `{"msgType":1,"ts":...}`.
    pub fn heartbeat(ts: u64) -> Self {
        Self {
            msg_type: HEARTBEAT,
            ts: Some(ts),
            ..Self::default()
        }
    }

    /// `{"msgType":9,"code","reason","clientMsgId"?}`.
    pub fn error(err: &ProtoError, client_msg_id: Option<String>) -> Self {
        Self {
            msg_type: ERROR,
            code: Some(err.code()),
            reason: Some(err.to_string()),
            client_msg_id,
            ..Self::default()
        }
    }

    /// `{"msgType":4,"clientMsgId","msgId","seq","ts"}`.
    pub fn ack(client_msg_id: Option<String>, msg_id: String, seq: u64, ts: u64) -> Self {
        Self {
            msg_type: ACK,
            client_msg_id,
            msg_id: Some(msg_id),
            seq: Some(seq),
            ts: Some(ts),
            ..Self::default()
        }
    }

    /// Join (msgType 5) answered with the room's current seq.
    pub fn joined(room: Id, seq: u64) -> Self {
        Self {
            msg_type: JOIN,
            room_id: Some(room),
            seq: Some(seq),
            ..Self::default()
        }
    }

    /// Leave (msgType 6) answered in kind.
    pub fn left(room: Id) -> Self {
        Self {
            msg_type: LEAVE,
            room_id: Some(room),
            ..Self::default()
        }
    }

    /// `{"msgType":10,"exp":...}`: the credentials expire then (announced
    /// ahead of time, and the answer to a refresh).
    pub fn expires(exp: u64) -> Self {
        Self {
            msg_type: REFRESH,
            exp: Some(exp),
            ..Self::default()
        }
    }

    /// Presence (msgType 8).
    pub fn presence(room: Option<Id>, online: Vec<Id>) -> Self {
        Self {
            msg_type: PRESENCE,
            room_id: room,
            user_ids: Some(online),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_omit_unset_fields() {
        let b = Reply::heartbeat(5).to_bytes();
        assert_eq!(&b[..], br#"{"msgType":1,"ts":5}"#);
        let e = Reply::error(&ProtoError::bad("nope"), Some("c1".into())).to_bytes();
        assert_eq!(
            &e[..],
            br#"{"msgType":9,"clientMsgId":"c1","code":400,"reason":"nope"}"#
        );
    }

    #[test]
    fn legacy_empty_ids_are_absent() {
        let w: Wire =
            serde_json::from_str(r#"{"msgType":3,"roomId":"","receivedUserId":null}"#).unwrap();
        assert!(w.room_id.is_none() && w.received_user_id.is_none());
        let w: Wire = serde_json::from_str(r#"{"msgType":3,"roomId":42}"#).unwrap();
        assert_eq!(w.room_id.unwrap().as_str(), "42");
        assert!(serde_json::from_str::<Wire>(r#"{"msgType":3,"roomId":[1]}"#).is_err());
        assert!(serde_json::from_str::<Wire>(r#"{"msgType":3,"roomId":"a b"}"#).is_err());
    }

    #[test]
    fn body_is_preserved_byte_for_byte() {
        let w: Wire =
            serde_json::from_str(r#"{"msgType":100,"msgBody":{"b":1,  "a":[2.50]}}"#).unwrap();
        assert_eq!(w.msg_body.unwrap().get(), r#"{"b":1,  "a":[2.50]}"#);
    }
}

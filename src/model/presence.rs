//! Presence events (msgType 11): a user's first session joined a room, or
//! its last one left, anywhere in the cluster. They travel to the room like
//! messages; only sessions that joined with `"presenceEvents":true` send them
//! on.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Channel, Delivery, Envelope, OutFrame, Position, Target};
use crate::protocol::Id;
use crate::protocol::message::PRESENCE_EVENT;

/// One live session as presence answers describe it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Its user.
    pub user_id: Id,
    /// The session's id.
    pub session_id: String,
    /// The node that holds it.
    pub node_id: String,
    /// `websocket` or `webtransport`.
    pub transport: String,
    /// The connect hook's opaque info about the user, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub info: Option<Box<RawValue>>,
}

/// What presence tells about a session besides its user, kept with it.
#[derive(Debug, Default)]
pub struct SessionMeta {
    /// The transport it came on.
    pub transport: Option<super::TransportKind>,
    /// The connect hook's info.
    pub info: Option<Box<RawValue>>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The user's first session joined.
    Join,
    /// The user's last session left.
    Leave,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    msg_type: i64,
    room_id: &'a Id,
    user_id: &'a Id,
    event: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
}

/// The envelope of `user`'s `change` in `room`, with the user's opaque
/// `info` (from the connect hook). Its position names the room (seq 0, which
/// no stored message has).
pub fn event(room: &Id, user: &Id, change: Change, info: Option<&RawValue>) -> Envelope {
    let payload = serde_json::to_vec(&Event {
        msg_type: PRESENCE_EVENT,
        room_id: room,
        user_id: user,
        event: change,
        info,
    })
    .expect("an event serializes");
    let position = Position {
        channel: Channel::Room(room.clone()),
        seq: 0,
    };
    Envelope {
        target: Target::Room(room.clone()),
        exclude: None,
        frame: OutFrame::new(Bytes::from(payload), Delivery::Presence, Some(position)),
        trace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_room_user_change_and_info() {
        let info: Box<RawValue> = serde_json::from_str(r#"{"name":"Ann"}"#).unwrap();
        let (room, user) = (Id::parse("lobby").unwrap(), Id::parse("ann").unwrap());
        let env = event(&room, &user, Change::Join, Some(&info));
        assert_eq!(
            std::str::from_utf8(&env.frame.payload).unwrap(),
            r#"{"msgType":11,"roomId":"lobby","userId":"ann","event":"join","info":{"name":"Ann"}}"#
        );
        assert_eq!(env.frame.how, Delivery::Presence);
        assert_eq!(env.target, Target::Room(room));
    }
}

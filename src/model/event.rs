//! Events for the backend's event webhook (protocol §11): what happened,
//! as the JSON the backend receives, each with an id to dedupe on; and the
//! presence edges (a user's first or last session, in the cluster or in a
//! room) that brokers report to whoever records them.

use serde::Serialize;
use serde_json::value::RawValue;

use super::now_ms;
use crate::protocol::Id;

/// A presence edge: a user's first session anywhere (online) or last one
/// gone (offline), or its first session in a room joined or last one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge<'a> {
    /// `user.online` or `user.offline`.
    User {
        /// Who.
        user: &'a Id,
        /// True for online.
        online: bool,
    },
    /// `room.join` or `room.leave`.
    Room {
        /// Which room.
        room: &'a Id,
        /// Who.
        user: &'a Id,
        /// True for a join.
        joined: bool,
    },
}

/// Receives presence edges; must not block (it runs on the broker's path).
pub trait EdgeSink: Send + Sync + 'static {
    /// One edge, with the user's opaque info from the connect hook.
    fn edge(&self, edge: Edge<'_>, info: Option<&RawValue>);
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
}

fn event(kind: &'static str) -> Event<'static> {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        ts: now_ms(),
        room_id: None,
        user_id: None,
        info: None,
    }
}

/// `message.stored`, carrying the message as recipients get it. The
/// message is JSON this node serialized (on the store's commit path):
/// spliced in, not parsed again.
pub fn message_stored(message: &[u8]) -> Option<String> {
    // Serialized by this node, `msgType` first: an amendment (14) is
    // `message.amended`; a receipt (12) is no event.
    let kind = match message {
        m if m.starts_with(b"{\"msgType\":14,") => "message.amended",
        m if m.starts_with(b"{\"msgType\":12,") => return None,
        _ => "message.stored",
    };
    let head = serde_json::to_string(&event(kind)).expect("an event serializes");
    let mut out = String::with_capacity(head.len() + message.len() + 12);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"message\":");
    out.push_str(&String::from_utf8_lossy(message));
    out.push('}');
    Some(out)
}

/// `inbox.undelivered`: `data` (`userId`, `count`, `msgIds`, `from`,
/// `roomId`) beside the event's id, type and time.
pub fn inbox_undelivered(data: serde_json::Value) -> String {
    let mut e = serde_json::to_value(event("inbox.undelivered")).expect("an event serializes");
    if let (Some(e), serde_json::Value::Object(d)) = (e.as_object_mut(), data) {
        e.extend(d);
    }
    e.to_string()
}

/// The event of a presence edge.
pub fn of_edge(edge: Edge<'_>, info: Option<&RawValue>) -> String {
    let e = match edge {
        Edge::User { user, online } => Event {
            user_id: Some(user),
            info,
            ..event(if online {
                "user.online"
            } else {
                "user.offline"
            })
        },
        Edge::Room { room, user, joined } => Event {
            room_id: Some(room),
            user_id: Some(user),
            info,
            ..event(if joined { "room.join" } else { "room.leave" })
        },
    };
    serde_json::to_string(&e).expect("an event serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn events_carry_an_id_a_type_and_what_happened() {
        let m: Value =
            serde_json::from_str(&message_stored(br#"{"msgType":3,"seq":4}"#).unwrap()).unwrap();
        assert_eq!(m["type"], "message.stored");
        assert_eq!(m["message"]["seq"], 4);
        assert_eq!(m["id"].as_str().unwrap().len(), 36);
        let a: Value = serde_json::from_str(
            &message_stored(br#"{"msgType":14,"amends":"m","seq":5}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (a["type"].as_str(), a["message"]["amends"].as_str()),
            (Some("message.amended"), Some("m"))
        );
        assert!(
            message_stored(br#"{"msgType":12,"kind":"read"}"#).is_none(),
            "a receipt is no event"
        );
        let (room, user) = (Id::parse("r").unwrap(), Id::parse("u").unwrap());
        let info: Box<RawValue> = serde_json::from_str(r#"{"n":1}"#).unwrap();
        let j: Value = serde_json::from_str(&of_edge(
            Edge::Room {
                room: &room,
                user: &user,
                joined: false,
            },
            Some(&info),
        ))
        .unwrap();
        assert_eq!(
            (
                j["type"].as_str(),
                j["roomId"].as_str(),
                j["userId"].as_str()
            ),
            (Some("room.leave"), Some("r"), Some("u"))
        );
        assert_eq!(j["info"]["n"], 1);
        let o: Value = serde_json::from_str(&of_edge(
            Edge::User {
                user: &user,
                online: true,
            },
            None,
        ))
        .unwrap();
        assert_eq!(o["type"], "user.online");
        assert!(o.get("info").is_none());
        assert_ne!(m["id"], o["id"], "ids are unique");
    }
}

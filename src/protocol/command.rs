//! Decoding a client frame into a typed, validated command.

use serde_json::value::RawValue;

use super::error::ProtoError;
use super::id::Id;
use super::message::{self, Since, SincePositions, Wire};
pub use super::nesting::nesting_depth;

/// Longest `clientMsgId` accepted.
pub const MAX_CLIENT_MSG_ID: usize = 64;
/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Deepest nesting of arrays and objects accepted in a `msgBody`.
pub const MAX_BODY_DEPTH: usize = 64;
/// Largest position (`seq`, `since`, cursors): positions are stored as
/// signed 64-bit integers.
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// One decoded client frame.
#[derive(Debug)]
pub enum Inbound {
    /// The literal text `ping`, answered with `pong`.
    Ping,
    /// A JSON frame.
    Command(Command),
}

/// A validated client command.
#[derive(Debug)]
pub enum Command {
    /// msgType 1.
    Heartbeat,
    /// msgType 2.
    Login(Login),
    /// msgType 3 or >= 100.
    Publish(Publish),
    /// msgType 4 from a client: "I hold my inbox up to `seq`".
    Cursor {
        /// The last inbox seq the client holds.
        seq: u64,
    },
    /// msgType 5.
    Join {
        /// The room.
        room: Id,
        /// `"presenceEvents":true`: the session gets msgType 11 events.
        presence_events: bool,
    },
    /// msgType 6.
    Leave(Id),
    /// msgType 7.
    History {
        /// The room, or the caller's inbox when absent.
        room: Option<Id>,
        /// Messages with `seq > since`.
        since: u64,
        /// At most this many messages (1..=100).
        limit: u32,
        /// `"view":"latest"`: amendments folded into their messages.
        latest_view: bool,
    },
    /// msgType 8 with `roomId`.
    PresenceRoom(Id),
    /// msgType 8 with `userIds`.
    PresenceUsers(Vec<Id>),
    /// msgType 10 from a client: new credentials for this session.
    Refresh {
        /// The new JWT.
        token: String,
    },
    /// msgType 12: a receipt.
    Receipt(super::chat::Receipt),
    /// msgType 13: read positions of a room, or the caller's unread counts.
    ReadState {
        /// The room; without it, the caller's unread counts.
        room: Option<Id>,
        /// Members' positions after this one (a previous answer's `next`).
        after: Option<String>,
        /// At most this many members' positions.
        limit: usize,
    },
    /// msgType 14: an amendment.
    Amend(super::chat::Amend),
    /// msgType 15: typing.
    Typing {
        /// Where the notice goes.
        to: Destination,
        /// Started or stopped.
        typing: bool,
    },
    /// msgType 16: a push registration added or removed.
    Push {
        /// The device's address.
        address: super::push::Address,
        /// `"remove":true`.
        remove: bool,
    },
}

impl Command {
    /// A join without presence events.
    pub fn join(room: Id) -> Self {
        Self::Join {
            room,
            presence_events: false,
        }
    }
}

/// Longest "latest value wins" key, in characters.
pub const MAX_LATEST_KEY: usize = 64;

/// A login frame.
#[derive(Debug, Default)]
pub struct Login {
    /// The claimed identity (`sendUserId`).
    pub user: Option<Id>,
    /// A JWT, when it did not come in the URL.
    pub token: Option<String>,
    /// Rooms to join as part of the login.
    pub rooms: Vec<Id>,
    /// Replay positions.
    pub since: SincePositions,
    /// The client reads only its one stream (`"streams":"single"`): no
    /// stream per channel over WebTransport.
    pub single_stream: bool,
    /// `"presenceEvents":true`: msgType 11 events of the login's rooms.
    pub presence_events: bool,
    /// Redundant datagram copies of stored-channel frames (WebTransport).
    pub redundancy: Redundancy,
    /// Unread counts in the reply (`"unread":false` turns them off).
    pub unread: bool,
}

/// Whether a stored-channel frame also travels as a datagram
/// (`"redundancy"` at login; PROTOCOL.md section 2). Only WebTransport has
/// datagrams; other transports send the one copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redundancy {
    /// One copy, on the channel's stream (the default).
    #[default]
    Off,
    /// Every frame that fits also as a datagram (`"datagram"`).
    Always,
    /// As `Always`, while the connection is losing packets (`"auto"`).
    Auto,
}

/// Where a business message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Every session of a user; `context` is a room kept for the recipient.
    User {
        /// The recipient.
        user: Id,
        /// A room id carried as context.
        context: Option<Id>,
    },
    /// Every member session of a room.
    Room(Id),
}

/// A business message from a client.
#[derive(Debug)]
pub struct Publish {
    /// The msgType (3 or >= 100), preserved.
    pub msg_type: i64,
    /// Where it goes.
    pub to: Destination,
    /// Opaque, preserved.
    pub biz_type: Option<i64>,
    /// Opaque, preserved.
    pub biz_opt_module: Option<i64>,
    /// Opaque, preserved.
    pub body: Option<Box<RawValue>>,
    /// Idempotency key.
    pub client_msg_id: Option<String>,
    /// Not stored, not acked.
    pub volatile: bool,
    /// "Latest value wins" key of a volatile update.
    pub latest: Option<String>,
}

/// Decodes one frame. An error leaves the connection open; the caller answers
/// it with msgType 9. `client_msg_id` of a failed send is recovered when
/// possible so the client can match the error to its message.
pub fn decode(frame: &[u8]) -> Result<Inbound, DecodeError> {
    if frame.trim_ascii() == b"ping" {
        return Ok(Inbound::Ping);
    }
    let wire = parse(frame).map_err(|error| DecodeError {
        error,
        client_msg_id: None,
    })?;
    let client_msg_id = wire.client_msg_id.clone();
    command(wire)
        .map(Inbound::Command)
        .map_err(|error| DecodeError {
            error,
            client_msg_id,
        })
}

/// Decodes a server-API publish body: a message object whose `msgType`
/// defaults to 3 and whose `sendUserId`, if any, names a system sender.
pub fn decode_publish(body: &[u8]) -> Result<(Option<Id>, Publish), ProtoError> {
    let mut wire = parse(body)?;
    let sender = wire.send_user_id.take();
    wire.msg_type.get_or_insert(message::BUSINESS);
    match command(wire)? {
        Command::Publish(s) => Ok((sender, s)),
        _ => Err(ProtoError::bad("msgType must be 3 or at least 100")),
    }
}

/// Parses one JSON object, naming the field at fault in the error.
fn parse(frame: &[u8]) -> Result<Wire, ProtoError> {
    let mut de = serde_json::Deserializer::from_slice(frame);
    let wire: Wire = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ProtoError::bad(format!("malformed frame: {inner}"))
        } else {
            ProtoError::bad(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ProtoError::bad(format!("malformed frame: {e}")))?;
    Ok(wire)
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeError {
    /// What is wrong.
    pub error: ProtoError,
    /// The frame's `clientMsgId`, when it could be read.
    pub client_msg_id: Option<String>,
}

fn command(w: Wire) -> Result<Command, ProtoError> {
    let msg_type = w
        .msg_type
        .ok_or_else(|| ProtoError::bad("msgType is required"))?;
    if let Some(id) = &w.client_msg_id
        && (id.is_empty() || id.chars().count() > MAX_CLIENT_MSG_ID)
    {
        return Err(ProtoError::bad(format!(
            "clientMsgId must be 1 to {MAX_CLIENT_MSG_ID} characters"
        )));
    }
    if let Some(body) = &w.msg_body
        && nesting_depth(body.get()) > MAX_BODY_DEPTH
    {
        return Err(ProtoError::bad(format!(
            "msgBody: nested deeper than {MAX_BODY_DEPTH} levels"
        )));
    }
    if let Some(seq) = w.seq {
        position(seq, "seq")?;
    }
    match &w.since {
        Some(Since::Seq(n)) => {
            position(*n, "since")?;
        }
        Some(Since::Positions(p)) => {
            if let Some(n) = p.inbox {
                position(n, "since.inbox")?;
            }
            for (room, n) in &p.rooms {
                position(*n, &format!("since.rooms.{room}"))?;
            }
        }
        None => {}
    }
    match msg_type {
        message::HEARTBEAT => Ok(Command::Heartbeat),
        message::LOGIN => {
            let since = match w.since {
                None => SincePositions::default(),
                Some(Since::Positions(p)) => p,
                Some(Since::Seq(_)) => {
                    return Err(ProtoError::bad("since: at login, an object {inbox, rooms}"));
                }
            };
            let single_stream = match w.streams.as_deref() {
                None | Some("channels") => false,
                Some("single") => true,
                Some(other) => {
                    return Err(ProtoError::bad(format!(
                        "streams: \"single\" or \"channels\", not {other:?}"
                    )));
                }
            };
            let redundancy = match w.redundancy.as_deref() {
                None | Some("off") => Redundancy::Off,
                Some("datagram") => Redundancy::Always,
                Some("auto") => Redundancy::Auto,
                Some(other) => {
                    return Err(ProtoError::bad(format!(
                        "redundancy: \"datagram\", \"auto\" or \"off\", not {other:?}"
                    )));
                }
            };
            let mut rooms: Vec<Id> = w.room_id.into_iter().collect();
            rooms.extend(w.rooms.unwrap_or_default());
            rooms.dedup();
            Ok(Command::Login(Login {
                user: w.send_user_id,
                token: w.token,
                rooms,
                since,
                single_stream,
                presence_events: w.presence_events.unwrap_or(false),
                redundancy,
                unread: !matches!(w.unread, Some(serde_json::Value::Bool(false))),
            }))
        }
        message::ACK => {
            let seq = w
                .seq
                .ok_or_else(|| ProtoError::bad("msgType 4 needs seq"))?;
            Ok(Command::Cursor { seq })
        }
        message::JOIN => Ok(Command::Join {
            room: need_room(w.room_id, "join")?,
            presence_events: w.presence_events.unwrap_or(false),
        }),
        message::LEAVE => Ok(Command::Leave(need_room(w.room_id, "leave")?)),
        message::HISTORY => {
            let since = match w.since {
                None => 0,
                Some(Since::Seq(n)) => n,
                Some(Since::Positions(_)) => return Err(ProtoError::bad("since: a number")),
            };
            let limit = w.limit.unwrap_or(MAX_HISTORY_LIMIT);
            if limit == 0 || limit > MAX_HISTORY_LIMIT {
                return Err(ProtoError::bad(format!(
                    "limit must be 1 to {MAX_HISTORY_LIMIT}"
                )));
            }
            let latest_view = match super::chat::text(w.view, "view")?.as_deref() {
                None | Some("log") => false,
                Some("latest") => true,
                Some(other) => {
                    return Err(ProtoError::bad(format!(
                        "view: \"latest\" or \"log\", not {other:?}"
                    )));
                }
            };
            Ok(Command::History {
                room: w.room_id,
                since,
                limit,
                latest_view,
            })
        }
        message::PRESENCE => match (w.room_id, w.user_ids) {
            (Some(room), None) => Ok(Command::PresenceRoom(room)),
            (None, Some(users)) => {
                if users.len() > 1000 {
                    return Err(ProtoError::bad("userIds: at most 1000"));
                }
                Ok(Command::PresenceUsers(users))
            }
            _ => Err(ProtoError::bad("presence needs either roomId or userIds")),
        },
        message::REFRESH => match w.token {
            Some(token) if !token.is_empty() => Ok(Command::Refresh { token }),
            _ => Err(ProtoError::bad("msgType 10 needs token")),
        },
        t if message::is_business(t) => {
            let volatile = w.volatile.unwrap_or(false);
            if let Some(key) = &w.latest {
                if !volatile {
                    return Err(ProtoError::bad("latest: only on volatile messages"));
                }
                if key.is_empty() || key.chars().count() > MAX_LATEST_KEY {
                    return Err(ProtoError::bad(format!(
                        "latest: 1 to {MAX_LATEST_KEY} characters"
                    )));
                }
            }
            let to = match (w.received_user_id, w.room_id) {
                (Some(user), context) => Destination::User { user, context },
                (None, Some(room)) => Destination::Room(room),
                (None, None) => {
                    return Err(ProtoError::bad("a message needs receivedUserId or roomId"));
                }
            };
            Ok(Command::Publish(Publish {
                msg_type: t,
                to,
                biz_type: w.biz_type,
                biz_opt_module: w.biz_opt_module,
                body: w.msg_body,
                client_msg_id: w.client_msg_id,
                volatile,
                latest: w.latest,
            }))
        }
        super::message::PUSH => super::push::decode(w),
        t => super::chat::decode(t, w)
            .unwrap_or_else(|| Err(ProtoError::bad(format!("unknown msgType {t}")))),
    }
}

/// A position must fit a signed 64-bit integer (the stores keep it so).
fn position(n: u64, field: &str) -> Result<u64, ProtoError> {
    if n > MAX_POSITION {
        return Err(ProtoError::bad(format!(
            "{field}: {n} is beyond the largest position {MAX_POSITION}"
        )));
    }
    Ok(n)
}

fn need_room(room: Option<Id>, what: &str) -> Result<Id, ProtoError> {
    room.ok_or_else(|| ProtoError::bad(format!("{what} needs roomId")))
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

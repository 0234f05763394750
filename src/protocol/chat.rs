//! Decoding the chat commands (PROTOCOL.md section 4, msgTypes 12 to 15):
//! receipts, read state, amendments and typing.

use serde_json::Value;
use serde_json::value::RawValue;

use super::command::{Command, Destination};
use super::error::ProtoError;
use super::id::Id;
use super::message::{self, Wire};

/// Most msgIds in one receipt.
pub const MAX_RECEIPT_IDS: usize = 100;
/// Longest reaction, in characters.
pub const MAX_REACTION: usize = 16;
/// Most distinct reactions on one message.
pub const MAX_REACTIONS: usize = 32;
/// Longest msgId accepted in a receipt or an amendment.
pub const MAX_MSG_ID: usize = 64;
/// Most members' read positions in one read-state answer.
pub const MAX_READS_LIMIT: usize = 1000;

/// A receipt's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The messages reached a device of the reader.
    Delivered,
    /// The reader read them.
    Read,
}

impl ReceiptKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// msgType 12 from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Direct messages in the caller's inbox were delivered or read.
    Messages {
        /// Delivered or read.
        kind: ReceiptKind,
        /// Their msgIds (1 to 100).
        msg_ids: Vec<String>,
    },
    /// "I have read this room up to `seq`".
    Room {
        /// The room.
        room: Id,
        /// The position.
        seq: u64,
    },
}

/// An amendment's operation.
#[derive(Debug, Clone)]
pub enum AmendOp {
    /// A new body.
    Edit(Box<RawValue>),
    /// The message's body goes.
    Delete,
    /// A reaction added.
    React(String),
    /// A reaction taken back.
    Unreact(String),
}

impl AmendOp {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Edit(_) => "edit",
            Self::Delete => "delete",
            Self::React(_) => "react",
            Self::Unreact(_) => "unreact",
        }
    }
}

/// msgType 14 from a client (or the server API).
#[derive(Debug, Clone)]
pub struct Amend {
    /// The message it amends.
    pub target: String,
    /// What it does.
    pub op: AmendOp,
    /// Idempotency key.
    pub client_msg_id: Option<String>,
}

/// A loosely typed field that must be a string.
pub(super) fn text(v: Option<Value>, field: &str) -> Result<Option<String>, ProtoError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProtoError::bad(format!("{field}: expected a string"))),
    }
}

/// A loosely typed field that must be a boolean.
fn flag(v: Option<Value>, field: &str) -> Result<Option<bool>, ProtoError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ProtoError::bad(format!("{field}: expected true or false"))),
    }
}

/// A loosely typed field that must be an array of strings.
fn strings(v: Option<Value>, field: &str) -> Result<Option<Vec<String>>, ProtoError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|x| match x {
                Value::String(s) => Ok(s),
                _ => Err(ProtoError::bad(format!("{field}: expected strings"))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(ProtoError::bad(format!(
            "{field}: expected an array of strings"
        ))),
    }
}

/// Decodes msgTypes 12 to 15 (`None` for any other msgType).
pub(super) fn decode(msg_type: i64, w: Wire) -> Option<Result<Command, ProtoError>> {
    Some(match msg_type {
        message::RECEIPT => receipt(w).map(Command::Receipt),
        message::READ_STATE => read_state(w),
        message::AMEND => amend(w).map(Command::Amend),
        message::TYPING => typing(w),
        _ => return None,
    })
}

fn receipt(w: Wire) -> Result<Receipt, ProtoError> {
    let kind = match text(w.kind, "kind")?.as_deref() {
        Some("delivered") => ReceiptKind::Delivered,
        Some("read") => ReceiptKind::Read,
        Some(other) => {
            return Err(ProtoError::bad(format!(
                "kind: \"delivered\" or \"read\", not {other:?}"
            )));
        }
        None => return Err(ProtoError::bad("a receipt needs kind")),
    };
    match (strings(w.msg_ids, "msgIds")?, w.room_id) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
                return Err(ProtoError::bad(format!(
                    "msgIds: 1 to {MAX_RECEIPT_IDS} ids"
                )));
            }
            if let Some(bad) = ids.iter().find(|i| i.is_empty() || i.len() > MAX_MSG_ID) {
                return Err(ProtoError::bad(format!("msgIds: {bad:?} is not a msgId")));
            }
            let mut msg_ids = ids;
            msg_ids.sort();
            msg_ids.dedup();
            Ok(Receipt::Messages { kind, msg_ids })
        }
        (None, Some(room)) => {
            if kind != ReceiptKind::Read {
                return Err(ProtoError::bad("a room receipt is kind \"read\""));
            }
            let seq = w
                .seq
                .ok_or_else(|| ProtoError::bad("a room receipt needs seq"))?;
            Ok(Receipt::Room { room, seq })
        }
        _ => Err(ProtoError::bad("a receipt needs either msgIds or roomId")),
    }
}

fn read_state(w: Wire) -> Result<Command, ProtoError> {
    let limit = w.limit.map_or(100, |l| l as usize);
    if limit == 0 || limit > MAX_READS_LIMIT {
        return Err(ProtoError::bad(format!(
            "limit must be 1 to {MAX_READS_LIMIT}"
        )));
    }
    Ok(Command::ReadState {
        room: w.room_id,
        after: text(w.after, "after")?,
        limit,
    })
}

fn amend(w: Wire) -> Result<Amend, ProtoError> {
    let target = text(w.msg_id, "msgId")?
        .filter(|t| !t.is_empty() && t.len() <= MAX_MSG_ID)
        .ok_or_else(|| ProtoError::bad("an amendment needs msgId (the message it amends)"))?;
    let reaction = |r: Option<String>| match r {
        Some(r) if !r.is_empty() && r.chars().count() <= MAX_REACTION => Ok(r),
        _ => Err(ProtoError::bad(format!(
            "reaction: 1 to {MAX_REACTION} characters"
        ))),
    };
    let reaction_field = text(w.reaction, "reaction")?;
    let op = match text(w.op, "op")?.as_deref() {
        Some("edit") => AmendOp::Edit(
            w.msg_body
                .ok_or_else(|| ProtoError::bad("an edit needs msgBody"))?,
        ),
        Some("delete") => AmendOp::Delete,
        Some("react") => AmendOp::React(reaction(reaction_field)?),
        Some("unreact") => AmendOp::Unreact(reaction(reaction_field)?),
        Some(other) => {
            return Err(ProtoError::bad(format!(
                "op: \"edit\", \"delete\", \"react\" or \"unreact\", not {other:?}"
            )));
        }
        None => return Err(ProtoError::bad("an amendment needs op")),
    };
    Ok(Amend {
        target,
        op,
        client_msg_id: w.client_msg_id,
    })
}

fn typing(w: Wire) -> Result<Command, ProtoError> {
    let to = match (w.received_user_id, w.room_id) {
        (Some(user), context) => Destination::User { user, context },
        (None, Some(room)) => Destination::Room(room),
        (None, None) => return Err(ProtoError::bad("typing needs receivedUserId or roomId")),
    };
    let typing = flag(w.typing, "typing")?
        .ok_or_else(|| ProtoError::bad("msgType 15 needs typing (true or false)"))?;
    Ok(Command::Typing { to, typing })
}

/// Decodes a server-API amendment: `{"msgId","op","msgBody"?,"reaction"?,"userId"?}`.
pub fn decode_api_amend(body: &[u8]) -> Result<Amend, ProtoError> {
    let w: Wire = serde_json::from_slice(body)
        .map_err(|e| ProtoError::bad(format!("malformed body: {e}")))?;
    amend(w)
}

#[cfg(test)]
mod tests {
    use super::super::command::{Inbound, decode as decode_frame};
    use super::*;

    fn cmd(json: &str) -> Result<Command, ProtoError> {
        match decode_frame(json.as_bytes()) {
            Ok(Inbound::Command(c)) => Ok(c),
            Ok(Inbound::Ping) => panic!("ping"),
            Err(e) => Err(e.error),
        }
    }

    #[test]
    fn receipts_name_messages_or_a_room_position() {
        let c = cmd(r#"{"msgType":12,"kind":"read","msgIds":["b","a","b"]}"#).unwrap();
        assert!(
            matches!(c, Command::Receipt(Receipt::Messages { kind: ReceiptKind::Read, ref msg_ids }) if msg_ids == &["a", "b"])
        );
        let c = cmd(r#"{"msgType":12,"kind":"read","roomId":"r","seq":4}"#).unwrap();
        assert!(matches!(c, Command::Receipt(Receipt::Room { seq: 4, .. })));
        for bad in [
            r#"{"msgType":12,"msgIds":["a"]}"#,
            r#"{"msgType":12,"kind":"seen","msgIds":["a"]}"#,
            r#"{"msgType":12,"kind":"read","msgIds":[]}"#,
            r#"{"msgType":12,"kind":"read","msgIds":[""]}"#,
            r#"{"msgType":12,"kind":"read","msgIds":["a"],"roomId":"r","seq":1}"#,
            r#"{"msgType":12,"kind":"delivered","roomId":"r","seq":1}"#,
            r#"{"msgType":12,"kind":"read","roomId":"r"}"#,
            r#"{"msgType":12,"kind":"read","msgIds":"a"}"#,
        ] {
            assert_eq!(cmd(bad).unwrap_err().code(), 400, "{bad}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("\"m{i}\"")).collect();
        let frame = format!(
            r#"{{"msgType":12,"kind":"read","msgIds":[{}]}}"#,
            many.join(",")
        );
        assert_eq!(cmd(&frame).unwrap_err().code(), 400);
    }

    #[test]
    fn amendments_check_their_operation() {
        let c = cmd(r#"{"msgType":14,"msgId":"m","op":"edit","msgBody":{"t":1}}"#).unwrap();
        assert!(matches!(
            c,
            Command::Amend(Amend {
                op: AmendOp::Edit(_),
                ..
            })
        ));
        let c = cmd(r#"{"msgType":14,"msgId":"m","op":"react","reaction":"👍"}"#).unwrap();
        assert!(matches!(c, Command::Amend(Amend { op: AmendOp::React(ref r), .. }) if r == "👍"));
        for bad in [
            r#"{"msgType":14,"op":"delete"}"#,
            r#"{"msgType":14,"msgId":"m"}"#,
            r#"{"msgType":14,"msgId":"m","op":"edit"}"#,
            r#"{"msgType":14,"msgId":"m","op":"react"}"#,
            r#"{"msgType":14,"msgId":"m","op":"react","reaction":"12345678901234567"}"#,
            r#"{"msgType":14,"msgId":"m","op":"burn"}"#,
        ] {
            assert_eq!(cmd(bad).unwrap_err().code(), 400, "{bad}");
        }
    }

    #[test]
    fn typing_and_read_state_are_checked() {
        assert!(matches!(
            cmd(r#"{"msgType":15,"roomId":"r","typing":true}"#).unwrap(),
            Command::Typing { typing: true, .. }
        ));
        assert_eq!(
            cmd(r#"{"msgType":15,"roomId":"r"}"#).unwrap_err().code(),
            400
        );
        assert_eq!(
            cmd(r#"{"msgType":15,"typing":true}"#).unwrap_err().code(),
            400
        );
        assert!(matches!(
            cmd(r#"{"msgType":13}"#).unwrap(),
            Command::ReadState {
                room: None,
                limit: 100,
                ..
            }
        ));
        assert_eq!(
            cmd(r#"{"msgType":13,"roomId":"r","limit":1001}"#)
                .unwrap_err()
                .code(),
            400
        );
    }
}

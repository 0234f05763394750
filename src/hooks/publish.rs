//! The publish hook's contract: which messages the backend sees, what it is
//! told, and how its answer accepts, rewrites or refuses a message.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::client::{Answer, HookError};
use super::connect::Refusal;
use crate::protocol::command::{MAX_BODY_DEPTH, nesting_depth};
use crate::protocol::{Destination, Id, ProtoError, Publish};

/// Which messages go to the publish hook.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Only these bizTypes (empty: any).
    pub(crate) biz_types: Vec<i64>,
    /// Only messages to these rooms (empty: any destination).
    pub(crate) rooms: Vec<String>,
    /// Volatile messages too (else they skip the hook).
    pub(crate) volatile: bool,
}

impl Filter {
    /// Whether `p` goes to the hook.
    pub(crate) fn applies(&self, p: &Publish) -> bool {
        if p.volatile && !self.volatile {
            return false;
        }
        let biz =
            self.biz_types.is_empty() || p.biz_type.is_some_and(|b| self.biz_types.contains(&b));
        let room = self.rooms.is_empty()
            || matches!(&p.to, Destination::Room(r) if self.rooms.iter().any(|x| x == r.as_str()));
        biz && room
    }
}

/// The body of a publish hook call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PublishRequest<'a> {
    /// The sender (for the server API: the system sender name, if any).
    pub(crate) user_id: Option<&'a Id>,
    /// The message as the client sent it.
    pub(crate) message: Message<'a>,
}

/// A message as the hook sees it: the client's fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Message<'a> {
    msg_type: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_user_id: Option<&'a Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_type: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_opt_module: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_body: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
    /// Only with `--publish-hook-volatile`: not stored, delivered only to
    /// whoever is online now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    volatile: bool,
}

impl<'a> Message<'a> {
    /// The hook's view of `p`.
    pub(crate) fn of(p: &'a Publish) -> Self {
        let (received_user_id, room_id) = match &p.to {
            Destination::User { user, context } => (Some(user), context.as_ref()),
            Destination::Room(room) => (None, Some(room)),
        };
        Self {
            msg_type: p.msg_type,
            received_user_id,
            room_id,
            biz_type: p.biz_type,
            biz_opt_module: p.biz_opt_module,
            msg_body: p.body.as_deref(),
            client_msg_id: p.client_msg_id.as_deref(),
            volatile: p.volatile,
        }
    }
}

/// A 200 answer: each field present replaces the message's (`null`
/// removes it); an empty object accepts the message as it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rewrite {
    #[serde(default, deserialize_with = "some")]
    msg_body: Option<Option<Box<RawValue>>>,
    #[serde(default, deserialize_with = "some")]
    biz_type: Option<Option<i64>>,
    #[serde(default, deserialize_with = "some")]
    biz_opt_module: Option<Option<i64>>,
}

/// A field that is present, `null` included.
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// What the hook decided for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Stored as sent.
    Accept,
    /// Stored with the backend's changes.
    Rewrite,
}

/// Applies the backend's answer to `p`: accepted (maybe rewritten), refused
/// (error 403 with the reason), or no usable answer. A rewritten body obeys
/// the frame's limits.
pub(crate) fn decide(
    answer: Answer,
    p: &mut Publish,
    max_body: usize,
) -> Result<Result<Decision, ProtoError>, HookError> {
    match answer.status {
        200 => {}
        403 => {
            return Ok(Err(ProtoError::Forbidden(Refusal::of(
                &answer.body,
                "refused by the publish hook",
            ))));
        }
        status => return Err(HookError::Status(status)),
    }
    let body = if answer.body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &answer.body[..]
    };
    let r: Rewrite = serde_json::from_slice(body).map_err(|e| HookError::Answer(e.to_string()))?;
    if r.msg_body.is_none() && r.biz_type.is_none() && r.biz_opt_module.is_none() {
        return Ok(Ok(Decision::Accept));
    }
    if let Some(Some(b)) = &r.msg_body {
        if b.get().len() > max_body {
            return Err(HookError::Answer(format!(
                "msgBody of {} bytes is over the frame limit {max_body}",
                b.get().len()
            )));
        }
        if nesting_depth(b.get()) > MAX_BODY_DEPTH {
            return Err(HookError::Answer(format!(
                "msgBody nests deeper than {MAX_BODY_DEPTH} levels"
            )));
        }
    }
    if let Some(b) = r.msg_body {
        p.body = b.filter(|b| b.get() != "null");
    }
    if let Some(b) = r.biz_type {
        p.biz_type = b;
    }
    if let Some(b) = r.biz_opt_module {
        p.biz_opt_module = b;
    }
    Ok(Ok(Decision::Rewrite))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Command, Inbound, decode};

    fn publish(frame: &str) -> Publish {
        match decode(frame.as_bytes()).unwrap() {
            Inbound::Command(Command::Publish(p)) => p,
            other => panic!("not a publish: {other:?}"),
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    const FRAME: &str =
        r#"{"msgType":3,"roomId":"r","bizType":5,"msgBody":{"t":"hi"},"clientMsgId":"c1"}"#;

    #[test]
    fn the_hook_sees_the_clients_fields() {
        let p = publish(FRAME);
        let body = serde_json::to_string(&PublishRequest {
            user_id: Some(&Id::parse("ann").unwrap()),
            message: Message::of(&p),
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"userId":"ann","message":{"msgType":3,"roomId":"r","bizType":5,"msgBody":{"t":"hi"},"clientMsgId":"c1"}}"#
        );
    }

    #[test]
    fn an_answer_accepts_rewrites_or_refuses() {
        let mut p = publish(FRAME);
        assert_eq!(
            decide(answer(200, ""), &mut p, 1000),
            Ok(Ok(Decision::Accept))
        );
        assert_eq!(
            decide(answer(200, "{}"), &mut p, 1000),
            Ok(Ok(Decision::Accept))
        );
        assert_eq!(p.body.as_ref().unwrap().get(), r#"{"t":"hi"}"#);
        let rewrite = r#"{"msgBody":{"t":"HI"},"bizType":null,"bizOptModule":2}"#;
        assert_eq!(
            decide(answer(200, rewrite), &mut p, 1000),
            Ok(Ok(Decision::Rewrite))
        );
        assert_eq!(p.body.as_ref().unwrap().get(), r#"{"t":"HI"}"#);
        assert_eq!((p.biz_type, p.biz_opt_module), (None, Some(2)));
        assert_eq!(
            decide(answer(403, r#"{"reason":"no swearing"}"#), &mut p, 1000),
            Ok(Err(ProtoError::Forbidden("no swearing".into())))
        );
    }

    #[test]
    fn a_rewrite_beyond_the_limits_or_an_odd_answer_is_a_failure() {
        let mut p = publish(FRAME);
        let big = format!(r#"{{"msgBody":"{}"}}"#, "x".repeat(100));
        assert!(matches!(
            decide(answer(200, &big), &mut p, 50),
            Err(HookError::Answer(_))
        ));
        let deep = format!(r#"{{"msgBody":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        assert!(matches!(
            decide(answer(200, &deep), &mut p, 1000),
            Err(HookError::Answer(_))
        ));
        assert!(matches!(
            decide(answer(200, r#"{"body":1}"#), &mut p, 1000),
            Err(HookError::Answer(_))
        ));
        assert_eq!(
            decide(answer(502, ""), &mut p, 1000),
            Err(HookError::Status(502))
        );
        // Nothing of a failed answer was applied.
        assert_eq!(p.body.as_ref().unwrap().get(), r#"{"t":"hi"}"#);
    }

    #[test]
    fn the_filter_picks_biz_types_and_rooms() {
        let p = publish(FRAME);
        assert!(Filter::default().applies(&p));
        let only = |biz_types: Vec<i64>, rooms: Vec<&str>| Filter {
            biz_types,
            rooms: rooms.into_iter().map(String::from).collect(),
            volatile: false,
        };
        assert!(only(vec![5], vec![]).applies(&p));
        assert!(!only(vec![6], vec![]).applies(&p));
        assert!(only(vec![5], vec!["r"]).applies(&p));
        assert!(!only(vec![], vec!["s"]).applies(&p));
        let direct = publish(r#"{"msgType":3,"receivedUserId":"bob","bizType":5}"#);
        assert!(!only(vec![], vec!["r"]).applies(&direct));
        assert!(only(vec![5], vec![]).applies(&direct));
        // Volatile messages only with `--publish-hook-volatile`.
        let typing = publish(r#"{"msgType":3,"roomId":"r","volatile":true}"#);
        assert!(!Filter::default().applies(&typing));
        let all = Filter {
            volatile: true,
            ..Filter::default()
        };
        assert!(all.applies(&typing) && all.applies(&p));
    }
}

//! The connect hook's contract: what rtgate tells the backend about a
//! login (or a msgType 10 refresh) and how the backend's answer becomes an
//! identity or a refusal.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::client::{Answer, HookError};
use crate::auth::{AuthError, EXP_LEEWAY_SECS, Identity, RoomGrant, grant, present};
use crate::model::now_ms;
use crate::protocol::Id;

/// The body of a connect hook call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectRequest<'a> {
    /// `websocket` or `webtransport` (absent on a refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<&'a str>,
    /// The client's address through trusted proxies (absent on a refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_addr: Option<String>,
    /// The login frame (or the msgType 10 frame of a refresh), as sent.
    pub(crate) login: &'a RawValue,
    /// The query string's `token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
    /// The request's `Cookie` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cookie: Option<&'a str>,
    /// The browser's `Origin` header: which page opened the connection (a
    /// backend that trusts cookies must check it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<&'a str>,
    /// The request's `Authorization` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) authorization: Option<&'a str>,
    /// `{userId}` of the legacy path `/websocket/{userId}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path_user_id: Option<&'a str>,
    /// On a refresh: the session's user, which the answer must keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<&'a Id>,
    /// True on a refresh (msgType 10) of a live session.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) refresh: bool,
}

/// A login the backend accepted.
#[derive(Debug)]
pub(crate) struct Connected {
    /// Who the user is and what it may use.
    pub(crate) identity: Identity,
    /// Rooms to join now, besides the login's own.
    pub(crate) join: Vec<Id>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Accept {
    user_id: Id,
    #[serde(default, deserialize_with = "present")]
    rooms: Option<serde_json::Value>,
    #[serde(default)]
    join: Vec<Id>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
}

/// `{"reason"}` of a refusal; any other body is ignored.
#[derive(Deserialize, Default)]
pub(super) struct Refusal {
    #[serde(default)]
    reason: Option<String>,
}

impl Refusal {
    /// The backend's reason, or `fallback`.
    pub(super) fn of(body: &[u8], fallback: &str) -> String {
        serde_json::from_slice::<Refusal>(body)
            .ok()
            .and_then(|r| r.reason)
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(200).collect())
            .unwrap_or_else(|| fallback.to_string())
    }
}

/// The backend's decision: accepted, refused (401/403), or no usable answer.
pub(crate) fn decide(answer: Answer) -> Result<Result<Connected, AuthError>, HookError> {
    match answer.status {
        200 => accept(&answer.body).map(Ok),
        401 => Ok(Err(AuthError::Unauthorized(Refusal::of(
            &answer.body,
            "refused by the connect hook",
        )))),
        403 => Ok(Err(AuthError::Forbidden(Refusal::of(
            &answer.body,
            "refused by the connect hook",
        )))),
        status => Err(HookError::Status(status)),
    }
}

fn accept(body: &[u8]) -> Result<Connected, HookError> {
    let a: Accept = serde_json::from_slice(body).map_err(|e| HookError::Answer(e.to_string()))?;
    let mut rooms = grant(a.rooms).map_err(|e| HookError::Answer(format!("rooms: {e}")))?;
    // Rooms the backend joins the user to are rooms it may use.
    if let RoomGrant::Only(set) = &mut rooms {
        set.extend(a.join.iter().cloned());
    }
    if let Some(exp) = a.exp
        && exp + EXP_LEEWAY_SECS < now_ms() / 1000
    {
        return Err(HookError::Answer(format!("exp {exp} is in the past")));
    }
    Ok(Connected {
        identity: Identity {
            user: a.user_id,
            rooms,
            expires: a.exp,
            info: a.info,
        },
        join: a.join,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn an_accept_gives_identity_grant_joins_and_info() {
        let c = decide(answer(
            200,
            r#"{"userId":7,"rooms":["a"],"join":["b"],"info":{"name":"Ann"}}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.identity.user.as_str(), "7");
        let id = |s| Id::parse(s).unwrap();
        assert!(c.identity.rooms.allows(&id("a")) && c.identity.rooms.allows(&id("b")));
        assert!(!c.identity.rooms.allows(&id("c")));
        assert_eq!(c.join, vec![id("b")]);
        assert_eq!(c.identity.info.unwrap().get(), r#"{"name":"Ann"}"#);
        let all = decide(answer(200, r#"{"userId":"u"}"#)).unwrap().unwrap();
        assert_eq!(all.identity.rooms, RoomGrant::All);
    }

    #[test]
    fn refusals_carry_the_backends_reason() {
        assert_eq!(
            decide(answer(401, r#"{"reason":"session expired"}"#))
                .unwrap()
                .unwrap_err(),
            AuthError::Unauthorized("session expired".into())
        );
        assert_eq!(
            decide(answer(403, "nope")).unwrap().unwrap_err(),
            AuthError::Forbidden("refused by the connect hook".into())
        );
    }

    #[test]
    fn anything_else_is_a_failure_of_the_hook() {
        assert_eq!(decide(answer(500, "")).unwrap_err(), HookError::Status(500));
        assert!(matches!(
            decide(answer(200, r#"{"user":"u"}"#)),
            Err(HookError::Answer(_))
        ));
        assert!(matches!(
            decide(answer(200, r#"{"userId":"u","rooms":"a"}"#)),
            Err(HookError::Answer(_))
        ));
        assert!(matches!(
            decide(answer(200, r#"{"userId":"u","exp":1000}"#)),
            Err(HookError::Answer(_))
        ));
    }
}

//! The backend's hand on live sessions, on every node: who is online
//! (`GET /api/presence`), and a user's sessions disconnected
//! (`POST /api/disconnect`) or made to join or leave a room
//! (`POST /api/join`, `POST /api/leave`, with the msgType 5/6 notices).
//! Instructions travel as envelopes to the user's sessions wherever they
//! are ([`Control`]).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{ApiError, ApiJson, Authorized, parse_id as id};
use crate::gateway::Gateway;
use crate::model::Control;
use crate::protocol::{CloseCode, Id};

/// The longest close reason (a WebSocket close frame holds 123 bytes).
const MAX_REASON: usize = 123;

/// Whether `user` has a live session anywhere.
async fn online(gw: &Gateway, user: &Id) -> Result<bool, ApiError> {
    let found = gw
        .broker()
        .online(vec![user.clone()])
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(!found.is_empty())
}

/// An instruction sent to a user's live sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Instructed {
    /// The user.
    #[schema(value_type = String)]
    user_id: Id,
    /// Whether the user had a live session when asked (false: nothing to do).
    online: bool,
}

/// Sends `control` to every session of `user` on every node.
async fn instruct(gw: &Gateway, user: Id, control: Control) -> Result<Json<Instructed>, ApiError> {
    let online = online(gw, &user).await?;
    if online {
        gw.broker().publish(control.to_user(user.clone()));
    }
    Ok(Json(Instructed {
        user_id: user,
        online,
    }))
}

/// Who to disconnect, and how.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Disconnect {
    /// The user whose every session is closed.
    user_id: String,
    /// The close code: 1000, 1001, one of the protocol's, or 3000 to 4999
    /// (default 4403: clients do not reconnect on their own).
    code: Option<u16>,
    /// The close reason, at most 123 bytes (default "disconnected by the server").
    reason: Option<String>,
}

/// Closes every session of a user.
#[utoipa::path(
    post,
    path = "/api/disconnect",
    tag = "sessions",
    request_body = Disconnect,
    responses(
        (status = 200, description = "Sent to the user's sessions", body = Instructed),
        (status = 400, description = "Malformed body, code or reason"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "Presence cannot be read now"),
    ),
)]
pub(crate) async fn disconnect(
    State(gw): State<Gateway>,
    _: Authorized,
    ApiJson(d): ApiJson<Disconnect>,
) -> Result<Json<Instructed>, ApiError> {
    let (user, control) = d.checked()?;
    instruct(&gw, user, control).await
}

impl Disconnect {
    /// The user and the close to send, or what is wrong with the body.
    pub(super) fn checked(self) -> Result<(Id, Control), ApiError> {
        let user = id(&self.user_id, "userId")?;
        let code = match self.code {
            None => CloseCode::Forbidden,
            Some(n) => CloseCode::from_api(n).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "code: {n} is not 1000, 1001, a protocol code or 3000 to 4999"
                ))
            })?,
        };
        let reason = self
            .reason
            .unwrap_or_else(|| "disconnected by the server".into());
        if reason.len() > MAX_REASON {
            return Err(ApiError::BadRequest(format!(
                "reason: at most {MAX_REASON} bytes"
            )));
        }
        let control = Control::Disconnect {
            code: code.code(),
            reason,
        };
        Ok((user, control))
    }
}

impl Membership {
    /// The user and the room, or what is wrong with them.
    pub(super) fn checked(&self) -> Result<(Id, Id), ApiError> {
        Ok((id(&self.user_id, "userId")?, id(&self.room_id, "roomId")?))
    }
}

/// A user and a room.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Membership {
    /// The user whose live sessions act.
    user_id: String,
    /// The room.
    room_id: String,
}

/// Makes a user's live sessions join a room (no join hook; the room is
/// granted to them); each gets a msgType 5 notice.
#[utoipa::path(
    post,
    path = "/api/join",
    tag = "sessions",
    request_body = Membership,
    responses(
        (status = 200, description = "Sent to the user's sessions", body = Instructed),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "Presence cannot be read now"),
    ),
)]
pub(crate) async fn join(
    State(gw): State<Gateway>,
    _: Authorized,
    ApiJson(m): ApiJson<Membership>,
) -> Result<Json<Instructed>, ApiError> {
    let (user, room) = m.checked()?;
    instruct(&gw, user, Control::Join { room }).await
}

/// Makes a user's live sessions leave a room; each member gets a msgType 6
/// notice.
#[utoipa::path(
    post,
    path = "/api/leave",
    tag = "sessions",
    request_body = Membership,
    responses(
        (status = 200, description = "Sent to the user's sessions", body = Instructed),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "Presence cannot be read now"),
    ),
)]
pub(crate) async fn leave(
    State(gw): State<Gateway>,
    _: Authorized,
    ApiJson(m): ApiJson<Membership>,
) -> Result<Json<Instructed>, ApiError> {
    let (user, room) = m.checked()?;
    instruct(&gw, user, Control::Leave { room }).await
}

/// Whose presence.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct PresenceQuery {
    /// The users online in this room...
    room_id: Option<String>,
    /// ...or which of these (comma-separated) are online.
    user_id: Option<String>,
    /// Also list each live session (node, transport, the connect hook's info).
    sessions: Option<bool>,
}

/// One live session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Session {
    /// Its user.
    #[schema(value_type = String)]
    user_id: Id,
    /// The session's id.
    session_id: String,
    /// The node that holds it.
    node_id: String,
    /// `websocket` or `webtransport`.
    transport: String,
    /// The connect hook's opaque info about the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    info: Option<Box<serde_json::value::RawValue>>,
}

/// Users online, across every node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Presence {
    /// Who, sorted.
    #[schema(value_type = Vec<String>)]
    user_ids: Vec<Id>,
    /// How many.
    count: usize,
    /// With `sessions=true`: every live session of those users.
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<Vec<Session>>,
}

/// Who is online in a room, or which of some users are online.
#[utoipa::path(
    get,
    path = "/api/presence",
    tag = "sessions",
    params(PresenceQuery),
    responses(
        (status = 200, description = "Online users", body = Presence),
        (status = 400, description = "Neither roomId nor userId, or a bad id"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "Presence cannot be read now"),
    ),
)]
pub(crate) async fn presence(
    State(gw): State<Gateway>,
    _: Authorized,
    Query(q): Query<PresenceQuery>,
) -> Result<Json<Presence>, ApiError> {
    let users = match (&q.room_id, &q.user_id) {
        (Some(room), _) => gw.broker().room_presence(id(room, "roomId")?).await,
        (None, Some(ids)) => {
            let ids = ids
                .split(',')
                .map(|u| id(u, "userId"))
                .collect::<Result<Vec<_>, _>>()?;
            gw.broker().online(ids).await
        }
        (None, None) => return Err(ApiError::BadRequest("give roomId or userId".into())),
    };
    let mut user_ids = users.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    user_ids.sort();
    user_ids.dedup();
    let sessions = match q.sessions {
        Some(true) => {
            let mut all = gw
                .broker()
                .sessions(user_ids.clone())
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            all.sort_by(|a, b| (&a.user_id, &a.session_id).cmp(&(&b.user_id, &b.session_id)));
            Some(
                all.into_iter()
                    .map(|s| Session {
                        user_id: s.user_id,
                        session_id: s.session_id,
                        node_id: s.node_id,
                        transport: s.transport,
                        info: s.info,
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Json(Presence {
        count: user_ids.len(),
        user_ids,
        sessions,
    }))
}

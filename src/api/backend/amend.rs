//! `POST /api/amend` (protocol §7): a backend edits, deletes or reacts on
//! behalf of a user, or deletes any message as a moderator (no `userId`).
//! The amendment is stored and delivered like one a user's session sends.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{ApiError, Authorized, JsonBytes, parse_id};
use crate::chat::amend::Actor;
use crate::gateway::Gateway;
use crate::protocol::AmendOp;
use crate::protocol::chat::decode_api_amend;

/// An amendment, as the backend sends it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(crate) struct AmendBody {
    /// The message it amends.
    msg_id: String,
    /// `edit`, `delete`, `react` or `unreact`.
    op: String,
    /// An edit's new body.
    #[schema(value_type = Object)]
    msg_body: Option<serde_json::Value>,
    /// A reaction (1 to 16 characters).
    reaction: Option<String>,
    /// The user it acts for; without it, a moderator's delete.
    user_id: Option<String>,
    /// Idempotency key.
    client_msg_id: Option<String>,
}

/// The stored amendment.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Amended {
    /// The amendment's own id.
    msg_id: String,
    /// Its position in the target's channel.
    seq: u64,
    /// When it was accepted.
    ts: u64,
}

/// Edits, deletes or reacts on behalf of a user, or deletes as a moderator.
#[utoipa::path(
    post,
    path = "/api/amend",
    tag = "messages",
    request_body = AmendBody,
    responses(
        (status = 200, description = "Stored and delivered", body = Amended),
        (status = 400, description = "Malformed body, or the target is not a message"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 403, description = "The user may not do this (only a sender edits; a moderator only deletes)"),
        (status = 404, description = "No such message (or retention removed it)"),
        (status = 409, description = "The message was deleted, or has 32 distinct reactions"),
        (status = 503, description = "The store cannot take it now"),
    ),
)]
pub(crate) async fn amend(
    State(gw): State<Gateway>,
    _: Authorized,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Amended>, ApiError> {
    let a = decode_api_amend(&body)?;
    let user: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("userId").and_then(|u| u.as_str().map(str::to_owned)));
    let actor = match user {
        Some(u) => Actor::User(parse_id(&u, "userId")?),
        None if matches!(a.op, AmendOp::Delete) => Actor::Moderator,
        None => {
            return Err(ApiError::BadRequest(
                "userId: required for every op but a moderator's delete".into(),
            ));
        }
    };
    let target = gw.chat().target(&a.target).await?;
    target.allows(&actor, &a.op)?;
    let ack = gw
        .chat()
        .amend(&actor, None, target, a.op, a.client_msg_id)
        .await?;
    Ok(Json(Amended {
        msg_id: ack.msg_id,
        seq: ack.seq,
        ts: ack.ts,
    }))
}

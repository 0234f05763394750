//! The join hook's contract: may this user join this room.

use serde::Serialize;

use super::client::{Answer, HookError};
use super::connect::Refusal;
use crate::protocol::{Id, ProtoError};

/// The body of a join hook call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinRequest<'a> {
    /// Who asks.
    pub(crate) user_id: &'a Id,
    /// The room.
    pub(crate) room_id: &'a Id,
}

/// 200 allows; 403 refuses with the backend's reason (error 403 for the room).
pub(crate) fn decide(answer: Answer, room: &Id) -> Result<Result<(), ProtoError>, HookError> {
    match answer.status {
        200 => Ok(Ok(())),
        403 => Ok(Err(ProtoError::Forbidden(Refusal::of(
            &answer.body,
            &format!("joining room {room} was refused"),
        )))),
        status => Err(HookError::Status(status)),
    }
}

//! A logged-in session's state: who it is, its place in the hub, its rooms,
//! and how far its login replay went in each channel.

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc;

use crate::auth::Identity;
use crate::hub::SessionHandle;
use crate::model::{Channel, OutFrame, SessionId};
use crate::protocol::{Id, ProtoError};

/// A logged-in session's state.
pub(crate) struct LoggedIn {
    /// This session.
    pub(crate) id: SessionId,
    /// Who it is and which rooms it may use.
    pub(crate) identity: Identity,
    /// The hub's handle on it (registered under the user and each room).
    pub(crate) handle: SessionHandle,
    /// Its outbound queue, drained by the driver.
    pub(crate) rx: mpsc::Receiver<OutFrame>,
    /// The rooms it is in.
    pub(crate) rooms: HashSet<Id>,
    /// Per replayed channel, the last seq the replay sent: live frames up to
    /// it were already delivered and are dropped.
    pub(crate) replayed: HashMap<Channel, u64>,
}

impl LoggedIn {
    /// The user.
    pub(crate) fn user(&self) -> &Id {
        &self.identity.user
    }

    /// Whether the credentials allow `room`: the one room-permission check.
    pub(crate) fn may_use(&self, room: &Id) -> Result<(), ProtoError> {
        may_use(&self.identity, room)
    }
}

/// Whether `identity` may join, read or publish to `room`.
pub(crate) fn may_use(identity: &Identity, room: &Id) -> Result<(), ProtoError> {
    if identity.rooms.allows(room) {
        Ok(())
    } else {
        Err(ProtoError::Forbidden(format!(
            "room {room} is not in your token"
        )))
    }
}

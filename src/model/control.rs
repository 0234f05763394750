//! Instructions the server API sends to every live session of a user,
//! wherever it is: they travel as envelopes like messages (so frames queued
//! before them are delivered first) and the session acts on them instead of
//! sending them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Delivery, Envelope, OutFrame, Target};
use crate::protocol::Id;

/// What a session is told to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Control {
    /// Close with this code and reason.
    Disconnect {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Join this room (without the join hook; the room is granted).
    Join {
        /// The room.
        room: Id,
    },
    /// Leave this room.
    Leave {
        /// The room.
        room: Id,
    },
}

impl Control {
    /// The envelope that carries this instruction to every session of `user`.
    pub fn to_user(&self, user: Id) -> Envelope {
        let payload = serde_json::to_vec(self).expect("a control serializes");
        Envelope {
            target: Target::User(user),
            exclude: None,
            frame: OutFrame::new(Bytes::from(payload), Delivery::Control, None),
            trace: None,
        }
    }

    /// The instruction a control frame carries; `None` if it is not one.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_travels_as_a_frame_of_its_own_kind() {
        let c = Control::Join {
            room: Id::parse("lobby").unwrap(),
        };
        let env = c.to_user(Id::parse("ann").unwrap());
        assert_eq!(env.frame.how, Delivery::Control);
        assert_eq!(Control::parse(&env.frame.payload), Some(c));
        assert_eq!(Control::parse(b"{}"), None);
    }
}

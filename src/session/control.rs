//! What a session does with an instruction of the server API
//! ([`Control`]): close with the backend's code and reason, or join or leave
//! a room with the msgType 5/6 notice a client's own join or leave gets.

use tracing::{info, warn};

use super::commands::{enter, leave};
use super::{Driver, Flow};
use crate::auth::RoomGrant;
use crate::model::Control;
use crate::protocol::{CloseCode, Reply};
use crate::transport::Transport;

impl<T: Transport> Driver<T> {
    /// Acts on one control frame from the outbound queue.
    pub(super) async fn on_control(&mut self, payload: &[u8]) -> Flow {
        let Some(control) = Control::parse(payload) else {
            warn!("a control frame that is not one was dropped");
            return Flow::Continue;
        };
        let Some(state) = &mut self.active else {
            return Flow::Continue;
        };
        match control {
            Control::Disconnect { code, reason } => {
                info!(code, %reason, "disconnected through the server API");
                let code = CloseCode::from_api(code).unwrap_or(CloseCode::Forbidden);
                Flow::CloseWith(code, reason)
            }
            Control::Join { room } => {
                // The server's join grants the room to this session.
                if let RoomGrant::Only(set) = &mut state.identity.rooms {
                    set.insert(room.clone());
                }
                let joined = enter(state, &self.gw, room.clone()).await;
                match joined {
                    Ok(seq) => self.reply(Reply::joined(room, seq)).await.into(),
                    Err(e) => self.error(e, None).await.into(),
                }
            }
            Control::Leave { room } => {
                if !state.rooms.contains(&room) {
                    return Flow::Continue;
                }
                leave(state, &self.gw, &room);
                self.reply(Reply::left(room)).await.into()
            }
        }
    }
}

//! The commands of a logged-in session. Each takes the session's state and a
//! request and returns its effects (reply frames in order, and an ack still
//! to come from the store); none touches the socket, so they are tested
//! without one.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::state::LoggedIn;
use crate::gateway::Gateway;
use crate::model::{Channel, now_ms};
use crate::protocol::message::HISTORY;
use crate::protocol::{CloseCode, Command, Destination, Id, ProtoError, Publish, Reply};
use crate::routing::Sent;
use crate::store::{Appended, StoreError};

/// A store append whose ack is still to be sent, with its `clientMsgId`.
pub(crate) type AckFuture = BoxFuture<'static, (Option<String>, Result<Appended, StoreError>)>;

/// What a command asks the driver to do.
#[derive(Default)]
pub(crate) struct Effects {
    /// Frames to send, in order.
    pub(crate) replies: Vec<Reply>,
    /// A stored message's ack, to send once the store has it.
    pub(crate) ack: Option<AckFuture>,
    /// Close the session after the replies.
    pub(crate) close: Option<CloseCode>,
}

impl Effects {
    fn reply(reply: Reply) -> Self {
        Self {
            replies: vec![reply],
            ..Self::default()
        }
    }

    fn error(e: ProtoError, client_msg_id: Option<String>) -> Self {
        Self::reply(Reply::error(&e, client_msg_id))
    }

    fn answer(result: Result<Reply, ProtoError>) -> Self {
        match result {
            Ok(r) => Self::reply(r),
            Err(e) => Self::error(e, None),
        }
    }
}

/// Runs one command of a logged-in session.
pub(crate) async fn handle(s: &mut LoggedIn, gw: &Gateway, cmd: Command) -> Effects {
    match cmd {
        Command::Login(_) => Effects::error(ProtoError::bad("already logged in"), None),
        Command::Heartbeat => Effects::reply(Reply::heartbeat(now_ms())),
        Command::Publish(p) => publish(s, gw, p),
        Command::Cursor { seq } => match gw.store().set_cursor(s.user(), seq).await {
            Ok(()) => Effects::default(),
            Err(e) => Effects::error(e.into(), None),
        },
        Command::Join(room) => Effects::answer(
            join(s, gw, room.clone())
                .await
                .map(|seq| Reply::joined(room, seq)),
        ),
        Command::Leave(room) => {
            leave(s, gw, &room);
            Effects::reply(Reply::left(room))
        }
        Command::History { room, since, limit } => {
            Effects::answer(history(s, gw, room, since, limit).await)
        }
        Command::PresenceRoom(room) => {
            let result = match s.may_use(&room) {
                Ok(()) => gw
                    .broker()
                    .room_presence(room.clone())
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e),
            };
            Effects::answer(result.map(|users| Reply::presence(Some(room), users)))
        }
        Command::Refresh { token } => refresh(s, gw, &token),
        Command::PresenceUsers(users) => Effects::answer(
            gw.broker()
                .online(users)
                .await
                .map(|online| Reply::presence(None, online))
                .map_err(Into::into),
        ),
    }
}

/// A business message: a room message needs membership; the ack follows
/// the store.
fn publish(s: &LoggedIn, gw: &Gateway, p: Publish) -> Effects {
    let cmid = p.client_msg_id.clone();
    let recipient = match &p.to {
        Destination::Room(room) if !s.rooms.contains(room) => {
            let e = ProtoError::Forbidden(format!("not a member of room {room}"));
            return Effects::error(e, cmid);
        }
        Destination::Room(_) => None,
        Destination::User { user, .. } => Some(user),
    };
    if let Err(e) = gw.budgets().message(s.user(), recipient) {
        return Effects::error(e, cmid);
    }
    match gw.publisher().send(s.user().clone(), Some(s.id), p) {
        Sent::Volatile => Effects::default(),
        Sent::Stored(fut) => Effects {
            ack: Some(fut.map(move |r| (cmid, r)).boxed()),
            ..Effects::default()
        },
    }
}

/// New credentials for the session (msgType 10): rooms the new token no
/// longer allows are left (with a msgType 6 notice each), and the answer
/// is the new expiry. A bad token closes 4401, another user's 4403.
fn refresh(s: &mut LoggedIn, gw: &Gateway, token: &str) -> Effects {
    let identity = match gw.auth().refresh(token, s.user()) {
        Ok(id) => id,
        Err(e) => {
            let (err, code) = e.to_protocol();
            return Effects {
                replies: vec![Reply::error(&err, None)],
                close: Some(code),
                ..Effects::default()
            };
        }
    };
    let lost: Vec<Id> = s
        .rooms
        .iter()
        .filter(|r| !identity.rooms.allows(r))
        .cloned()
        .collect();
    s.identity = identity;
    let mut replies = Vec::new();
    for room in lost {
        leave(s, gw, &room);
        replies.push(Reply::left(room));
    }
    replies.push(Reply::expires(s.identity.expires.unwrap_or_default()));
    Effects {
        replies,
        ..Effects::default()
    }
}

/// Joins a room (in the hub, and in the broker's interest when it is this
/// node's first member); answers the room's current seq.
pub(crate) async fn join(s: &mut LoggedIn, gw: &Gateway, room: Id) -> Result<u64, ProtoError> {
    s.may_use(&room)?;
    if !s.rooms.contains(&room) {
        let max_rooms = gw.config().limits.max_rooms;
        if s.rooms.len() >= max_rooms {
            return Err(ProtoError::Conflict(format!(
                "a session may join at most {max_rooms} rooms"
            )));
        }
        s.rooms.insert(room.clone());
        gw.hub().join(&room, s.handle.clone());
        gw.broker().room_joined(&room, s.user());
        // Every joiner waits until the room's messages reach this node, not
        // only the first: a join that reads the room before that could miss
        // messages, so it fails instead.
        if !gw.broker().watch_room(&room).await {
            leave(s, gw, &room);
            return Err(ProtoError::Unavailable(format!(
                "could not subscribe to room {room}; retry"
            )));
        }
    }
    Ok(gw.store().latest(&Channel::Room(room)).await?)
}

/// Leaves a room; the broker stops watching it when this was the node's
/// last member.
pub(crate) fn leave(s: &mut LoggedIn, gw: &Gateway, room: &Id) {
    if s.rooms.remove(room) {
        if gw.hub().leave(room, s.id) {
            gw.broker().unwatch_room(room);
        }
        gw.broker().room_left(room, s.user());
    }
}

async fn history(
    s: &LoggedIn,
    gw: &Gateway,
    room: Option<Id>,
    since: u64,
    limit: u32,
) -> Result<Reply, ProtoError> {
    let channel = match &room {
        Some(r) => {
            s.may_use(r)?;
            Channel::Room(r.clone())
        }
        None => Channel::Inbox(s.user().clone()),
    };
    let page = gw.store().read(&channel, since, limit as usize).await?;
    Ok(Reply {
        msg_type: HISTORY,
        room_id: room,
        seq: Some(page.latest),
        messages: Some(page.messages),
        ..Reply::default()
    })
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;

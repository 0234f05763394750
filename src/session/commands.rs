//! The commands of a logged-in session. Each takes the session's state and a
//! request and returns its effects (reply frames in order, and an ack still
//! to come from the store); none touches the socket, so they are tested
//! without one.

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use super::publish::publish;
use super::state::LoggedIn;
use super::verdicts::{self, Asked, Verdict};
use crate::auth::{AuthError, Identity};
use crate::gateway::Gateway;
use crate::hooks::{ConnectOutcome, ConnectRequest};
use crate::model::{Channel, now_ms};
use crate::protocol::message::HISTORY;
use crate::protocol::{CloseCode, Command, Id, ProtoError, Reply};
use crate::store::Appended;

/// A message on its way to the store (through the publish hook, if one
/// applies) whose ack or error is still to be sent, with its `clientMsgId`.
/// What a command that waited beside the session's loop comes to.
pub(crate) enum Done {
    /// A send: the store's ack, nothing (a volatile message the publish
    /// hook let through), or the error for the sender.
    Ack(Option<String>, Result<Option<Appended>, ProtoError>),
    /// The join hook's verdict on a room; what waited for it goes on.
    Verdict(Verdict),
}

/// Work a command left running beside the session's loop.
pub(crate) type AckFuture = BoxFuture<'static, Done>;

/// What a command asks the driver to do.
#[derive(Default)]
pub(crate) struct Effects {
    /// Frames to send, in order.
    pub(crate) replies: Vec<Reply>,
    /// Work left running: a stored message's ack, to send once the store
    /// has it; a join hook's verdict, to go on with.
    pub(crate) acks: Vec<AckFuture>,
    /// Close the session after the replies.
    pub(crate) close: Option<CloseCode>,
}

impl Effects {
    /// Adds what `other` comes to after this.
    pub(crate) fn merge(&mut self, other: Effects) {
        self.replies.extend(other.replies);
        self.acks.extend(other.acks);
        self.close = self.close.or(other.close);
    }

    fn wait(work: AckFuture) -> Self {
        Self {
            acks: vec![work],
            ..Self::default()
        }
    }

    fn reply(reply: Reply) -> Self {
        Self {
            replies: vec![reply],
            ..Self::default()
        }
    }

    pub(crate) fn error(e: ProtoError, client_msg_id: Option<String>) -> Self {
        Self::reply(Reply::error(&e, client_msg_id))
    }

    pub(crate) fn answer(result: Result<Reply, ProtoError>) -> Self {
        match result {
            Ok(r) => Self::reply(r),
            Err(e) => Self::error(e, None),
        }
    }
}

/// Runs one command of a logged-in session.
pub(crate) async fn handle(s: &mut LoggedIn, gw: &Gateway, cmd: Command) -> Effects {
    // A command about a room whose join hook verdict is pending waits
    // behind it.
    let cmd = match verdicts::hold(s, cmd) {
        Ok(Some(cmd)) => cmd,
        Ok(None) => return Effects::default(),
        Err(e) => return Effects::error(e, None),
    };
    match &cmd {
        Command::Join {
            room,
            presence_events,
        } if verdicts::needs_hook(s, gw, room, false) => {
            let asked = Asked::Join {
                presence_events: *presence_events,
            };
            return Effects::wait(verdicts::ask(s, gw, room.clone(), asked));
        }
        Command::History {
            room: Some(room), ..
        }
        | Command::PresenceRoom(room)
            if verdicts::needs_hook(s, gw, room, true) =>
        {
            let room = room.clone();
            return Effects::wait(verdicts::ask(s, gw, room, Asked::Read(cmd)));
        }
        _ => {}
    }
    match cmd {
        Command::Login(_) => Effects::error(ProtoError::bad("already logged in"), None),
        Command::Heartbeat => Effects::reply(Reply::heartbeat(now_ms())),
        Command::Publish(p) => publish(s, gw, p),
        Command::Cursor { seq } => match gw.store().set_cursor(s.user(), seq).await {
            Ok(()) => Effects::default(),
            Err(e) => Effects::error(e.into(), None),
        },
        Command::Join {
            room,
            presence_events,
        } => {
            let joined = join(s, gw, room.clone()).await;
            if joined.is_ok() && presence_events {
                s.want_presence(&room);
            }
            Effects::answer(joined.map(|seq| Reply::joined(room, seq)))
        }
        Command::Leave(room) => {
            leave(s, gw, &room);
            Effects::reply(Reply::left(room))
        }
        Command::History {
            room,
            since,
            limit,
            latest_view,
        } => Effects::answer(history(s, gw, room, since, limit, latest_view).await),
        Command::Receipt(r) => super::chat::receipt(s, gw, r).await,
        Command::ReadState { room, after, limit } => {
            super::chat::read_state(s, gw, room, after, limit).await
        }
        Command::Amend(a) => super::chat::amend(s, gw, a).await,
        Command::Typing { to, typing } => super::chat::typing(s, gw, to, typing),
        Command::Push { address, remove } => Effects::answer(
            gw.push()
                .register(s.user(), address, remove)
                .await
                .map(|()| Reply {
                    msg_type: crate::protocol::message::PUSH,
                    ..Reply::default()
                }),
        ),
        Command::PresenceRoom(room) => {
            let result = match may_read(s, gw, &room).await {
                Ok(()) => gw
                    .broker()
                    .room_presence(room.clone())
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e),
            };
            Effects::answer(result.map(|users| Reply::presence(Some(room), users)))
        }
        Command::Refresh { token } => refresh(s, gw, &token).await,
        Command::PresenceUsers(users) => Effects::answer(
            gw.broker()
                .online(users)
                .await
                .map(|online| Reply::presence(None, online))
                .map_err(Into::into),
        ),
    }
}

/// New credentials for the session (msgType 10): rooms the new token no
/// longer allows are left (with a msgType 6 notice each), and the answer
/// is the new expiry. A bad token closes 4401, another user's 4403; a
/// connect hook that cannot answer is a 503 and the old expiry stands.
async fn refresh(s: &mut LoggedIn, gw: &Gateway, token: &str) -> Effects {
    let identity = match renewed(s, gw, token).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            let (err, code) = e.to_protocol();
            return Effects {
                replies: vec![Reply::error(&err, None)],
                close: Some(code),
                ..Effects::default()
            };
        }
        Err(e) => return Effects::error(e, None),
    };
    // An older token, still valid, would bring back rooms a newer one took
    // away and move the expiry backwards.
    if let (Some(now), Some(new)) = (s.identity.expires, identity.expires)
        && new < now
    {
        let e = ProtoError::bad(format!(
            "this token expires at {new}, before the session's current credentials ({now}); \
             refresh with a newer one"
        ));
        return Effects::error(e, None);
    }
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

/// The identity a refresh token gives: from the connect hook when one is
/// configured (it must answer the same user), else from the authenticator.
async fn renewed(
    s: &LoggedIn,
    gw: &Gateway,
    token: &str,
) -> Result<Result<Identity, AuthError>, ProtoError> {
    if gw.hooks().has_connect() {
        let frame = serde_json::json!({ "msgType": 10, "token": token }).to_string();
        let login: &RawValue = serde_json::from_str(&frame).expect("JSON we just wrote");
        let req = ConnectRequest {
            transport: None,
            client_addr: None,
            login,
            token: Some(token),
            cookie: None,
            origin: None,
            authorization: None,
            path_user_id: None,
            user_id: Some(s.user()),
            refresh: true,
        };
        match gw.hooks().connect(&req).await {
            ConnectOutcome::Accepted(c) if c.identity.user == *s.user() => {
                return Ok(Ok(c.identity));
            }
            ConnectOutcome::Accepted(_) => {
                return Ok(Err(AuthError::Forbidden(
                    "the connect hook answered another user".into(),
                )));
            }
            ConnectOutcome::Refused(e) => return Ok(Err(e)),
            ConnectOutcome::Unavailable(reason) => return Err(ProtoError::Unavailable(reason)),
            ConnectOutcome::Builtin => {}
        }
    }
    Ok(gw.auth().refresh(token, s.user()))
}

/// Whether the session may read `room` (its history, presence, replay):
/// the right to join it. The credentials must allow it, and unless the
/// session is in the room, the join hook, if any, must agree; its answer
/// is cached for a short time.
pub(crate) async fn may_read(s: &mut LoggedIn, gw: &Gateway, room: &Id) -> Result<(), ProtoError> {
    s.may_use(room)?;
    if s.rooms.contains(room) || !gw.hooks().has_join() {
        return Ok(());
    }
    let now = std::time::Instant::now();
    let forbidden =
        || ProtoError::Forbidden(format!("the backend does not let you read room {room}"));
    match s.occasional().read_grants.get(room, now) {
        Some(true) => return Ok(()),
        Some(false) => return Err(forbidden()),
        None => {}
    }
    match gw.hooks().join(s.user(), room).await {
        Ok(()) => {
            s.occasional().read_grants.put(room.clone(), true, now);
            Ok(())
        }
        // A refusal is the backend's decision and is kept; a failure is not.
        Err(e) if e.code() == 403 => {
            s.occasional().read_grants.put(room.clone(), false, now);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Joins a room the client asked for: the credentials must allow it and
/// the join hook, if any, must agree. Answers the room's current seq.
pub(crate) async fn join(s: &mut LoggedIn, gw: &Gateway, room: Id) -> Result<u64, ProtoError> {
    s.may_use(&room)?;
    if !s.rooms.contains(&room) {
        gw.hooks().join(s.user(), &room).await?;
    }
    enter(s, gw, room).await
}

/// Joins a room (in the hub, and in the broker's interest when it is this
/// node's first member) without asking: rooms the backend chose, or the
/// client's once checked. Answers the room's current seq.
pub(crate) async fn enter(s: &mut LoggedIn, gw: &Gateway, room: Id) -> Result<u64, ProtoError> {
    if !s.rooms.contains(&room) {
        let max_rooms = gw.config().limits.max_rooms;
        if s.rooms.len() >= max_rooms {
            return Err(ProtoError::Conflict(format!(
                "a session may join at most {max_rooms} rooms"
            )));
        }
        s.rooms.insert(room.clone());
        gw.hub().join(&room, s.handle.clone());
        // Every joiner waits until the room's messages reach this node, not
        // only the first: a join that reads the room before that could miss
        // messages, so it fails instead.
        if !gw.broker().watch_room(&room).await {
            leave(s, gw, &room);
            return Err(ProtoError::Unavailable(format!(
                "could not subscribe to room {room}; retry"
            )));
        }
        // Announced once the room's envelopes reach this node, so that its
        // own presence event does too.
        gw.broker()
            .room_joined(&room, s.user(), s.identity.info.as_deref());
    }
    Ok(gw.store().latest(&Channel::Room(room)).await?)
}

/// Leaves a room; the broker stops watching it when this was the node's
/// last member.
pub(crate) fn leave(s: &mut LoggedIn, gw: &Gateway, room: &Id) {
    if s.rooms.remove(room) {
        if gw.hub().leave(room, s.id()) {
            gw.broker().unwatch_room(room);
        }
        gw.broker()
            .room_left(room, s.user(), s.identity.info.as_deref());
        s.drop_presence(room);
    }
}

async fn history(
    s: &mut LoggedIn,
    gw: &Gateway,
    room: Option<Id>,
    since: u64,
    limit: u32,
    latest_view: bool,
) -> Result<Reply, ProtoError> {
    let channel = match &room {
        Some(r) => {
            may_read(s, gw, r).await?;
            Channel::Room(r.clone())
        }
        None => Channel::Inbox(s.user().clone()),
    };
    let (latest, messages) = match latest_view {
        true => {
            gw.chat()
                .latest_view(&channel, since, limit as usize)
                .await?
        }
        false => {
            let page = gw.store().read(&channel, since, limit as usize).await?;
            (page.latest, page.messages)
        }
    };
    Ok(Reply {
        msg_type: HISTORY,
        room_id: room,
        seq: Some(latest),
        messages: Some(messages),
        ..Reply::default()
    })
}

#[cfg(test)]
#[path = "commands_tests.rs"]
pub(super) mod tests;

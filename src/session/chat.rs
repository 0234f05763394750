//! A session's chat commands (msgTypes 12 to 15): receipts, read state,
//! amendments and typing, with the session's rights checked (membership,
//! the right to read a room) before [`crate::chat`] does the work.

use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::commands::{Done, Effects, may_read};
use super::state::LoggedIn;
use crate::chat::amend::Actor;
use crate::gateway::Gateway;
use crate::protocol::message::READ_STATE;
use crate::protocol::{Amend, AmendOp, Destination, Id, ProtoError, Publish, Receipt, Reply};

/// At most one typing notice per destination per session in this time.
const TYPING_EVERY: Duration = Duration::from_secs(1);

/// msgType 12: receipts of inbox messages, or a room read position.
pub(super) async fn receipt(s: &mut LoggedIn, gw: &Gateway, r: Receipt) -> Effects {
    let done = match r {
        Receipt::Messages { kind, msg_ids } => {
            gw.chat().receipt(s.user(), s.id(), kind, msg_ids).await
        }
        Receipt::Room { room, seq } => match may_read(s, gw, &room).await {
            Ok(()) => {
                gw.chat().read_room(s.user(), Some(s.id()), &room, seq);
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    match done {
        Ok(()) => Effects::default(),
        Err(e) => Effects::error(e, None),
    }
}

/// msgType 13: a room's read positions and the caller's unread count
/// there, or the caller's unread counts everywhere.
pub(super) async fn read_state(
    s: &mut LoggedIn,
    gw: &Gateway,
    room: Option<Id>,
    after: Option<String>,
    limit: usize,
) -> Effects {
    let answer = async {
        let Some(room) = room else {
            let unread = gw
                .chat()
                .unread(s.user(), s.rooms.iter().cloned(), true)
                .await?;
            return Ok(Reply {
                msg_type: READ_STATE,
                unread: Some(serde_json::to_value(unread).unwrap_or_default()),
                ..Reply::default()
            });
        };
        may_read(s, gw, &room).await?;
        let (reads, next) = gw.chat().room_reads(&room, after, limit).await?;
        let unread = gw.chat().unread(s.user(), [room.clone()], false).await?;
        let n = unread.rooms.get(&room).copied().unwrap_or(0);
        Ok(Reply {
            msg_type: READ_STATE,
            room_id: Some(room),
            reads: Some(reads),
            unread: Some(n.into()),
            next,
            ..Reply::default()
        })
    };
    Effects::answer(answer.await)
}

/// msgType 14: an amendment. The target must exist, the session must be
/// allowed to read its room, and only a message's sender edits or deletes
/// it; an edit passes the publish hook like a message. Acked like one.
pub(super) async fn amend(s: &mut LoggedIn, gw: &Gateway, a: Amend) -> Effects {
    let cmid = a.client_msg_id.clone();
    let actor = Actor::User(s.user().clone());
    // An amendment is stored like a message: it spends the user's budget.
    if let Err(e) = gw.budgets().message(s.user(), None) {
        return Effects::error(e, cmid);
    }
    let checked = async {
        let target = gw.chat().target(&a.target).await?;
        if let Some(room) = target.room() {
            may_read(s, gw, &room.clone()).await?;
        }
        target.allows(&actor, &a.op)?;
        Ok::<_, ProtoError>(target)
    };
    let target = match checked.await {
        Ok(t) => t,
        Err(e) => return Effects::error(e, cmid),
    };
    let (gw2, origin, user) = (gw.clone(), s.id(), s.user().clone());
    let work = async move {
        let mut op = a.op;
        if let AmendOp::Edit(body) = &mut op {
            // The publish hook sees an edit as the message it makes.
            let to = match (&target.message.received_user_id, target.room()) {
                (Some(u), _) => Destination::User {
                    user: u.clone(),
                    context: target.message.room_id.clone(),
                },
                (None, Some(r)) => Destination::Room(r.clone()),
                (None, None) => Destination::User {
                    user: user.clone(),
                    context: None,
                },
            };
            let mut p = Publish {
                msg_type: crate::protocol::message::AMEND,
                to,
                biz_type: None,
                biz_opt_module: None,
                body: Some(body.clone()),
                client_msg_id: cmid.clone(),
                volatile: false,
                latest: None,
            };
            if gw2.hooks().publish_applies(&p) {
                if let Err(e) = gw2.hooks().publish(Some(&user), &mut p).await {
                    return Done::Ack(cmid, Err(e));
                }
                if let Some(b) = p.body {
                    *body = b;
                }
            }
        }
        let acked = gw2
            .chat()
            .amend(&actor, Some(origin), target, op, cmid.clone())
            .await;
        Done::Ack(cmid, acked.map(Some))
    };
    Effects {
        acks: vec![work.boxed()],
        ..Effects::default()
    }
}

/// msgType 15: a typing notice, volatile; a room needs membership; more
/// than one a second per destination is dropped silently.
pub(super) fn typing(s: &mut LoggedIn, gw: &Gateway, to: Destination, typing: bool) -> Effects {
    if let Destination::Room(room) = &to
        && !s.rooms.contains(room)
    {
        return Effects::error(
            ProtoError::Forbidden(format!("not a member of room {room}")),
            None,
        );
    }
    let now = Instant::now();
    s.occasional()
        .typing
        .retain(|(_, at)| now.duration_since(*at) < TYPING_EVERY);
    if s.occasional().typing.iter().any(|(d, _)| *d == to) {
        return Effects::default();
    }
    s.occasional().typing.push((to.clone(), now));
    gw.chat().typing(s.user(), s.id(), &to, typing);
    Effects::default()
}

//! A session's business messages on their way: membership and budgets
//! checked, the publish hook asked where it applies (in the session's
//! order for stored messages), then the store, whose ack comes back to the
//! session's loop as a [`Done::Ack`].

use futures_util::FutureExt;
use tracing::Instrument;

use super::commands::{AckFuture, Done, Effects};
use super::state::LoggedIn;
use crate::gateway::Gateway;
use crate::protocol::{Destination, ProtoError, Publish};
use crate::routing::Sent;
use crate::telemetry::otel;

/// A business message: a room message needs membership; the ack follows
/// the store. A message the publish hook must see goes to the store after
/// the hook's answer, and so does every later message of the session until
/// it has: the store receives a session's messages in the order sent.
pub(super) fn publish(s: &mut LoggedIn, gw: &Gateway, p: Publish) -> Effects {
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
    // With traces exported, the message's trace starts here: the hook
    // call, the store and every delivery (on any node) are its spans.
    let span = tracing::trace_span!(
        target: otel::TARGET,
        "message.accept",
        user = %s.user(),
        msg_type = p.msg_type,
        volatile = p.volatile,
    );
    let hooked = gw.hooks().publish_applies(&p);
    if p.volatile && hooked {
        return Effects {
            acks: vec![traced(volatile_after_hook(s, gw, p), span)],
            ..Effects::default()
        };
    }
    if !p.volatile && (hooked || s.turns.busy()) {
        return Effects {
            acks: vec![traced(publish_after_hook(s, gw, p, hooked), span)],
            ..Effects::default()
        };
    }
    let room = match &p.to {
        Destination::Room(room) if !p.volatile => Some(room.clone()),
        _ => None,
    };
    let sent = span.in_scope(|| gw.publisher().send(s.user().clone(), Some(s.id()), p));
    match sent {
        Sent::Volatile => Effects::default(),
        Sent::Stored(fut) => {
            let (gw, user) = (gw.clone(), s.user().clone());
            let fut = fut.map(move |r| {
                if let (Ok(a), Some(room)) = (&r, room) {
                    gw.chat().sent_to_room(&user, &room, a.seq);
                }
                Done::Ack(cmid, r.map(Some).map_err(Into::into))
            });
            Effects {
                acks: vec![traced(fut.boxed(), span)],
                ..Effects::default()
            }
        }
    }
}

/// The ack inside the message's span (which so lasts until the ack), when
/// traces are exported.
fn traced(ack: AckFuture, span: tracing::Span) -> AckFuture {
    match span.is_disabled() {
        true => ack,
        false => ack.instrument(span).boxed(),
    }
}

/// The publish hook's answer (if `hooked`), then the store, in the
/// session's order: the message waits for the one sent before it to reach
/// the store (or be refused) before it is handed over itself.
fn publish_after_hook(s: &mut LoggedIn, gw: &Gateway, mut p: Publish, hooked: bool) -> AckFuture {
    let (turn, previous) = s.turns.next();
    let hooks = gw.hooks().clone();
    let publisher = gw.publisher().clone();
    let user = s.user().clone();
    let origin = s.id();
    let gw = gw.clone();
    async move {
        let cmid = p.client_msg_id.clone();
        let room = match &p.to {
            Destination::Room(room) => Some(room.clone()),
            Destination::User { .. } => None,
        };
        let verdict = match hooked {
            true => hooks.publish(Some(&user), &mut p).await,
            false => Ok(()),
        };
        previous.wait().await;
        let sent = verdict.map(|()| publisher.send(user.clone(), Some(origin), p));
        // Handed to the store (or refused): the next message may go.
        drop(turn);
        match sent {
            Ok(Sent::Stored(fut)) => {
                let r = fut.await;
                if let (Ok(a), Some(room)) = (&r, room) {
                    gw.chat().sent_to_room(&user, &room, a.seq);
                }
                Done::Ack(cmid, r.map(Some).map_err(Into::into))
            }
            Ok(Sent::Volatile) => unreachable!("volatile messages take volatile_after_hook"),
            Err(e) => Done::Ack(cmid, Err(e)),
        }
    }
    .boxed()
}

/// A volatile message the publish hook must see (`--publish-hook-volatile`):
/// sent once the hook lets it through, not at all when it refuses (an
/// error to the sender). Volatile messages keep no order with stored ones,
/// so it does not wait for the session's turn.
fn volatile_after_hook(s: &LoggedIn, gw: &Gateway, mut p: Publish) -> AckFuture {
    let hooks = gw.hooks().clone();
    let publisher = gw.publisher().clone();
    let user = s.user().clone();
    let origin = s.id();
    async move {
        let cmid = p.client_msg_id.clone();
        if let Err(e) = hooks.publish(Some(&user), &mut p).await {
            return Done::Ack(cmid, Err(e));
        }
        match publisher.send(user, Some(origin), p) {
            Sent::Volatile => Done::Ack(cmid, Ok(None)),
            Sent::Stored(_) => unreachable!("a volatile message is not stored"),
        }
    }
    .boxed()
}

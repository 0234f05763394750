//! Join hook calls that never stall a session: a command that needs the
//! join hook's verdict (joining a room, or reading one the session is not
//! in) does not wait for it in the session's loop. The call runs beside the
//! loop, which meanwhile answers heartbeats, direct messages and everything
//! else; later commands about the same room wait behind the verdict, so a
//! client that sends a join and then a message to the room keeps its order.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use futures_util::FutureExt;

use super::commands::{AckFuture, Done, Effects, enter};
use super::state::LoggedIn;
use crate::gateway::Gateway;
use crate::protocol::{Command, Destination, Id, ProtoError, Reply};

/// Commands that may wait behind verdicts, in all, per session; past it a
/// command about a room whose verdict is pending is refused 503.
const WAITING_MAX: usize = 64;

/// What a pending verdict was asked for.
pub(crate) enum Asked {
    /// A join (with presence events when asked).
    Join { presence_events: bool },
    /// A command that reads the room (history, presence): it runs again
    /// once the verdict is cached.
    Read(Command),
}

/// The join hook's answer for a room, and what it was asked for.
pub(crate) struct Verdict {
    room: Id,
    asked: Asked,
    result: Result<(), ProtoError>,
}

/// Rooms whose verdict is pending, with the commands waiting behind each.
#[derive(Default)]
pub(crate) struct Pending(HashMap<Id, VecDeque<Command>>);

impl Pending {
    /// Whether a verdict about `room` is on its way.
    pub(crate) fn about(&self, room: &Id) -> bool {
        self.0.contains_key(room)
    }

    fn waiting(&self) -> usize {
        self.0.values().map(VecDeque::len).sum()
    }
}

/// The room a command is about, if any.
fn room_of(cmd: &Command) -> Option<&Id> {
    match cmd {
        Command::Join { room, .. }
        | Command::Leave(room)
        | Command::PresenceRoom(room)
        | Command::History {
            room: Some(room), ..
        }
        | Command::ReadState {
            room: Some(room), ..
        }
        | Command::Receipt(crate::protocol::Receipt::Room { room, .. }) => Some(room),
        Command::Publish(crate::protocol::Publish { to, .. }) | Command::Typing { to, .. } => {
            match to {
                Destination::Room(room) => Some(room),
                Destination::User { .. } => None,
            }
        }
        _ => None,
    }
}

/// Holds `cmd` back if a verdict about its room is pending: `Ok(None)`
/// when it now waits, `Ok(Some(cmd))` to run it now.
pub(crate) fn hold(s: &mut LoggedIn, cmd: Command) -> Result<Option<Command>, ProtoError> {
    let Some(room) = room_of(&cmd) else {
        return Ok(Some(cmd));
    };
    if !s.verdict_pending(room) {
        return Ok(Some(cmd));
    }
    if s.occasional().pending.waiting() >= WAITING_MAX {
        return Err(ProtoError::Unavailable(
            "too many commands waiting for the backend's answer about a room; retry".into(),
        ));
    }
    let room = room.clone();
    s.occasional()
        .pending
        .0
        .get_mut(&room)
        .expect("checked")
        .push_back(cmd);
    Ok(None)
}

/// Whether asking about `room` needs the join hook: the session is not in
/// it, a join hook is set, and (for reading) no fresh answer is cached.
pub(crate) fn needs_hook(s: &mut LoggedIn, gw: &Gateway, room: &Id, reading: bool) -> bool {
    if s.rooms.contains(room) || !gw.hooks().has_join() || s.may_use(room).is_err() {
        return false;
    }
    !reading
        || s.occasional()
            .read_grants
            .get(room, Instant::now())
            .is_none()
}

/// Asks the join hook about `room` beside the session's loop: the answer
/// comes back as [`Done::Verdict`].
pub(crate) fn ask(s: &mut LoggedIn, gw: &Gateway, room: Id, asked: Asked) -> AckFuture {
    s.occasional().pending.0.entry(room.clone()).or_default();
    let hooks = gw.hooks().clone();
    let user = s.user().clone();
    async move {
        let result = hooks.join(&user, &room).await;
        Done::Verdict(Verdict {
            room,
            asked,
            result,
        })
    }
    .boxed()
}

/// Goes on with what waited for a verdict, then with the commands held
/// behind it, in order; answers what all of it comes to.
pub(crate) async fn resume(s: &mut LoggedIn, gw: &Gateway, v: Verdict) -> Effects {
    let Verdict {
        room,
        asked,
        result,
    } = v;
    let now = Instant::now();
    // A refusal is the backend's decision and is kept; a failure is not.
    match &result {
        Ok(()) => s.occasional().read_grants.put(room.clone(), true, now),
        Err(e) if e.code() == 403 => s.occasional().read_grants.put(room.clone(), false, now),
        Err(_) => {}
    }
    let mut out = match (asked, result) {
        (Asked::Join { presence_events }, Ok(())) => {
            let joined = enter(s, gw, room.clone()).await;
            if joined.is_ok() && presence_events {
                s.want_presence(&room);
            }
            Effects::answer(joined.map(|seq| Reply::joined(room.clone(), seq)))
        }
        (Asked::Join { .. }, Err(e)) => Effects::error(e, None),
        (Asked::Read(cmd), Ok(())) => Box::pin(super::commands::handle(s, gw, cmd)).await,
        (Asked::Read(_), Err(e)) => Effects::error(e, None),
    };
    let held = s.occasional().pending.0.remove(&room).unwrap_or_default();
    for cmd in held {
        // A held command may ask again (a read after a failed join): then
        // the rest wait behind that answer.
        if s.verdict_pending(&room) {
            s.occasional()
                .pending
                .0
                .get_mut(&room)
                .expect("checked")
                .push_back(cmd);
            continue;
        }
        out.merge(Box::pin(super::commands::handle(s, gw, cmd)).await);
    }
    out
}

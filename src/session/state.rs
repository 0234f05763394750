//! A logged-in session's state: who it is, its place in the hub, its rooms
//! and the order of its messages on their way to the store.

use std::collections::HashSet;

use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::hub::{SessionHandle, queue};
use crate::model::{OutFrame, SessionId};
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
    pub(crate) rx: queue::Receiver<OutFrame>,
    /// The rooms it is in.
    pub(crate) rooms: HashSet<Id>,
    /// The order of its messages on their way to the store.
    pub(crate) turns: Turns,
    /// Rooms whose presence events (msgType 11) it asked for.
    pub(crate) presence_rooms: Vec<Id>,
    /// What only some sessions use, allocated by the first use: an idle
    /// session's task does not carry it.
    occasional: Option<Box<Occasional>>,
}

/// A logged-in session's state that most sessions never touch.
#[derive(Default)]
pub(crate) struct Occasional {
    /// The join hook's recent answers for rooms it reads without being in
    /// them (history, presence, replay).
    pub(crate) read_grants: ReadGrants,
    /// Rooms whose join hook verdict is on its way, and the commands
    /// waiting behind each.
    pub(crate) pending: super::verdicts::Pending,
    /// When it last sent a typing notice, per destination (at most one a
    /// second each).
    pub(crate) typing: Vec<(crate::protocol::Destination, std::time::Instant)>,
}

/// How long a join hook's answer about reading a room holds.
const READ_GRANT_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Answers kept at most (the oldest goes first).
const READ_GRANTS_KEPT: usize = 16;

/// A session's cache of the join hook's answers about rooms it reads but
/// is not in: reading a room needs the right to join it, and a client that
/// pages through history must not cost a hook call per page.
#[derive(Default)]
pub(crate) struct ReadGrants(Vec<(Id, std::time::Instant, bool)>);

impl ReadGrants {
    /// The cached answer for `room`, if still fresh.
    pub(crate) fn get(&mut self, room: &Id, now: std::time::Instant) -> Option<bool> {
        self.0
            .retain(|(_, at, _)| now.duration_since(*at) < READ_GRANT_TTL);
        self.0
            .iter()
            .find(|(r, _, _)| r == room)
            .map(|(_, _, ok)| *ok)
    }

    /// Keeps the hook's answer for `room`.
    pub(crate) fn put(&mut self, room: Id, allowed: bool, now: std::time::Instant) {
        self.0.retain(|(r, _, _)| *r != room);
        if self.0.len() >= READ_GRANTS_KEPT {
            self.0.remove(0);
        }
        self.0.push((room, now, allowed));
    }
}

/// Keeps a session's messages in order on their way to the store when some
/// wait for the publish hook: each waits for the one before it to be
/// handed to the store (or refused) before it goes itself.
#[derive(Default)]
pub(crate) struct Turns {
    /// Resolves (its sender dropped) when the last message that waits has
    /// gone to the store.
    last: Option<oneshot::Receiver<()>>,
}

/// A message's place in [`Turns`]: dropped once it has gone to the store.
pub(crate) struct Turn {
    _done: oneshot::Sender<()>,
}

/// The turn of the message before.
pub(crate) struct Previous(Option<oneshot::Receiver<()>>);

impl Previous {
    /// Waits until the message before has gone to the store.
    pub(crate) async fn wait(self) {
        if let Some(rx) = self.0 {
            let _ = rx.await;
        }
    }
}

impl Turns {
    /// True while a message that waits has not yet gone to the store: a new
    /// message must then wait too.
    pub(crate) fn busy(&mut self) -> bool {
        let busy = self
            .last
            .as_mut()
            .is_some_and(|rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        if !busy {
            self.last = None;
        }
        busy
    }

    /// A new message's turn, and the turn it waits for.
    pub(crate) fn next(&mut self) -> (Turn, Previous) {
        let (tx, rx) = oneshot::channel();
        (Turn { _done: tx }, Previous(self.last.replace(rx)))
    }
}

impl LoggedIn {
    /// A session just logged in: in no room yet.
    pub(crate) fn new(
        id: SessionId,
        identity: Identity,
        handle: SessionHandle,
        rx: queue::Receiver<OutFrame>,
    ) -> Self {
        Self {
            id,
            identity,
            handle,
            rx,
            rooms: HashSet::new(),
            turns: Turns::default(),
            presence_rooms: Vec::new(),
            occasional: None,
        }
    }

    /// The state few sessions use, allocated now if it was not.
    pub(crate) fn occasional(&mut self) -> &mut Occasional {
        self.occasional.get_or_insert_default()
    }

    /// Whether a join hook verdict about `room` is on its way.
    pub(crate) fn verdict_pending(&self, room: &Id) -> bool {
        self.occasional
            .as_ref()
            .is_some_and(|o| o.pending.about(room))
    }

    /// The user.
    pub(crate) fn user(&self) -> &Id {
        &self.identity.user
    }

    /// Sends `room`'s presence events on from now.
    pub(crate) fn want_presence(&mut self, room: &Id) {
        if !self.presence_rooms.contains(room) {
            self.presence_rooms.push(room.clone());
        }
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

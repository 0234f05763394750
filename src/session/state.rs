//! A logged-in session's state: who it is, its place in the hub, its rooms
//! and the order of its messages on their way to the store.

use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::hub::{SessionHandle, queue};
use crate::model::{OutFrame, SessionId};
use crate::protocol::{Id, ProtoError};

/// A logged-in session's state.
pub(crate) struct LoggedIn {
    /// Who it is and which rooms it may use.
    pub(crate) identity: Identity,
    /// The hub's handle on it (registered under the user and each room),
    /// which holds its id.
    pub(crate) handle: SessionHandle,
    /// Its outbound queue, drained by the driver.
    pub(crate) rx: queue::Receiver<OutFrame>,
    /// The rooms it is in.
    pub(crate) rooms: RoomSet,
    /// The order of its messages on their way to the store.
    pub(crate) turns: Turns,
    /// What only some sessions use, allocated by the first use: an idle
    /// session's task does not carry it.
    occasional: Option<Box<Occasional>>,
}

/// A logged-in session's state that most sessions never touch.
#[derive(Default)]
pub(crate) struct Occasional {
    /// Rooms whose presence events (msgType 11) it asked for.
    pub(crate) presence_rooms: Vec<Id>,
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
        identity: Identity,
        handle: SessionHandle,
        rx: queue::Receiver<OutFrame>,
    ) -> Self {
        Self {
            identity,
            handle,
            rx,
            rooms: RoomSet::default(),
            turns: Turns::default(),
            occasional: None,
        }
    }

    /// This session's id.
    pub(crate) fn id(&self) -> SessionId {
        self.handle.id
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
        let rooms = &mut self.occasional().presence_rooms;
        if !rooms.contains(room) {
            rooms.push(room.clone());
        }
    }

    /// No more of `room`'s presence events (it left the room).
    pub(crate) fn drop_presence(&mut self, room: &Id) {
        if let Some(o) = &mut self.occasional {
            o.presence_rooms.retain(|r| r != room);
        }
    }

    /// The rooms whose presence events it asked for.
    pub(crate) fn presence_rooms(&self) -> &[Id] {
        self.occasional
            .as_deref()
            .map_or(&[], |o| o.presence_rooms.as_slice())
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

/// The rooms a session is in, as a sorted list: 24 bytes in every idle
/// session's task where a `HashSet` (with its random keys) took 48. A
/// session is in at most `--max-rooms` rooms (64 by default), so a binary
/// search finds one as fast as a hash would.
#[derive(Debug, Default)]
pub(crate) struct RoomSet(Vec<Id>);

impl RoomSet {
    /// Whether the session is in `room`.
    pub(crate) fn contains(&self, room: &Id) -> bool {
        self.0.binary_search(room).is_ok()
    }

    /// Adds `room`; false if it was there.
    pub(crate) fn insert(&mut self, room: Id) -> bool {
        match self.0.binary_search(&room) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, room);
                true
            }
        }
    }

    /// Removes `room`; false if it was not there.
    pub(crate) fn remove(&mut self, room: &Id) -> bool {
        match self.0.binary_search(room) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// How many rooms.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The rooms, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Id> {
        self.0.iter()
    }

    /// The rooms, taken.
    pub(crate) fn into_vec(self) -> Vec<Id> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).expect("a valid id")
    }

    #[test]
    fn a_room_set_holds_each_room_once_in_order() {
        let mut set = RoomSet::default();
        for room in ["b", "a", "c", "a"] {
            set.insert(id(room));
        }
        assert_eq!(set.len(), 3);
        let rooms: Vec<&str> = set.iter().map(|r| r.as_str()).collect();
        assert_eq!(rooms, ["a", "b", "c"]);
        assert!(set.contains(&id("b")));
        assert!(set.remove(&id("b")));
        assert!(!set.remove(&id("b")));
        assert!(!set.contains(&id("b")));
        assert_eq!(set.into_vec(), [id("a"), id("c")]);
    }
}

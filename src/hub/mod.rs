//! The routing hub of one node: which local sessions belong to which user and
//! which room, and fan-out of an envelope to them without ever waiting on a
//! slow peer. It never names a transport; sessions are reached through their
//! bounded outbound queues, and volatile frames through a session's
//! [`DirectSend`] when its transport has one (no wake of its task) and
//! nothing in its queue would be overtaken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll};

use dashmap::DashMap;
use futures_util::task::AtomicWaker;

mod members;
pub mod queue;
pub mod reached;

use members::Members;

use crate::model::presence::{SessionInfo, SessionMeta};
use crate::model::{Delivery, DirectSend, Envelope, OutFrame, Sent, SessionId, Target};
use crate::protocol::{CloseCode, Id};
use crate::telemetry::otel;

/// Tells a session to close itself, from any thread, without waiting: the
/// first code asked for is kept and the session's task is woken.
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    /// The session's task, registered while it waits.
    waker: AtomicWaker,
    /// What presence answers tell about the session.
    pub meta: SessionMeta,
}

impl Closer {
    /// A closer that also carries what presence tells about the session.
    pub fn described(meta: SessionMeta) -> Self {
        Self {
            meta,
            ..Self::default()
        }
    }

    /// Asks the session to close with `code`; the first request wins.
    pub fn close(&self, code: CloseCode) {
        let _ = self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    /// Ready with the requested code once a close was asked for; until
    /// then, `cx` is woken by the request.
    pub fn poll_requested(&self, cx: &mut Context<'_>) -> Poll<CloseCode> {
        self.waker.register(cx.waker());
        match self.requested_code() {
            Some(code) => Poll::Ready(code),
            None => Poll::Pending,
        }
    }

    /// The requested close code, if a close was requested through this closer.
    pub fn requested_code(&self) -> Option<CloseCode> {
        (self.code.load(Ordering::Acquire) != 0).then(|| self.code())
    }

    /// The requested close code.
    pub fn code(&self) -> CloseCode {
        match self.code.load(Ordering::Acquire) {
            4008 => CloseCode::SlowConsumer,
            1001 => CloseCode::GoingAway,
            4429 => CloseCode::RateLimited,
            4408 => CloseCode::Timeout,
            _ => CloseCode::Normal,
        }
    }
}

/// The hub's handle on one local session: cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The session.
    pub id: SessionId,
    /// Its user.
    pub user: Id,
    /// Its bounded outbound queue.
    pub tx: queue::Sender<OutFrame>,
    /// How to make it close.
    pub closer: Arc<Closer>,
    /// Where its volatile frames go without its queue, if its transport
    /// has such a way (WebTransport datagrams, a plain WebSocket's socket).
    pub direct: Option<Arc<dyn DirectSend>>,
}

impl SessionHandle {
    /// Hands a frame over without waiting: a volatile one through the
    /// session's direct way when it has one (an ordered one only while
    /// nothing in the queue would be overtaken), anything else through the
    /// queue. A full queue closes the session as a slow consumer (its
    /// messages stay in the store for replay).
    pub fn offer(&self, frame: OutFrame) -> Offer {
        if frame.how == Delivery::Volatile
            && let Some(direct) = &self.direct
            && (!direct.ordered() || self.tx.is_empty())
            && direct.send_volatile(&frame.payload) == Sent::Yes
        {
            return Offer::Queued;
        }
        // A newer "latest value" update takes an older one's place.
        match self.tx.try_send_replacing(frame, |f| f.latest) {
            Ok(()) => Offer::Queued,
            Err(queue::Refused::Full) => {
                self.closer.close(CloseCode::SlowConsumer);
                Offer::Dropped
            }
            Err(queue::Refused::Closed) => Offer::Gone,
        }
    }
}

/// The outcome of offering a frame to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued, or handed to the session's transport directly.
    Queued,
    /// The queue was full: the session is being closed as a slow consumer.
    Dropped,
    /// The session already ended.
    Gone,
}

/// How many sessions a delivery reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Frames queued (or handed to a transport directly).
    pub queued: usize,
    /// Frames dropped on full queues.
    pub dropped: usize,
}

/// The node-local registry: users and rooms to sessions. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// user -> that user's sessions on this node.
    users: DashMap<Id, Members>,
    /// room -> member sessions on this node.
    rooms: DashMap<Id, Members>,
    /// How far each user's inbox reached a session here.
    reached: reached::Reached,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a logged-in session. Returns true when it is the user's first
    /// session on this node.
    pub fn register(&self, handle: SessionHandle) -> bool {
        let mut entry = self.inner.users.entry(handle.user.clone()).or_default();
        entry.insert(handle);
        entry.len() == 1
    }

    /// Removes a session from its user and the given rooms. Returns whether it
    /// was the user's last session here, and the rooms it was the last local
    /// member of.
    pub fn unregister(
        &self,
        id: SessionId,
        user: &Id,
        rooms: impl IntoIterator<Item = Id>,
    ) -> (bool, Vec<Id>) {
        let last_rooms = rooms.into_iter().filter(|r| self.leave(r, id)).collect();
        let last_user = self
            .inner
            .users
            .remove_if_mut(user, |_, m| {
                m.remove(&id);
                m.is_empty()
            })
            .is_some();
        (last_user, last_rooms)
    }

    /// Adds a session to a room. Returns true when it is the room's first
    /// member on this node.
    pub fn join(&self, room: &Id, handle: SessionHandle) -> bool {
        let mut entry = self.inner.rooms.entry(room.clone()).or_default();
        entry.insert(handle);
        entry.len() == 1
    }

    /// Removes a session from a room. Returns true when the room has no
    /// member left on this node.
    pub fn leave(&self, room: &Id, id: SessionId) -> bool {
        self.inner
            .rooms
            .remove_if_mut(room, |_, m| {
                m.remove(&id);
                m.is_empty()
            })
            .is_some()
    }

    /// Offers an envelope to its local sessions. Never waits. With traces
    /// exported, the offer is a span of the message's trace.
    pub fn deliver(&self, env: &Envelope) -> Reach {
        let Some(parent) = env.trace.filter(|_| otel::enabled()) else {
            return self.offer(env);
        };
        let span = tracing::trace_span!(
            target: otel::TARGET,
            "message.deliver",
            to = ?env.target,
            queued = tracing::field::Empty,
            dropped = tracing::field::Empty,
        );
        otel::set_parent(&span, parent);
        let _in = span.enter();
        let out = self.offer(env);
        span.record("queued", out.queued);
        span.record("dropped", out.dropped);
        out
    }

    fn offer(&self, env: &Envelope) -> Reach {
        let map = match &env.target {
            Target::User(u) => self.inner.users.get(u),
            Target::Room(r) => self.inner.rooms.get(r),
        };
        let mut out = Reach::default();
        let Some(members) = map else { return out };
        for handle in members.iter() {
            if Some(handle.id) == env.exclude {
                continue;
            }
            match handle.offer(env.frame.clone()) {
                Offer::Queued => out.queued += 1,
                Offer::Dropped => out.dropped += 1,
                Offer::Gone => {}
            }
        }
        crate::telemetry::delivered(out.queued, out.dropped);
        if out.queued > 0
            && let Target::User(u) = &env.target
            && let Some(p) = &env.frame.position
            && matches!(&p.channel, crate::model::Channel::Inbox(i) if i == u)
        {
            self.inner.reached.mark(u, p.seq);
        }
        out
    }

    /// How far each user's inbox reached a session on this node.
    pub fn reached(&self) -> &reached::Reached {
        &self.inner.reached
    }

    /// Which of these users have a session on this node.
    pub fn online(&self, users: &[Id]) -> Vec<Id> {
        users
            .iter()
            .filter(|u| self.inner.users.contains_key(*u))
            .cloned()
            .collect()
    }

    /// How many sessions `user` holds on this node.
    pub fn user_sessions(&self, user: &Id) -> usize {
        self.inner.users.get(user).map_or(0, |m| m.len())
    }

    /// Whether `user` has a session in `room` on this node.
    pub fn in_room(&self, room: &Id, user: &Id) -> bool {
        self.inner
            .rooms
            .get(room)
            .is_some_and(|m| m.iter().any(|h| h.user == *user))
    }

    /// How many of `user`'s sessions on this node are in `room`.
    pub fn sessions_in(&self, room: &Id, user: &Id) -> usize {
        self.inner
            .rooms
            .get(room)
            .map_or(0, |m| m.iter().filter(|h| h.user == *user).count())
    }

    /// The distinct users with a session in the room on this node, sorted.
    pub fn room_users(&self, room: &Id) -> Vec<Id> {
        let mut users: Vec<Id> = match self.inner.rooms.get(room) {
            Some(m) => m.iter().map(|h| h.user.clone()).collect(),
            None => Vec::new(),
        };
        users.sort();
        users.dedup();
        users
    }

    /// Rooms with at least one local member.
    pub fn local_rooms(&self) -> Vec<Id> {
        self.inner.rooms.iter().map(|e| e.key().clone()).collect()
    }

    /// A room's member sessions on this node.
    pub fn room_size(&self, room: &Id) -> usize {
        self.inner.rooms.get(room).map_or(0, |m| m.len())
    }

    /// Each local room with its member sessions here.
    pub fn room_sizes(&self) -> Vec<(Id, usize)> {
        self.inner
            .rooms
            .iter()
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    /// Users with at least one local session.
    pub fn local_users(&self) -> Vec<Id> {
        self.inner.users.iter().map(|e| e.key().clone()).collect()
    }

    /// `user`'s sessions on this node, as presence answers describe them.
    pub fn sessions_of(&self, user: &Id, node: &str) -> Vec<SessionInfo> {
        let Some(members) = self.inner.users.get(user) else {
            return Vec::new();
        };
        members
            .iter()
            .map(|h| SessionInfo {
                user_id: h.user.clone(),
                session_id: h.id.to_string(),
                node_id: node.to_string(),
                transport: h
                    .closer
                    .meta
                    .transport
                    .map_or("unknown", |t| t.as_str())
                    .to_string(),
                info: h.closer.meta.info.clone(),
            })
            .collect()
    }

    /// Number of local sessions.
    pub fn session_count(&self) -> usize {
        self.inner.users.iter().map(|e| e.value().len()).sum()
    }

    /// Asks every local session to close with `code`.
    pub fn close_all(&self, code: CloseCode) {
        for e in self.inner.users.iter() {
            for h in e.value().iter() {
                h.closer.close(code);
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The broker carries envelopes between nodes and answers presence for the
//! whole cluster. The local broker serves a single node straight from the hub;
//! the Redis broker (cluster mode) routes through Redis Pub/Sub.

pub(crate) mod local;
pub(crate) mod redis;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use std::sync::Arc;

use crate::model::event::EdgeSink;
use crate::model::presence::SessionInfo;
use crate::model::{Envelope, SessionId};
use crate::protocol::Id;

pub(crate) use local::LocalBroker;
pub(crate) use redis::RedisBroker;

/// Why the broker could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker's backend is not reachable now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Routes envelopes to the nodes that hold their recipients, and knows who is
/// online where.
pub trait Broker: Send + Sync + 'static {
    /// Sends an envelope to every node with a session of its target,
    /// including this one. Never waits: a backend that cannot keep up queues
    /// or drops, it does not stall the caller.
    fn publish(&self, env: Envelope);

    /// A session of this node joins `room`. Resolves to true once envelopes
    /// for the room reach this node, false if that could not be confirmed
    /// in time (the join must then fail: the session would miss messages).
    fn watch_room(&self, room: &Id) -> BoxFuture<'static, bool>;

    /// This node no longer has a member of `room`.
    fn unwatch_room(&self, room: &Id);

    /// A session of `user` logs in on this node. Resolves to true once
    /// envelopes for the user reach this node, false if that could not be
    /// confirmed in time (the login must then fail). The user's first
    /// session anywhere is an edge for the [`EdgeSink`].
    fn user_online(&self, user: &Id, info: Option<&RawValue>) -> BoxFuture<'static, bool>;

    /// This node no longer has a session of `user` (when none is left
    /// anywhere, an edge for the [`EdgeSink`]).
    fn user_offline(&self, user: &Id, info: Option<&RawValue>);

    /// Where presence edges go from now on (the event webhook's outbox).
    fn set_edges(&self, sink: Arc<dyn EdgeSink>);

    /// A session of `user` logged in on this node (it is in the hub, which
    /// describes it).
    fn session_opened(&self, _user: &Id, _session: SessionId) {}

    /// A session of `user` on this node ended.
    fn session_closed(&self, _user: &Id, _session: SessionId) {}

    /// The nodes of the cluster that are alive (this one included), sorted.
    fn nodes(&self) -> BoxFuture<'static, Result<Vec<String>, BrokerError>>;

    /// The live sessions of these users, on every node.
    fn sessions(&self, users: Vec<Id>)
    -> BoxFuture<'static, Result<Vec<SessionInfo>, BrokerError>>;

    /// A session of `user` joined `room` on this node (already in the
    /// hub): cluster presence, and the room's presence event (msgType 11,
    /// with the user's `info`) when it is the user's first session there
    /// anywhere.
    fn room_joined(&self, room: &Id, user: &Id, info: Option<&RawValue>);

    /// A session of `user` left `room` on this node (already out of the
    /// hub): when the user has no session left in it here, cluster presence
    /// and, when none anywhere, the room's presence event.
    fn room_left(&self, room: &Id, user: &Id, info: Option<&RawValue>);

    /// Shares how far users' inboxes reached a session on this node (see
    /// [`crate::hub::reached`]); a single node has nothing to share.
    fn share_reached(&self, _marks: Vec<(Id, u64)>) -> BoxFuture<'static, Result<(), BrokerError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    /// How far each of these users' inbox reached a live session on any
    /// node, in order (0: not known).
    fn reached(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<u64>, BrokerError>>;

    /// Takes the user's push window for `window`: false when another node
    /// holds it, so one node pushes a user at a time. A single node always
    /// gets it.
    fn claim_push(
        &self,
        _user: &Id,
        _window: std::time::Duration,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        futures_util::future::ready(Ok(true)).boxed()
    }

    /// Which of these users are online anywhere.
    fn online(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>>;

    /// The users online in a room, anywhere, sorted.
    fn room_presence(&self, room: Id) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>>;

    /// Removes this node from the cluster's presence (on shutdown). Resolves
    /// once done.
    fn leave(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Whether the broker is connected (for `/readyz`).
    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>>;

    /// False while the broker knows it cannot deliver to this node (Redis
    /// unreachable): a session logged in then could miss messages, so
    /// logins are refused until it is back.
    fn connected(&self) -> bool {
        true
    }
}

impl From<BrokerError> for crate::protocol::ProtoError {
    /// A client sees every broker failure as 503: retry later.
    fn from(e: BrokerError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

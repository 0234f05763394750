//! The single-node broker: every envelope is for this node's hub.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;

use super::{Broker, BrokerError};
use crate::hub::Hub;
use crate::model::Envelope;
use crate::model::event::{Edge, EdgeSink};
use crate::model::presence::{Change, SessionInfo, event};
use crate::protocol::Id;
use crate::telemetry;

/// Delivers straight into the local hub; presence is the hub's.
pub(crate) struct LocalBroker {
    hub: Hub,
    node: String,
    edges: OnceLock<Arc<dyn EdgeSink>>,
}

impl LocalBroker {
    /// A broker for node `node`, alone.
    pub(crate) fn new(hub: Hub, node: String) -> Self {
        Self {
            hub,
            node,
            edges: OnceLock::new(),
        }
    }

    fn edge(&self, edge: Edge<'_>, info: Option<&RawValue>) {
        if let Some(sink) = self.edges.get() {
            sink.edge(edge, info);
        }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, env: Envelope) {
        telemetry::broker_published();
        telemetry::broker_received();
        self.hub.deliver(&env);
    }

    fn reached(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<u64>, BrokerError>> {
        let marks = users.iter().map(|u| self.hub.reached().get(u)).collect();
        ready(Ok(marks)).boxed()
    }

    fn watch_room(&self, _room: &Id) -> BoxFuture<'static, bool> {
        ready(true).boxed()
    }

    fn unwatch_room(&self, _room: &Id) {}

    fn user_online(&self, user: &Id, info: Option<&RawValue>) -> BoxFuture<'static, bool> {
        if self.hub.user_sessions(user) == 1 {
            self.edge(Edge::User { user, online: true }, info);
        }
        ready(true).boxed()
    }

    fn user_offline(&self, user: &Id, info: Option<&RawValue>) {
        self.edge(
            Edge::User {
                user,
                online: false,
            },
            info,
        );
    }

    fn set_edges(&self, sink: Arc<dyn EdgeSink>) {
        let _ = self.edges.set(sink);
    }

    fn nodes(&self) -> BoxFuture<'static, Result<Vec<String>, BrokerError>> {
        ready(Ok(vec![self.node.clone()])).boxed()
    }

    fn sessions(
        &self,
        users: Vec<Id>,
    ) -> BoxFuture<'static, Result<Vec<SessionInfo>, BrokerError>> {
        let all = users
            .iter()
            .flat_map(|u| self.hub.sessions_of(u, &self.node))
            .collect();
        ready(Ok(all)).boxed()
    }

    fn room_joined(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if self.hub.sessions_in(room, user) == 1 {
            self.publish(event(room, user, Change::Join, info));
            let edge = Edge::Room {
                room,
                user,
                joined: true,
            };
            self.edge(edge, info);
        }
    }

    fn room_left(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if !self.hub.in_room(room, user) {
            self.publish(event(room, user, Change::Leave, info));
            let edge = Edge::Room {
                room,
                user,
                joined: false,
            };
            self.edge(edge, info);
        }
    }

    fn online(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        ready(Ok(self.hub.online(&users))).boxed()
    }

    fn room_presence(&self, room: Id) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        ready(Ok(self.hub.room_users(&room))).boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        ready(Ok(())).boxed()
    }
}

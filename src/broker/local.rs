//! The single-node broker: every envelope is for this node's hub.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use serde_json::value::RawValue;

use super::{Broker, BrokerError};
use crate::hub::Hub;
use crate::model::Envelope;
use crate::model::presence::{Change, event};
use crate::protocol::Id;
use crate::telemetry;

/// Delivers straight into the local hub; presence is the hub's.
#[derive(Debug, Clone)]
pub(crate) struct LocalBroker {
    hub: Hub,
}

impl LocalBroker {
    /// A broker for one node.
    pub(crate) fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, env: Envelope) {
        telemetry::broker_published();
        telemetry::broker_received();
        self.hub.deliver(&env);
    }

    fn watch_room(&self, _room: &Id) -> BoxFuture<'static, bool> {
        ready(true).boxed()
    }

    fn unwatch_room(&self, _room: &Id) {}

    fn user_online(&self, _user: &Id) -> BoxFuture<'static, bool> {
        ready(true).boxed()
    }

    fn user_offline(&self, _user: &Id) {}

    fn room_joined(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if self.hub.sessions_in(room, user) == 1 {
            self.publish(event(room, user, Change::Join, info));
        }
    }

    fn room_left(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if !self.hub.in_room(room, user) {
            self.publish(event(room, user, Change::Leave, info));
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

//! The chat features on top of stored messages (PROTOCOL.md section 4,
//! msgTypes 12 to 15): receipts, read positions and unread counts,
//! amendments (edits, deletes, reactions) and typing notices. Whatever is
//! stored goes through the store's log like a message (so it is acked,
//! ordered, delivered and replayed the same way); what is not stored goes
//! through the broker like a volatile message. Sessions and the server API
//! check who may do what in a room before they call in here.

pub(crate) mod amend;
pub(crate) mod fold;
mod reads;
mod receipts;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::broker::Broker;
use crate::hub::Hub;
use crate::model::{Channel, SessionId, now_ms, plan};
use crate::protocol::{ChatFields, Delivered, Destination, Id, ProtoError};
use crate::store::{Store, StoreError};

pub(crate) use reads::Unread;

/// The chat features of a node.
pub(crate) struct Chat {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    receipts: receipts::Merger,
    reads: reads::Reads,
}

/// The fields of a stored entry the chat features read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stored {
    /// Its msgType.
    pub(crate) msg_type: i64,
    /// Who sent it.
    pub(crate) send_user_id: Id,
    /// A direct message's recipient.
    #[serde(default)]
    pub(crate) received_user_id: Option<Id>,
    /// Its room (or a direct message's context).
    #[serde(default)]
    pub(crate) room_id: Option<Id>,
    /// Its id.
    pub(crate) msg_id: String,
}

impl Stored {
    /// Reads a stored payload.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, ProtoError> {
        serde_json::from_slice(payload)
            .map_err(|e| StoreError::Corrupt(format!("a stored message: {e}")).into())
    }
}

/// A notice from `from` that is not stored: the frame of the message.
pub(crate) fn notice(from: &Id, to: &Destination, msg_type: i64, chat: ChatFields) -> Delivered {
    let (received_user_id, room_id) = match to {
        Destination::User { user, context } => (Some(user.clone()), context.clone()),
        Destination::Room(room) => (None, Some(room.clone())),
    };
    Delivered {
        msg_type,
        send_user_id: from.clone(),
        received_user_id,
        room_id,
        biz_type: None,
        biz_opt_module: None,
        msg_body: None,
        msg_id: uuid::Uuid::now_v7().to_string(),
        seq: None,
        ts: now_ms(),
        volatile: true,
        latest: None,
        chat: Some(Box::new(chat)),
    }
}

impl Chat {
    /// The chat features over a store and a broker. Starts the tasks that
    /// merge receipts and write read positions in batches.
    pub(crate) fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>, hub: Hub) -> Self {
        Self {
            receipts: receipts::Merger::start(store.clone()),
            reads: reads::Reads::start(store.clone(), broker.clone(), hub),
            store,
            broker,
        }
    }

    /// Sends a notice that is not stored to its destination's sessions.
    fn send_volatile(&self, message: &Delivered, origin: Option<SessionId>) {
        let channel = match (&message.received_user_id, &message.room_id) {
            (Some(user), _) => Channel::Inbox(user.clone()),
            (None, Some(room)) => Channel::Room(room.clone()),
            (None, None) => return,
        };
        let payload: Bytes = message.to_bytes();
        for env in plan(message, payload, &channel, origin, None) {
            self.broker.publish(env);
        }
    }

    /// A typing notice (msgType 15) from `from`: volatile, never stored.
    pub(crate) fn typing(&self, from: &Id, origin: SessionId, to: &Destination, typing: bool) {
        let mut n = notice(
            from,
            to,
            crate::protocol::message::TYPING,
            ChatFields {
                typing: Some(typing),
                ..ChatFields::default()
            },
        );
        // A receiver keeps only the newest per sender and destination.
        n.latest = Some("typing".into());
        self.send_volatile(&n, Some(origin));
    }

    /// The unread counts of `user` in its inbox and in `rooms`, and, when
    /// `every_read_room`, in every room it has a read position in.
    pub(crate) async fn unread(
        &self,
        user: &Id,
        rooms: impl IntoIterator<Item = Id>,
        every_read_room: bool,
    ) -> Result<Unread, ProtoError> {
        reads::unread(&*self.store, user, rooms, every_read_room).await
    }

    /// A page of a room's read positions.
    pub(crate) async fn room_reads(
        &self,
        room: &Id,
        after: Option<String>,
        limit: usize,
    ) -> Result<(BTreeMap<Id, u64>, Option<String>), ProtoError> {
        let page = self
            .store
            .reads(&Channel::Room(room.clone()), after, limit)
            .await?;
        Ok((page.reads.into_iter().collect(), page.next))
    }
}

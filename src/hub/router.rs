//! The publish path shared by client sessions and the server API: stamp a
//! message, store it (unless volatile), and turn what the store commits into
//! envelopes for the broker.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

use super::{Channel, Envelope, OutFrame, Position, SessionId, Target};
use crate::broker::Broker;
use crate::protocol::{Delivered, Destination, Id, Send};
use crate::store::{AppendRequest, Appended, CommitSink, Committed, DedupeKey, Store, StoreError};
use crate::transport::Delivery;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Turns committed messages into envelopes: a room message to the room minus
/// the sending session; a direct message to every session of the recipient,
/// and a copy without `seq` to the sender's other sessions.
pub struct Dispatcher {
    broker: Arc<dyn Broker>,
}

impl Dispatcher {
    /// A dispatcher publishing through `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self { broker }
    }
}

impl CommitSink for Dispatcher {
    fn committed(&self, c: Committed) {
        let seq = c.message.seq.unwrap_or_default();
        let frame = OutFrame {
            payload: c.payload,
            how: Delivery::Reliable,
            position: Some(Position {
                channel: c.channel.clone(),
                seq,
            }),
        };
        match c.channel {
            Channel::Room(room) => {
                self.broker.publish(Envelope {
                    target: Target::Room(room),
                    exclude: c.origin,
                    frame,
                });
            }
            Channel::Inbox(user) => {
                let sender = c.message.send_user_id.clone();
                self.broker.publish(Envelope {
                    target: Target::User(user.clone()),
                    exclude: None,
                    frame,
                });
                if sender != user {
                    let copy = Delivered {
                        seq: None,
                        ..c.message
                    };
                    let frame = OutFrame {
                        payload: copy.to_bytes(),
                        how: Delivery::Reliable,
                        position: None,
                    };
                    self.broker.publish(Envelope {
                        target: Target::User(sender),
                        exclude: c.origin,
                        frame,
                    });
                }
            }
        }
    }
}

/// Accepts business messages from sessions and the API.
#[derive(Clone)]
pub struct Router {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
}

/// What became of a send.
pub enum Sent {
    /// A volatile message: already handed to the broker; no ack.
    Volatile,
    /// A stored message: the future resolves with the ack once durable.
    Stored(BoxFuture<'static, Result<Appended, StoreError>>),
}

impl Router {
    /// A router over a store and a broker.
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>) -> Self {
        Self { store, broker }
    }

    /// The store behind this router.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The broker behind this router.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Stamps and routes a message from `from`. `origin` is the sending
    /// session (none for the server API). The store append is queued before
    /// this returns, so sends from one session keep their order.
    pub fn send(&self, from: Id, origin: Option<SessionId>, s: Send) -> Sent {
        let (received_user_id, room_id) = match &s.to {
            Destination::User { user, context } => (Some(user.clone()), context.clone()),
            Destination::Room(room) => (None, Some(room.clone())),
        };
        let message = Delivered {
            msg_type: s.msg_type,
            send_user_id: from.clone(),
            received_user_id,
            room_id,
            biz_type: s.biz_type,
            biz_opt_module: s.biz_opt_module,
            msg_body: s.body,
            msg_id: uuid::Uuid::now_v7().to_string(),
            seq: None,
            ts: now_ms(),
            volatile: s.volatile,
        };
        if s.volatile {
            let frame = OutFrame {
                payload: message.to_bytes(),
                how: Delivery::Volatile,
                position: None,
            };
            match s.to {
                Destination::Room(room) => {
                    self.broker.publish(Envelope {
                        target: Target::Room(room),
                        exclude: origin,
                        frame,
                    });
                }
                Destination::User { user, .. } => {
                    if user != from {
                        let copy = Envelope {
                            target: Target::User(from),
                            exclude: origin,
                            frame: frame.clone(),
                        };
                        self.broker.publish(copy);
                    }
                    self.broker.publish(Envelope {
                        target: Target::User(user),
                        exclude: None,
                        frame,
                    });
                }
            }
            return Sent::Volatile;
        }
        let channel = match s.to {
            Destination::Room(room) => Channel::Room(room),
            Destination::User { user, .. } => Channel::Inbox(user),
        };
        let dedupe = s.client_msg_id.map(|client_msg_id| DedupeKey {
            user: from,
            client_msg_id,
        });
        Sent::Stored(self.store.append(AppendRequest {
            channel,
            message,
            dedupe,
            origin,
        }))
    }
}

//! The publish path shared by client sessions and the server API: stamp a
//! message, store it (unless volatile), and route what the store commits
//! through the broker by the one fan-out plan ([`crate::model::plan`]).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::Instrument;

use crate::broker::Broker;
use crate::model::watch::{InboxWatch, PREVIEW_CHARS, StoredDirect, preview};
use crate::model::{Channel, SessionId, now_ms, plan};
use crate::protocol::{Delivered, Destination, Id, Publish};
use crate::store::{AppendRequest, Appended, CommitSink, Committed, DedupeKey, Store, StoreError};
use crate::telemetry::otel;

/// Routes committed messages: the store's [`CommitSink`] for stores that do
/// not publish by themselves (memory, SQLite).
pub(crate) struct Dispatcher {
    broker: Arc<dyn Broker>,
}

impl Dispatcher {
    /// A dispatcher publishing through `broker`.
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Self {
        Self { broker }
    }
}

impl CommitSink for Dispatcher {
    fn committed(&self, c: Committed) {
        for env in plan(&c.message, c.payload, &c.channel, c.origin, c.trace) {
            self.broker.publish(env);
        }
    }
}

/// Accepts business messages from sessions and the API.
#[derive(Clone)]
pub struct Publisher {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    /// Told of every stored direct message (push).
    watch: Option<Arc<dyn InboxWatch>>,
}

/// What became of a send.
pub enum Sent {
    /// A volatile message: already handed to the broker; no ack.
    Volatile,
    /// A stored message: the future resolves with the ack once durable.
    Stored(BoxFuture<'static, Result<Appended, StoreError>>),
}

impl Publisher {
    /// A publisher over a store and a broker.
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>) -> Self {
        Self {
            store,
            broker,
            watch: None,
        }
    }

    /// The same publisher, telling `watch` of every stored direct message.
    pub fn watched_by(self, watch: Arc<dyn InboxWatch>) -> Self {
        Self {
            watch: Some(watch),
            ..self
        }
    }

    /// The store behind this publisher.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The broker behind this publisher.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Stamps and routes a message from `from`. `origin` is the sending
    /// session (none for the server API). The store append is queued before
    /// this returns, so sends from one session keep their order. The
    /// current span's trace (see [`otel`]) travels with the message.
    pub fn send(&self, from: Id, origin: Option<SessionId>, p: Publish) -> Sent {
        let trace = otel::current();
        let (received_user_id, room_id, channel) = match p.to {
            Destination::User { user, context } => {
                (Some(user.clone()), context, Channel::Inbox(user))
            }
            Destination::Room(room) => (None, Some(room.clone()), Channel::Room(room)),
        };
        let message = Delivered {
            msg_type: p.msg_type,
            send_user_id: from.clone(),
            received_user_id,
            room_id,
            biz_type: p.biz_type,
            biz_opt_module: p.biz_opt_module,
            msg_body: p.body,
            msg_id: uuid::Uuid::now_v7().to_string(),
            seq: None,
            ts: now_ms(),
            volatile: p.volatile,
            latest: p.latest,
            chat: None,
        };
        if p.volatile {
            let payload = message.to_bytes();
            for env in plan(&message, payload, &channel, origin, trace) {
                self.broker.publish(env);
            }
            return Sent::Volatile;
        }
        let dedupe = p.client_msg_id.map(|client_msg_id| DedupeKey {
            user: from,
            client_msg_id,
        });
        // What push needs of a direct message, told once it is stored.
        let watched = match (&self.watch, &channel) {
            (Some(w), Channel::Inbox(to)) if w.watching() => Some((
                w.clone(),
                StoredDirect {
                    to: to.clone(),
                    from: message.send_user_id.clone(),
                    room: message.room_id.clone(),
                    msg_id: String::new(),
                    seq: 0,
                    preview: match w.wants_preview() {
                        true => preview(message.msg_body.as_deref(), PREVIEW_CHARS),
                        false => None,
                    },
                },
            )),
            _ => None,
        };
        let span =
            tracing::trace_span!(target: otel::TARGET, "message.store", msg_id = %message.msg_id);
        let appended = self.store.append(AppendRequest {
            channel,
            message,
            dedupe,
            origin,
            trace,
        });
        let appended = match watched {
            None => appended,
            // The ack waits for what the watcher keeps of the message.
            Some((watch, mut m)) => appended
                .then(move |r| async move {
                    if let Ok(a) = &r
                        && !a.duplicate
                    {
                        m.msg_id = a.msg_id.clone();
                        m.seq = a.seq;
                        if let Some(kept) = watch.stored(m) {
                            kept.await;
                        }
                    }
                    r
                })
                .boxed(),
        };
        Sent::Stored(match span.is_disabled() {
            true => appended,
            false => appended.instrument(span).boxed(),
        })
    }
}

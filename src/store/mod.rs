//! The message store: per-channel logs with gap-free `seq`, dedupe of resends,
//! inbox cursors and history. An append is acknowledged only once it is
//! stored, and committed messages are handed to a [`CommitSink`] in `seq`
//! order per channel, which is how delivery order equals storage order.

pub mod chat;
#[cfg(test)]
mod conformance;
pub mod memory;
pub mod push;
pub mod redis;
pub mod sqlite;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use crate::model::{Channel, SessionId, TraceParent};
use crate::protocol::{Delivered, Id};

pub use chat::{ChatStore, Located, ReadMark, ReadsPage, counts_as_unread};
pub use memory::MemoryStore;
pub use push::{MAX_REGISTRATIONS, PushJob, PushStore, Registration};
pub use redis::{RedisStore, Replication};
pub use sqlite::SqliteStore;

/// A channel's name in a store's keys and rows: `i:<user>` or `r:<room>`.
pub(crate) fn channel_name(c: &Channel) -> String {
    match c {
        Channel::Inbox(u) => format!("i:{u}"),
        Channel::Room(r) => format!("r:{r}"),
    }
}

/// The channel a [`channel_name`] names.
pub(crate) fn channel_of(name: &str) -> Option<Channel> {
    let (kind, id) = name.split_once(':')?;
    let id = Id::parse(id).ok()?;
    match kind {
        "i" => Some(Channel::Inbox(id)),
        "r" => Some(Channel::Room(id)),
        _ => None,
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store is not reachable or not writable right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is shutting down")]
    ShuttingDown,
    /// Stored data could not be read back.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

/// A resend key: one user's `clientMsgId`, within the channel of the
/// append it comes with. Every store dedupes on (user, channel,
/// clientMsgId): a resend goes to the same channel, and in Redis Cluster the
/// check must live in the channel's slot to be atomic with the append.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey {
    /// The sender.
    pub user: Id,
    /// The client's idempotency key.
    pub client_msg_id: String,
}

/// A message to store.
#[derive(Debug)]
pub struct AppendRequest {
    /// The channel it goes to.
    pub channel: Channel,
    /// The message, stamped by the server, without `seq`.
    pub message: Delivered,
    /// Set when the client gave a `clientMsgId`.
    pub dedupe: Option<DedupeKey>,
    /// The sending session, kept out of its own room broadcast.
    pub origin: Option<SessionId>,
    /// The message's trace, handed on to its deliveries.
    pub trace: Option<TraceParent>,
}

/// The result of an append: what the ack carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message's id.
    pub msg_id: String,
    /// Its position in the channel.
    pub seq: u64,
    /// Its acceptance time.
    pub ts: u64,
    /// True when this was a resend of an already stored message: nothing new
    /// was stored or delivered, and the original ack is returned.
    pub duplicate: bool,
}

/// A message that has just been stored, handed to the [`CommitSink`].
#[derive(Debug)]
pub struct Committed {
    /// Its channel.
    pub channel: Channel,
    /// The message with its `seq`.
    pub message: Delivered,
    /// The message serialized once, as every recipient gets it.
    pub payload: Bytes,
    /// The sending session.
    pub origin: Option<SessionId>,
    /// The message's trace.
    pub trace: Option<TraceParent>,
}

/// Receives committed messages, in `seq` order per channel, right after they
/// are durable. Must not block: it runs on the store's commit path.
pub trait CommitSink: Send + Sync + 'static {
    /// One committed message.
    fn committed(&self, c: Committed);
}

/// One event waiting in the outbox for the event webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The store's handle on it, for [`Store::ack_events`].
    pub key: String,
    /// The event, as JSON.
    pub body: String,
}

/// How much the event outbox may hold: past either bound the oldest events
/// are dropped (and counted), so a backend that is down for long cannot
/// fill the disk or Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Bytes of event bodies.
    pub max_bytes: u64,
    /// Age of the oldest event.
    pub max_age: Duration,
}

/// Counts (and logs) the events a store's outbox trim dropped: `too_old`
/// past the age bound, `over_bytes` past the byte bound.
pub(crate) fn outbox_trimmed(too_old: u64, over_bytes: u64) {
    crate::telemetry::events_dropped("age", too_old);
    crate::telemetry::events_dropped("bytes", over_bytes);
    if too_old + over_bytes > 0 {
        tracing::warn!(
            too_old,
            over_bytes,
            "the event outbox dropped its oldest events (is the event webhook down?)"
        );
    }
}

/// What the event outbox holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Events.
    pub events: u64,
    /// Bytes of their bodies (in Redis: estimated from a sample).
    pub bytes: u64,
}

/// A page of a channel's history.
#[derive(Debug, Default)]
pub struct Page {
    /// The channel's latest seq (0 when empty).
    pub latest: u64,
    /// Messages after `since`, in seq order, as they were delivered.
    pub messages: Vec<Box<RawValue>>,
    /// The seq of the last message in `messages` (or `since` when empty).
    pub last: u64,
    /// True when retention already removed messages after `since`: the
    /// page does not start right after it.
    pub gap: bool,
}

/// How much history each channel keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// At most this many messages per channel.
    pub max_count: u64,
    /// Messages older than this are removed.
    pub max_age: Duration,
}

impl Default for Retention {
    /// The defaults of `--retention-count` and `--retention-sec`.
    fn default() -> Self {
        Self {
            max_count: crate::config::defaults::RETENTION_COUNT,
            max_age: Duration::from_secs(crate::config::defaults::RETENTION_SEC),
        }
    }
}

/// A message store. Implementations: [`MemoryStore`] (tests, single node
/// without a data folder), and the durable ones.
pub trait Store: ChatStore + PushStore + Send + Sync + 'static {
    /// Stores a message and assigns its `seq`. The request is queued before
    /// this returns, so appends made one after another from one task get
    /// increasing seqs; the future resolves once the message is durable and
    /// has been handed to the commit sink.
    fn append(&self, req: AppendRequest) -> BoxFuture<'static, Result<Appended, StoreError>>;

    /// Up to `limit` messages of a channel with `seq > since`.
    fn read(
        &self,
        channel: &Channel,
        since: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Page, StoreError>>;

    /// The channel's latest seq, 0 when empty.
    fn latest(&self, channel: &Channel) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// The inbox position the user last acknowledged.
    fn cursor(&self, user: &Id) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Records that the user holds its inbox up to `seq` (never moves back).
    fn set_cursor(&self, user: &Id, seq: u64) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Whether the store can take writes now (for `/readyz`).
    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// What an ack cannot promise with this store as configured (cluster
    /// mode: acks in Redis memory, not on disk), for `/readyz` and the log.
    fn caveat(&self) -> Option<String> {
        None
    }

    /// From now on, every newly stored message also leaves a
    /// `message.stored` event in the outbox (in the same write where the
    /// store allows it).
    fn record_stored_events(&self);

    /// Keeps events for the event webhook until they are acked; resolves
    /// once they are durable.
    fn push_events(&self, events: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Up to `limit` events not yet acked, oldest first. In a cluster each
    /// node gets its share; an event claimed by a node that died is handed
    /// out again.
    fn claim_events(
        &self,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<OutboxEntry>, StoreError>>;

    /// Removes delivered events.
    fn ack_events(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>>;

    /// From now on the outbox stays within `limits`: the oldest events past
    /// them are dropped and counted (`rtgate_events_dropped_total`).
    fn limit_outbox(&self, limits: OutboxLimits);

    /// What the outbox holds (`rtgate_event_outbox_events` / `_bytes`).
    fn outbox_depth(&self) -> BoxFuture<'static, Result<OutboxDepth, StoreError>>;
}

impl From<StoreError> for crate::protocol::ProtoError {
    /// A client sees every store failure as 503: retry later.
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

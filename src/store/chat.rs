//! What the chat features ask of a store beyond appending and reading
//! logs: finding a stored message by its `msgId`, removing a deleted
//! message's body, members' read positions, and unread counts. Every
//! [`super::Store`] implements [`ChatStore`]; the conformance suite runs
//! these over all three.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::StoreError;
use crate::model::Channel;
use crate::protocol::Id;

/// Most read positions one [`ChatStore::reads`] page holds.
pub const MAX_READS_PAGE: usize = 1000;

/// A stored message found by its `msgId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The `msgId` asked for.
    pub msg_id: String,
    /// Its channel.
    pub channel: Channel,
    /// Its position there.
    pub seq: u64,
    /// The message as stored (JSON).
    pub payload: Bytes,
}

/// "This user has read this channel up to `seq`".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadMark {
    /// The channel (a room, or the reader's own inbox).
    pub channel: Channel,
    /// The reader.
    pub user: Id,
    /// The position.
    pub seq: u64,
}

/// A page of a channel's read positions, by user id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadsPage {
    /// Members and their positions.
    pub reads: Vec<(Id, u64)>,
    /// Where the next page starts (opaque), when there is one.
    pub next: Option<String>,
}

/// Whether a stored message counts as unread for someone who has not read
/// it: business messages do; receipts (12) and amendments (14) do not.
pub fn counts_as_unread(msg_type: i64) -> bool {
    crate::protocol::is_business(msg_type)
}

/// The chat side of a store.
pub trait ChatStore {
    /// The stored messages among `msg_ids` (unknown ids and ids whose
    /// message retention removed are left out).
    fn locate(&self, msg_ids: Vec<String>) -> BoxFuture<'static, Result<Vec<Located>, StoreError>>;

    /// Replaces a stored message's payload (a delete keeps its place in the
    /// log and loses its body). Nothing happens when it is gone already.
    fn redact(
        &self,
        channel: &Channel,
        seq: u64,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Moves read positions forward (never back, never past the channel's
    /// latest seq), in one write. Answers each mark's position afterwards,
    /// in order.
    fn set_reads(&self, marks: Vec<ReadMark>) -> BoxFuture<'static, Result<Vec<u64>, StoreError>>;

    /// A page of a channel's read positions: at most `limit` (up to
    /// [`MAX_READS_PAGE`]), starting at `after` (a previous page's `next`).
    fn reads(
        &self,
        channel: &Channel,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<ReadsPage, StoreError>>;

    /// Every read position of a user (its inbox and rooms).
    fn read_positions(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<(Channel, u64)>, StoreError>>;

    /// For each (channel, position): how many stored messages after the
    /// position count as unread ([`counts_as_unread`]). One read for all
    /// (a login asks for every room at once).
    fn unread_many(
        &self,
        positions: Vec<(Channel, u64)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, StoreError>>;

    /// [`ChatStore::unread_many`] of one channel.
    fn unread(&self, channel: &Channel, after: u64) -> BoxFuture<'static, Result<u64, StoreError>> {
        let counts = self.unread_many(vec![(channel.clone(), after)]);
        async move { Ok(counts.await?.pop().unwrap_or(0)) }.boxed()
    }
}

//! The shared [`Store`] of cluster mode, in Redis. One Lua script appends a
//! message atomically: dedupe check, the channel's seq, `XADD` to the
//! channel's stream (trimmed to the retention count), the dedupe key with its
//! TTL, and the publication of the message's deliveries. The deliveries are
//! planned by the writer (`writer.rs`), with the one fan-out plan, before the
//! script runs: the writer predicts the message's seq, and the script
//! refuses the append when the channel has moved on (another node wrote to
//! it), answering the current seq so the writer plans again. Because Redis runs the script as one step,
//! publication order is seq order on every node, whichever node appended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use redis::AsyncCommands;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

mod chat;
mod outbox;
mod push;
mod writer;

use writer::Job;

use super::{
    AppendRequest, Appended, OutboxDepth, OutboxEntry, OutboxLimits, Page, Retention, Store,
    StoreError,
};
use crate::model::Channel;
use crate::protocol::Id;
use crate::redis_io::envelope::tag;
use crate::redis_io::{RedisConn, durability};
use tokio_util::sync::CancellationToken;

/// How often the outbox's bounds are applied.
const OUTBOX_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// KEYS: cursor, the inbox's seq. ARGV: seq. Moves the cursor forward
/// only, and never beyond the inbox's latest seq.
const CURSOR: &str = r#"
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local v = math.min(tonumber(ARGV[1]), latest)
if v > c then redis.call('SET', KEYS[1], v) end
return 1
"#;

fn seq_key(c: &Channel) -> String {
    format!("rtgate:{}:seq", tag(c))
}

fn log_key(c: &Channel) -> String {
    format!("rtgate:{}:log", tag(c))
}

/// A user's inbox cursor, in the slot of the inbox's keys.
fn cursor_key(user: &Id) -> String {
    format!("rtgate:{}:cursor", tag(&Channel::Inbox(user.clone())))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// How many replicas a durable append must reach before it is acked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replication {
    /// Replicas (0: ack once the primary has it).
    pub replicas: usize,
    /// How long to wait for them; past it the append is answered 503 (it
    /// may be stored; a resend with its clientMsgId gets the original ack).
    pub timeout: Duration,
    /// Refuse to start, and be unready, unless Redis persists every write
    /// before answering (`--redis-require-durable`).
    pub require_on_disk: bool,
}

/// The Redis store.
pub struct RedisStore {
    conn: RedisConn,
    jobs: mpsc::Sender<Job>,
    /// Set when stored messages leave `message.stored` events.
    events: Arc<AtomicBool>,
    /// This node's name in the outbox's consumer group.
    consumer: String,
    /// What Redis's persistence settings make of an ack, kept current.
    durability: durability::Shared,
    /// `--redis-require-durable`.
    require_on_disk: bool,
    /// Stops the outbox's trim when the store goes.
    outbox_trim: CancellationToken,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.outbox_trim.cancel();
    }
}

impl RedisStore {
    /// Connects to Redis and starts the ordered writer.
    pub async fn connect(
        url: &str,
        cluster: bool,
        retention: Retention,
        dedupe_window: Duration,
        replication: Replication,
    ) -> Result<Self, StoreError> {
        let conn = RedisConn::connect(url, cluster, None)
            .await
            .map_err(unavailable)?;
        let durability = durability::watch(conn.clone()).await;
        let require_on_disk = replication.require_on_disk;
        if require_on_disk && let Some(c) = durability.lock().expect("not poisoned").caveat() {
            return Err(StoreError::Unavailable(format!(
                "--redis-require-durable: {c}"
            )));
        }
        let events = Arc::new(AtomicBool::new(false));
        let jobs = writer::start(
            conn.clone(),
            retention,
            dedupe_window,
            replication,
            events.clone(),
        );
        Ok(Self {
            conn,
            jobs,
            events,
            durability,
            require_on_disk,
            outbox_trim: CancellationToken::new(),
            consumer: uuid::Uuid::now_v7().to_string(),
        })
    }
}

/// One entry of an `XRANGE` answer: its id and its field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn seq_of(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

impl Store for RedisStore {
    fn append(&self, req: AppendRequest) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            req,
            reply,
            attempts: 0,
        };
        match self.jobs.try_send(job) {
            Ok(()) => async move { rx.await.unwrap_or(Err(StoreError::ShuttingDown)) }.boxed(),
            Err(_) => ready(Err(StoreError::Unavailable(
                "store queue is full; retry".into(),
            )))
            .boxed(),
        }
    }

    fn read(
        &self,
        channel: &Channel,
        since: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Page, StoreError>> {
        let (seq, log) = (seq_key(channel), log_key(channel));
        let channel = channel.clone();
        let mut conn = self.conn.clone();
        async move {
            // One round trip for the channel's bounds: its latest seq, its
            // first entry, its first redaction (a redacted entry left the
            // stream for the redactions' set), and the page itself.
            let answers = conn
                .run_all(vec![
                    redis::cmd("GET").arg(&seq).to_owned(),
                    redis::cmd("XRANGE")
                        .arg(&log)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(1)
                        .to_owned(),
                    redis::cmd("ZRANGE")
                        .arg(chat::redacted_key(&channel))
                        .arg(0)
                        .arg(0)
                        .arg("WITHSCORES")
                        .to_owned(),
                    redis::cmd("XRANGE")
                        .arg(&log)
                        .arg(format!("{}-0", since + 1))
                        .arg("+")
                        .arg("COUNT")
                        .arg(limit)
                        .to_owned(),
                ])
                .await
                .map_err(unavailable)?;
            let [latest, first, first_redacted, entries]: [redis::Value; 4] = answers
                .try_into()
                .map_err(|_| StoreError::Corrupt("short answer".into()))?;
            let latest: u64 = redis::from_redis_value::<Option<u64>>(latest)
                .map_err(unavailable)?
                .unwrap_or(0);
            let first: Vec<StreamEntry> = redis::from_redis_value(first).map_err(unavailable)?;
            let first_redacted: Vec<(Vec<u8>, f64)> =
                redis::from_redis_value(first_redacted).map_err(unavailable)?;
            let entries: Vec<StreamEntry> =
                redis::from_redis_value(entries).map_err(unavailable)?;
            let first_kept = first
                .first()
                .and_then(|(id, _)| seq_of(id))
                .unwrap_or(latest + 1);
            let first_kept = first_redacted
                .first()
                .map_or(first_kept, |(_, s)| first_kept.min(*s as u64));
            let entries = match first_redacted.is_empty() {
                true => chat::plain(entries),
                false => chat::merge_redacted(&mut conn, &channel, since, limit, entries).await?,
            };
            let mut page = Page {
                latest,
                last: since,
                gap: since + 1 < first_kept && since < latest,
                ..Page::default()
            };
            for (seq, payload) in entries {
                let text =
                    String::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                page.messages.push(
                    RawValue::from_string(text).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                page.last = seq;
            }
            Ok(page)
        }
        .boxed()
    }

    fn latest(&self, channel: &Channel) -> BoxFuture<'static, Result<u64, StoreError>> {
        let key = seq_key(channel);
        let mut conn = self.conn.clone();
        async move {
            let v: Option<u64> = conn.get(key).await.map_err(unavailable)?;
            Ok(v.unwrap_or(0))
        }
        .boxed()
    }

    fn cursor(&self, user: &Id) -> BoxFuture<'static, Result<u64, StoreError>> {
        let keys = [cursor_key(user), seq_key(&Channel::Inbox(user.clone()))];
        let mut conn = self.conn.clone();
        async move {
            let v: Vec<Option<u64>> = conn.mget(&keys).await.map_err(unavailable)?;
            let at = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
            Ok(at(0).min(at(1)))
        }
        .boxed()
    }

    fn set_cursor(&self, user: &Id, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let keys = [cursor_key(user), seq_key(&Channel::Inbox(user.clone()))];
        let mut conn = self.conn.clone();
        async move {
            redis::cmd("EVAL")
                .arg(CURSOR)
                .arg(2)
                .arg(&keys)
                .arg(seq)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        let refused = self
            .require_on_disk
            .then(|| self.caveat())
            .flatten()
            .map(|c| StoreError::Unavailable(format!("--redis-require-durable: {c}")));
        async move {
            conn.ping().await.map_err(unavailable)?;
            refused.map_or(Ok(()), Err)
        }
        .boxed()
    }

    fn caveat(&self) -> Option<String> {
        self.durability.lock().expect("not poisoned").caveat()
    }

    fn limit_outbox(&self, limits: OutboxLimits) {
        let mut conn = self.conn.clone();
        let stop = self.outbox_trim.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(OUTBOX_TRIM_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                match outbox::trim(&mut conn, limits).await {
                    Ok((aged, bytes)) => {
                        super::outbox_trimmed(aged, bytes);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the event outbox could not be trimmed now")
                    }
                }
            }
        });
    }

    fn outbox_depth(&self) -> BoxFuture<'static, Result<OutboxDepth, StoreError>> {
        let mut conn = self.conn.clone();
        async move { outbox::depth(&mut conn).await }.boxed()
    }

    fn record_stored_events(&self) {
        self.events.store(true, Ordering::Release);
    }

    fn push_events(&self, events: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            let cmds = events.iter().map(|e| outbox::add(e)).collect();
            conn.run_all(cmds).await.map(|_| ()).map_err(unavailable)
        }
        .boxed()
    }

    fn claim_events(
        &self,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<OutboxEntry>, StoreError>> {
        let (mut conn, consumer) = (self.conn.clone(), self.consumer.clone());
        async move { outbox::claim(&mut conn, &consumer, limit).await }.boxed()
    }

    fn ack_events(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        async move { outbox::ack(&mut conn, keys).await }.boxed()
    }
}

//! The shared [`Store`] of cluster mode, in Redis. One Lua script appends a
//! message atomically: dedupe check, `INCR` of the channel's seq, `XADD` to
//! the channel's stream (trimmed to the retention count), the dedupe key
//! with its TTL, and the `PUBLISH` of the envelope to the nodes that hold
//! the recipients. Because Redis runs the script as one step, publication
//! order is seq order on every node, whichever node appended.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use redis::{AsyncCommands, Value};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{AppendRequest, Appended, Page, Retention, Store, StoreError};
use crate::broker::redis::{RedisConn, envelope_header, room_channel, user_channel};
use crate::hub::{Channel, Target};
use crate::protocol::{Delivered, Id};

/// Requests waiting for the writer before appends are refused (503).
const QUEUE: usize = 65_536;
/// Most appends in one pipeline.
const MAX_BATCH: usize = 256;

/// KEYS: seq, log, [dedupe]. ARGV: pre, post, header, window_ms, maxlen,
/// msg_id, ts, channel, publish command (`PUBLISH`, or `SPUBLISH` in a
/// Redis Cluster: the channel has the keys' hash tag, so it is this slot's).
const APPEND: &str = r#"
if #KEYS == 3 then
  local d = redis.call('GET', KEYS[3])
  if d then return {1, d} end
end
local seq = redis.call('INCR', KEYS[1])
local payload = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], seq .. '-1', 'p', payload)
local ack = ARGV[6] .. ' ' .. seq .. ' ' .. ARGV[7]
if #KEYS == 3 then redis.call('SET', KEYS[3], ack, 'PX', ARGV[4]) end
redis.call(ARGV[9], ARGV[8], seq .. ' ' .. ARGV[3] .. '\n' .. payload)
return {0, ack}
"#;

/// KEYS: cursor. ARGV: seq. Moves the cursor forward only.
const CURSOR: &str = r#"
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"#;

/// The channel's hash tag: its keys live in one slot (Redis Cluster ready).
fn tag(c: &Channel) -> String {
    match c {
        Channel::Inbox(u) => format!("{{i:{u}}}"),
        Channel::Room(r) => format!("{{r:{r}}}"),
    }
}

fn seq_key(c: &Channel) -> String {
    format!("rtgate:{}:seq", tag(c))
}

fn log_key(c: &Channel) -> String {
    format!("rtgate:{}:log", tag(c))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A message to publish: channel and wire bytes.
type Publication = (String, Vec<u8>);

struct Job {
    cmd: redis::Cmd,
    /// The sender's copy for its other devices (another slot: published
    /// after the append, not by the script).
    copy: Option<Publication>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The Redis store.
pub struct RedisStore {
    conn: RedisConn,
    jobs: mpsc::Sender<Job>,
    retention: Retention,
    dedupe_window: Duration,
}

impl RedisStore {
    /// Connects to Redis and starts the ordered writer.
    pub async fn connect(
        url: &str,
        cluster: bool,
        retention: Retention,
        dedupe_window: Duration,
    ) -> Result<Self, StoreError> {
        let conn = RedisConn::connect(url, cluster, None)
            .await
            .map_err(unavailable)?;
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let mut writer = conn.clone();
        tokio::spawn(async move {
            let publish = writer.publish_command();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                let cmds = batch.iter().map(|j| j.cmd.clone()).collect();
                match writer.run_all(cmds).await {
                    Ok(results) => {
                        let mut copies = Vec::new();
                        for (j, v) in batch.into_iter().zip(results) {
                            let ack = parse_ack(v);
                            if let (Ok(a), Some((ch, msg))) = (&ack, j.copy)
                                && !a.duplicate
                            {
                                copies.push(redis::cmd(publish).arg(ch).arg(msg).to_owned());
                            }
                            let _ = j.reply.send(ack);
                        }
                        if let Err(e) = writer.run_all(copies).await {
                            warn!(error = %e, "redis: publishing senders' copies failed");
                        }
                    }
                    Err(e) => {
                        // Some of the batch may have been stored: their
                        // senders resend with the same clientMsgId and get
                        // the original ack.
                        warn!(error = %e, n = batch.len(), "redis append failed");
                        crate::telemetry::store_error();
                        for j in batch {
                            let _ = j.reply.send(Err(unavailable(&e)));
                        }
                    }
                }
            }
        });
        Ok(Self {
            conn,
            jobs,
            retention,
            dedupe_window,
        })
    }

    fn append_cmd(
        &self,
        req: AppendRequest,
    ) -> Result<(redis::Cmd, Option<Publication>), StoreError> {
        let mut message = req.message;
        message.seq = Some(u64::MAX);
        let text = String::from_utf8(message.to_bytes().to_vec())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let marker = format!("\"seq\":{}", u64::MAX);
        // The last occurrence is the field: only numbers and booleans follow it.
        let at = text
            .rfind(&marker)
            .ok_or_else(|| StoreError::Corrupt("seq marker missing".into()))?;
        let pre = format!("{}\"seq\":", &text[..at]);
        let post = text[at + marker.len()..].to_string();
        let (target, channel_name, copy) = match &req.channel {
            Channel::Room(r) => (Target::Room(r.clone()), room_channel(r), None),
            Channel::Inbox(u) => {
                let sender = message.send_user_id.clone();
                let copy = (sender != *u).then(|| {
                    let copy = Delivered {
                        seq: None,
                        ..message.clone()
                    };
                    let header = envelope_header(&Target::User(sender.clone()), req.origin, false);
                    let mut msg = format!("- {header}\n").into_bytes();
                    msg.extend_from_slice(&copy.to_bytes());
                    (user_channel(&sender), msg)
                });
                (Target::User(u.clone()), user_channel(u), copy)
            }
        };
        let exclude = match req.channel {
            Channel::Room(_) => req.origin,
            Channel::Inbox(_) => None,
        };
        let header = envelope_header(&target, exclude, false);
        let mut keys = vec![seq_key(&req.channel), log_key(&req.channel)];
        if let Some(d) = &req.dedupe {
            keys.push(format!(
                "rtgate:{}:dd:{}:{}",
                tag(&req.channel),
                d.user,
                d.client_msg_id
            ));
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(APPEND).arg(keys.len()).arg(keys);
        cmd.arg(pre)
            .arg(post)
            .arg(header)
            .arg(self.dedupe_window.as_millis() as u64)
            .arg(self.retention.max_count)
            .arg(&message.msg_id)
            .arg(message.ts)
            .arg(channel_name)
            .arg(self.conn.publish_command());
        Ok((cmd, copy))
    }
}

fn parse_ack(v: Value) -> Result<Appended, StoreError> {
    let (dup, ack): (i64, String) = redis::from_redis_value(v).map_err(unavailable)?;
    let mut f = ack.split(' ');
    let bad = || StoreError::Corrupt(format!("bad ack {ack:?}"));
    let msg_id = f.next().ok_or_else(bad)?.to_string();
    let seq = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ts = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(Appended {
        msg_id,
        seq,
        ts,
        duplicate: dup == 1,
    })
}

/// One entry of an `XRANGE` answer: its id and its field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn seq_of(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

impl Store for RedisStore {
    fn append(&self, req: AppendRequest) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let (cmd, copy) = match self.append_cmd(req) {
            Ok(c) => c,
            Err(e) => return ready(Err(e)).boxed(),
        };
        let (reply, rx) = oneshot::channel();
        match self.jobs.try_send(Job { cmd, copy, reply }) {
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
        let mut conn = self.conn.clone();
        async move {
            let latest: Option<u64> = conn.get(&seq).await.map_err(unavailable)?;
            let latest = latest.unwrap_or(0);
            let first: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&log)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let first_kept = first
                .first()
                .and_then(|(id, _)| seq_of(id))
                .unwrap_or(latest + 1);
            let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&log)
                .arg(format!("{}-0", since + 1))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut page = Page {
                latest,
                last: since,
                gap: since + 1 < first_kept && since < latest,
                ..Page::default()
            };
            for (id, fields) in entries {
                let payload = fields
                    .into_iter()
                    .find(|(k, _)| k == "p")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let text =
                    String::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                page.messages.push(
                    RawValue::from_string(text).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                page.last = seq_of(&id).unwrap_or(page.last);
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
        let key = format!("rtgate:cursor:{user}");
        let mut conn = self.conn.clone();
        async move {
            let v: Option<u64> = conn.get(key).await.map_err(unavailable)?;
            Ok(v.unwrap_or(0))
        }
        .boxed()
    }

    fn set_cursor(&self, user: &Id, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let key = format!("rtgate:cursor:{user}");
        let mut conn = self.conn.clone();
        async move {
            redis::cmd("EVAL")
                .arg(CURSOR)
                .arg(1)
                .arg(key)
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
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }
}

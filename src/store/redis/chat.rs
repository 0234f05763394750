//! [`ChatStore`] over Redis. A message is found by its `msgId` through an
//! index key per message (`rtgate:mid:<msgId>`, the channel and seq,
//! written by the writer right after the append, and again by a resend's
//! duplicate answer, expiring with the retention age). Read positions live in a hash per channel (in the
//! channel's slot) and a hash per user (in its inbox's slot). Unread
//! counts come from `n`, kept on every log entry by the append script: how
//! many entries before it count as unread; the channel's total minus the
//! `n` of the first entry after a position is what follows it. A Redis
//! stream cannot change an entry, so a redaction deletes the entry and
//! keeps its new payload in a sorted set by seq that reads merge in.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{RedisStore, StreamEntry, log_key, seq_key, seq_of, unavailable};
use crate::model::Channel;
use crate::protocol::Id;
use crate::redis_io::envelope::tag;
use crate::store::chat::{ChatStore, Located, MAX_READS_PAGE, ReadMark, ReadsPage};
use crate::store::{StoreError, channel_name, channel_of};

/// KEYS: the channel's reads hash, its seq. ARGV: user, seq. Moves the
/// position forward only, never past the channel's latest; answers it. The
/// hash expires with the channel (the append script renews both).
const SET_READ: &str = r#"
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local v = math.min(tonumber(ARGV[2]), latest)
if v > cur then
  redis.call('HSET', KEYS[1], ARGV[1], v)
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
  return v
end
return cur
"#;

/// KEYS: the user's positions hash. ARGV: channel key, seq. Forward only.
const SET_USER_READ: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"#;

/// KEYS: log, unread count, redactions. ARGV: position. How many entries
/// after the position count as unread.
const UNREAD: &str = r#"
local after = tonumber(ARGV[1])
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local first, n
local e = redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+', 'COUNT', 1)
if #e == 1 then
  first = tonumber(string.match(e[1][1], '^(%d+)'))
  local f = e[1][2]
  for i = 1, #f, 2 do if f[i] == 'n' then n = tonumber(f[i + 1]) end end
  if n == nil then return #redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+') end
end
local r = redis.call('ZRANGE', KEYS[3], '(' .. after, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
if #r == 2 and (first == nil or tonumber(r[2]) < first) then
  n = tonumber(string.match(r[1], '^(%d+) '))
end
if n == nil then return 0 end
return math.max(0, total - n)
"#;

/// How many entries of the channel before each entry count as unread.
pub(super) fn count_key(c: &Channel) -> String {
    format!("rtgate:{}:n", tag(c))
}

/// Redacted entries: members `"<n> <payload>"` scored by seq.
pub(super) fn redacted_key(c: &Channel) -> String {
    format!("rtgate:{}:red", tag(c))
}

/// Read positions of a channel's members; expires with the channel.
pub(super) fn reads_key(c: &Channel) -> String {
    format!("rtgate:{}:reads", tag(c))
}

/// A user's read positions, in the slot of its inbox.
fn user_reads_key(user: &Id) -> String {
    format!("rtgate:{}:myreads", tag(&Channel::Inbox(user.clone())))
}

fn index_key(msg_id: &str) -> String {
    format!("rtgate:mid:{msg_id}")
}

/// The index entry of a stored message, for the writer's pipeline.
pub(super) fn index_entry(msg_id: &str, c: &Channel, seq: u64, age: Duration) -> redis::Cmd {
    redis::cmd("SET")
        .arg(index_key(msg_id))
        .arg(format!("{seq} {}", channel_name(c)))
        .arg("PX")
        .arg(age.as_millis().max(1) as u64)
        .to_owned()
}

/// The payload of a stream entry, and its `n`.
fn fields(entry: StreamEntry) -> (Vec<u8>, Option<String>) {
    let (mut p, mut n) = (Vec::new(), None);
    for (k, v) in entry.1 {
        match k.as_str() {
            "p" => p = v,
            "n" => n = String::from_utf8(v).ok(),
            _ => {}
        }
    }
    (p, n)
}

/// A read page's entries as `(seq, payload)`.
pub(super) fn plain(entries: Vec<StreamEntry>) -> Vec<(u64, Vec<u8>)> {
    entries
        .into_iter()
        .filter_map(|e| Some((seq_of(&e.0)?, fields(e).0)))
        .collect()
}

/// Merges the redactions of a channel into a read page's entries: each
/// `(seq, payload)` of both, in seq order, at most `limit`.
pub(super) async fn merge_redacted(
    conn: &mut crate::redis_io::RedisConn,
    channel: &Channel,
    since: u64,
    limit: usize,
    entries: Vec<StreamEntry>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut out = plain(entries);
    let red: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(redacted_key(channel))
        .arg(format!("({since}"))
        .arg("+inf")
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    if red.is_empty() {
        return Ok(out);
    }
    for (member, score) in red {
        let payload = match member.iter().position(|b| *b == b' ') {
            Some(i) => member[i + 1..].to_vec(),
            None => continue,
        };
        out.push((score as u64, payload));
    }
    out.sort_by_key(|(s, _)| *s);
    out.dedup_by_key(|(s, _)| *s);
    out.truncate(limit);
    Ok(out)
}

impl ChatStore for RedisStore {
    fn locate(&self, msg_ids: Vec<String>) -> BoxFuture<'static, Result<Vec<Located>, StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            if msg_ids.is_empty() {
                return Ok(Vec::new());
            }
            let cmds = msg_ids
                .iter()
                .map(|id| redis::cmd("GET").arg(index_key(id)).to_owned())
                .collect();
            let found = conn.run_all(cmds).await.map_err(unavailable)?;
            let mut out = Vec::new();
            for (id, v) in msg_ids.into_iter().zip(found) {
                let Ok(Some(entry)) = redis::from_redis_value::<Option<String>>(v) else {
                    continue;
                };
                let Some((seq, name)) = entry.split_once(' ') else {
                    continue;
                };
                let (Ok(seq), Some(channel)) = (seq.parse::<u64>(), channel_of(name)) else {
                    continue;
                };
                let entry: Vec<StreamEntry> = redis::cmd("XRANGE")
                    .arg(log_key(&channel))
                    .arg(format!("{seq}-0"))
                    .arg(format!("{seq}-1"))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let page = merge_redacted(&mut conn, &channel, seq - 1, 1, entry).await?;
                if let Some((s, payload)) = page.into_iter().next()
                    && s == seq
                {
                    out.push(Located {
                        msg_id: id,
                        channel,
                        seq,
                        payload: Bytes::from(payload),
                    });
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn redact(
        &self,
        channel: &Channel,
        seq: u64,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (log, red) = (log_key(channel), redacted_key(channel));
        let mut conn = self.conn.clone();
        async move {
            let entry: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&log)
                .arg(format!("{seq}-0"))
                .arg(format!("{seq}-1"))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let n = match entry.into_iter().next() {
                Some(e) => fields(e).1.unwrap_or_else(|| "0".into()),
                None => {
                    // Already redacted (or gone): replace the redaction.
                    let old: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                        .arg(&red)
                        .arg(seq)
                        .arg(seq)
                        .arg("BYSCORE")
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    let Some(old) = old.into_iter().next() else {
                        return Ok(());
                    };
                    let n = old.split(|b| *b == b' ').next().unwrap_or(b"0");
                    String::from_utf8_lossy(n).into_owned()
                }
            };
            let mut member = format!("{n} ").into_bytes();
            member.extend_from_slice(&payload);
            redis::pipe()
                .atomic()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&red)
                .arg(seq)
                .arg(seq)
                .ignore()
                .cmd("ZADD")
                .arg(&red)
                .arg(seq)
                .arg(member)
                .ignore()
                .cmd("XDEL")
                .arg(&log)
                .arg(format!("{seq}-1"))
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn set_reads(&self, marks: Vec<ReadMark>) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            let cmds = marks
                .iter()
                .map(|m| {
                    redis::cmd("EVAL")
                        .arg(SET_READ)
                        .arg(2)
                        .arg(reads_key(&m.channel))
                        .arg(seq_key(&m.channel))
                        .arg(m.user.as_str())
                        .arg(m.seq)
                        .to_owned()
                })
                .collect();
            let answers = conn.run_all(cmds).await.map_err(unavailable)?;
            let mut out = Vec::with_capacity(marks.len());
            for v in answers {
                out.push(redis::from_redis_value::<u64>(v).map_err(unavailable)?);
            }
            let cmds = marks
                .iter()
                .zip(&out)
                .filter(|(_, pos)| **pos > 0)
                .map(|(m, pos)| {
                    redis::cmd("EVAL")
                        .arg(SET_USER_READ)
                        .arg(1)
                        .arg(user_reads_key(&m.user))
                        .arg(channel_name(&m.channel))
                        .arg(*pos)
                        .to_owned()
                })
                .collect();
            conn.run_all(cmds).await.map_err(unavailable)?;
            Ok(out)
        }
        .boxed()
    }

    fn reads(
        &self,
        channel: &Channel,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<ReadsPage, StoreError>> {
        let key = reads_key(channel);
        let limit = limit.clamp(1, MAX_READS_PAGE);
        let mut conn = self.conn.clone();
        async move {
            // HSCAN's cursor is the page's `next`; a small hash comes whole.
            let (cursor, pairs): (String, Vec<(String, u64)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(after.unwrap_or_else(|| "0".into()))
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut page = ReadsPage {
                next: (cursor != "0").then_some(cursor),
                ..ReadsPage::default()
            };
            for (user, seq) in pairs {
                if let Ok(u) = Id::parse(&user) {
                    page.reads.push((u, seq));
                }
            }
            page.reads.sort();
            Ok(page)
        }
        .boxed()
    }

    fn read_positions(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<(Channel, u64)>, StoreError>> {
        let key = user_reads_key(user);
        let mut conn = self.conn.clone();
        async move {
            let all: Vec<(String, u64)> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(all
                .into_iter()
                .filter_map(|(c, s)| Some((channel_of(&c)?, s)))
                .collect())
        }
        .boxed()
    }

    fn unread_many(
        &self,
        positions: Vec<(Channel, u64)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            // One pipeline: a login's rooms in one round trip.
            let cmds = positions
                .iter()
                .map(|(c, after)| {
                    redis::cmd("EVAL")
                        .arg(UNREAD)
                        .arg(3)
                        .arg(log_key(c))
                        .arg(count_key(c))
                        .arg(redacted_key(c))
                        .arg((*after).min(crate::protocol::command::MAX_POSITION - 1))
                        .to_owned()
                })
                .collect();
            let answers = conn.run_all(cmds).await.map_err(unavailable)?;
            answers
                .into_iter()
                .map(|v| redis::from_redis_value::<u64>(v).map_err(unavailable))
                .collect()
        }
        .boxed()
    }
}

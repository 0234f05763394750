//! The outbox in Redis: one stream of events, read through a consumer
//! group so that every node takes its share; an event a node claimed and
//! never acked (it died) is claimed again by another after a while.

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};

use crate::model::now_ms;
use crate::redis_io::RedisConn;
use crate::store::{OutboxDepth, OutboxEntry, OutboxLimits, StoreError};

/// The stream.
pub(super) const KEY: &str = "rtgate:{outbox}";
/// The consumer group every node reads through.
const GROUP: &str = "rtgate";
/// An event claimed this long ago and not acked is handed out again.
const RECLAIM_MS: u64 = 30_000;
/// Entries read at each end of the stream to estimate its bytes.
const SAMPLE: usize = 10;
/// Events the stream holds at most whatever its bounds say (`XADD MAXLEN
/// ~`), should the trim not run: a backstop, not the bound.
const HARD_CAP: u64 = 1_000_000;

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis outbox: {e}"))
}

/// The XADD of one event.
pub(super) fn add(body: &str) -> redis::Cmd {
    redis::cmd("XADD")
        .arg(KEY)
        .arg("MAXLEN")
        .arg("~")
        .arg(HARD_CAP)
        .arg("*")
        .arg("e")
        .arg(body)
        .to_owned()
}

fn entry(id: StreamId) -> Option<OutboxEntry> {
    let body = match id.map.get("e")? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    Some(OutboxEntry { key: id.id, body })
}

/// Up to `limit` events for `consumer`: first those another consumer left
/// unacked for too long, then new ones.
pub(super) async fn claim(
    conn: &mut RedisConn,
    consumer: &str,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    // The group exists once; creating it again is refused with BUSYGROUP.
    let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(KEY)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(unavailable(e));
    }
    let stale: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(KEY)
        .arg(GROUP)
        .arg(consumer)
        .arg(RECLAIM_MS)
        .arg("0-0")
        .arg("COUNT")
        .arg(limit)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    let mut out: Vec<OutboxEntry> = stale.claimed.into_iter().filter_map(entry).collect();
    if out.len() < limit {
        let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(limit - out.len())
            .arg("STREAMS")
            .arg(KEY)
            .arg(">")
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        for key in fresh.map(|r| r.keys).unwrap_or_default() {
            out.extend(key.ids.into_iter().filter_map(entry));
        }
    }
    Ok(out)
}

/// Acks and removes delivered events.
pub(super) async fn ack(conn: &mut RedisConn, ids: Vec<String>) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ack = redis::cmd("XACK").arg(KEY).arg(GROUP).arg(&ids).to_owned();
    let del = redis::cmd("XDEL").arg(KEY).arg(&ids).to_owned();
    conn.run_all(vec![ack, del])
        .await
        .map(|_| ())
        .map_err(unavailable)
}

/// What the stream holds: its entries, and the bytes of their bodies,
/// estimated from the newest and oldest ten (reading every entry to count
/// would cost as much as the outbox is large).
pub(super) async fn depth(conn: &mut RedisConn) -> Result<OutboxDepth, StoreError> {
    let events: u64 = conn
        .query_at_key(redis::cmd("XLEN").arg(KEY).to_owned(), KEY)
        .await
        .map_err(unavailable)?;
    if events == 0 {
        return Ok(OutboxDepth::default());
    }
    let mut sample: Vec<StreamId> = Vec::new();
    for (cmd, from, to) in [("XRANGE", "-", "+"), ("XREVRANGE", "+", "-")] {
        let page: StreamRangeReply = conn
            .query_at_key(
                redis::cmd(cmd)
                    .arg(KEY)
                    .arg(from)
                    .arg(to)
                    .arg("COUNT")
                    .arg(SAMPLE)
                    .to_owned(),
                KEY,
            )
            .await
            .map_err(unavailable)?;
        sample.extend(page.ids);
    }
    let sizes: Vec<u64> = sample
        .into_iter()
        .filter_map(entry)
        .map(|e| e.body.len() as u64)
        .collect();
    let average = sizes.iter().sum::<u64>() / (sizes.len() as u64).max(1);
    Ok(OutboxDepth {
        events,
        bytes: events * average,
    })
}

/// Drops the events past `limits`: older than the age (the stream's ids
/// are times, so `XTRIM MINID`), then the oldest while the estimated bytes
/// of the bodies are over the byte bound. Answers how many went for each reason.
pub(super) async fn trim(
    conn: &mut RedisConn,
    limits: OutboxLimits,
) -> Result<(u64, u64), StoreError> {
    let cutoff = now_ms().saturating_sub(limits.max_age.as_millis() as u64);
    let aged: u64 = conn
        .query_at_key(
            redis::cmd("XTRIM")
                .arg(KEY)
                .arg("MINID")
                .arg(cutoff)
                .to_owned(),
            KEY,
        )
        .await
        .map_err(unavailable)?;
    let now = depth(conn).await?;
    let mut over = 0;
    if now.bytes > limits.max_bytes {
        let keep = now.events * limits.max_bytes / now.bytes;
        over = conn
            .query_at_key(
                redis::cmd("XTRIM")
                    .arg(KEY)
                    .arg("MAXLEN")
                    .arg(keep)
                    .to_owned(),
                KEY,
            )
            .await
            .map_err(unavailable)?;
    }
    Ok((aged, over))
}

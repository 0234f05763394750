//! The Redis store's writer task: appends in order, batched into one
//! pipeline, each planned at a predicted seq and planned again when the
//! script says the channel moved; acks after the replicas asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::{Replication, chat, log_key, outbox, seq_key, unavailable};
use crate::model::event::message_stored;
use crate::model::{Channel, now_ms, plan};
use crate::redis_io::RedisConn;
use crate::redis_io::envelope::{self, same_slot, tag};
use crate::store::{AppendRequest, Appended, Retention, StoreError};

/// Requests waiting for the writer before appends are refused (503).
const QUEUE: usize = 65_536;
/// Most appends in one pipeline.
const MAX_BATCH: usize = 256;
/// Times one append is planned again after losing a race for its channel
/// before it is answered 503.
const MAX_ATTEMPTS: u32 = 64;
/// Channels whose last seq the writer remembers (a guess: a wrong one costs
/// one round trip).
const SEQ_CACHE: usize = 100_000;
/// After a failed write, how long appends are answered 503 at once instead
/// of each waiting for Redis's deadline.
const BACKOFF: Duration = Duration::from_millis(500);

/// KEYS: seq, log, unread count, redactions, read positions, [dedupe]. ARGV: the seq the
/// writer expects the channel to be at, the msgId expected as the stream's
/// last entry ('' for none), the payload, msgId, ts, dedupe window (ms),
/// maxlen, the publish command (`PUBLISH`, or `SPUBLISH` in a Redis
/// Cluster), the retention age (ms) and its cutoff (ms since the epoch),
/// 1 when the message counts as unread (else 0), then channel/message
/// pairs to publish. Each entry keeps `n`: how many entries before it
/// count as unread (see `chat.rs`).
/// Answers {0, ack}, {1, ack} for a resend, or {2, seq} when the channel is
/// not where the writer expected it. Retention: MAXLEN by count, up to
/// eight entries older than the cutoff removed per append, and the whole
/// channel (log and seq) expires after the age when it goes quiet; a client
/// resuming past its end is then told it was reset.
const APPEND: &str = r#"
if #KEYS == 6 then
  local d = redis.call('GET', KEYS[6])
  if d then return {1, d} end
end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return {2, tostring(cur)} end
if ARGV[2] ~= '' then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last == 0 or last[1][2][4] ~= ARGV[2] then return {2, tostring(cur)} end
end
local seq = cur + 1
redis.call('SET', KEYS[1], seq)
local n = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[7], seq .. '-1', 'p', ARGV[3], 'm', ARGV[4], 't', ARGV[5], 'n', n)
if ARGV[11] == '1' then redis.call('SET', KEYS[3], n + 1) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (seq - tonumber(ARGV[7]) + 1))
local cutoff = tonumber(ARGV[10])
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 8)) do
  local t = tonumber(e[2][6])
  if t and t < cutoff then redis.call('XDEL', KEYS[2], e[1]) else break end
end
redis.call('PEXPIRE', KEYS[2], ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('PEXPIRE', KEYS[3], ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('PEXPIRE', KEYS[5], ARGV[9])
local ack = ARGV[4] .. ' ' .. seq .. ' ' .. ARGV[5]
if #KEYS == 6 then redis.call('SET', KEYS[6], ack, 'PX', ARGV[6]) end
for i = 12, #ARGV, 2 do redis.call(ARGV[8], ARGV[i], ARGV[i + 1]) end
return {0, ack}
"#;

/// A message to publish: Pub/Sub channel and wire bytes.
type Publication = (String, Vec<u8>);

pub(super) struct Job {
    pub(super) req: AppendRequest,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
    pub(super) attempts: u32,
}

/// One job planned for a seq: its script call, and the deliveries in
/// another hash slot, published after the script succeeded.
struct Planned {
    cmd: redis::Cmd,
    /// The message as stored, for its `message.stored` event.
    payload: bytes::Bytes,
    /// The channel it appends to.
    channel: Channel,
    after: Vec<Publication>,
    seq: u64,
}

/// The writer task's state: appends in order, planned at a predicted seq.
struct Writer {
    conn: RedisConn,
    retention: Retention,
    dedupe_window: Duration,
    /// Last known seq per channel (hash tag): the next prediction.
    known: HashMap<String, u64>,
    /// Appends that lost a race and are planned again before newer ones.
    retry: VecDeque<Job>,
    /// Set after a failed write: until then appends fail fast.
    down_until: Option<Instant>,
    /// Replicas an append must reach before its ack.
    replication: Replication,
    /// Set when stored messages leave `message.stored` events.
    events: Arc<AtomicBool>,
}

/// Starts the writer task; appends are queued on the answer.
pub(super) fn start(
    conn: RedisConn,
    retention: Retention,
    dedupe_window: Duration,
    replication: Replication,
    events: Arc<AtomicBool>,
) -> mpsc::Sender<Job> {
    let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
    let writer = Writer {
        conn,
        retention,
        dedupe_window,
        known: HashMap::new(),
        retry: VecDeque::new(),
        down_until: None,
        replication,
        events,
    };
    tokio::spawn(writer.run(rx));
    jobs
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            let mut batch: Vec<Job> = self.retry.drain(..).collect();
            if batch.is_empty() {
                match rx.recv().await {
                    Some(j) => batch.push(j),
                    None => return,
                }
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.write(batch).await;
        }
    }

    /// Plans every job of a batch, runs the scripts in one pipeline, and
    /// answers, retries or publishes what each script said.
    async fn write(&mut self, batch: Vec<Job>) {
        if let Some(until) = self.down_until {
            if Instant::now() < until {
                for j in batch {
                    let _ = j.reply.send(Err(StoreError::Unavailable(
                        "redis is unreachable; retry".into(),
                    )));
                }
                return;
            }
            self.down_until = None;
        }
        // Within a batch, a channel's next job expects the previous one.
        let mut ahead: HashMap<String, (u64, String)> = HashMap::new();
        let mut planned = Vec::with_capacity(batch.len());
        let mut jobs = Vec::with_capacity(batch.len());
        for mut job in batch {
            let t = tag(&job.req.channel);
            let (expected, predecessor) = match ahead.get(&t) {
                Some((seq, msg_id)) => (*seq, msg_id.clone()),
                None => (self.known.get(&t).copied().unwrap_or(0), String::new()),
            };
            match self.plan(&mut job.req, expected, &predecessor) {
                Ok(p) => {
                    ahead.insert(t, (p.seq, job.req.message.msg_id.clone()));
                    planned.push(p);
                    jobs.push(job);
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        let cmds = planned.iter().map(|p| p.cmd.clone()).collect();
        let results = match self.conn.run_all(cmds).await {
            Ok(r) => r,
            Err(e) => {
                // Some of the batch may have been stored: their senders
                // resend with the same clientMsgId and get the original ack.
                warn!(error = %e, n = jobs.len(), "redis append failed");
                crate::telemetry::store_error();
                self.down_until = Some(Instant::now() + BACKOFF);
                for j in jobs {
                    let _ = j.reply.send(Err(unavailable(&e)));
                }
                return;
            }
        };
        let mut after = Vec::new();
        let mut answered = Vec::new();
        let mut stored_events = Vec::new();
        for ((mut job, p), v) in jobs.into_iter().zip(planned).zip(results) {
            let t = tag(&job.req.channel);
            match parse_answer(v) {
                Ok(Answer::Stored(ack)) => {
                    stored_events.push(chat::index_entry(
                        &ack.msg_id,
                        &p.channel,
                        ack.seq,
                        self.retention.max_age,
                    ));
                    self.remember(t, p.seq);
                    after.extend(p.after);
                    if self.events.load(Ordering::Acquire)
                        && let Some(e) = message_stored(&p.payload)
                    {
                        stored_events.push(outbox::add(&e));
                    }
                    answered.push((job, seq_key(&p.channel), ack));
                }
                Ok(Answer::Duplicate(ack)) => {
                    // The index entry again (it is idempotent): a node that
                    // died between the append and its entry left none, and
                    // this resend is how the sender, never acked, recovers.
                    stored_events.push(chat::index_entry(
                        &ack.msg_id,
                        &p.channel,
                        ack.seq,
                        self.retention.max_age,
                    ));
                    answered.push((job, seq_key(&p.channel), ack));
                }
                Ok(Answer::Moved(current)) => {
                    self.remember(t, current);
                    job.attempts += 1;
                    if job.attempts >= MAX_ATTEMPTS {
                        let _ = job.reply.send(Err(StoreError::Unavailable(
                            "too much contention on the channel; retry".into(),
                        )));
                    } else {
                        self.retry.push_back(job);
                    }
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        // Their events (and msgId index entries) before their acks: after a
        // crash here the sender resends, and the resend (a duplicate)
        // writes the index entry but no second event; an outbox Redis
        // cannot take loses these events, logged.
        if let Err(e) = self.conn.run_all(stored_events).await {
            warn!(error = %e, "redis: message.stored events were not recorded");
        }
        // Acks only once the appends reached their replicas (a failover to
        // one of them then keeps every acked message).
        let replicated = self.replicated(&answered).await;
        for (job, _, ack) in answered {
            let _ = job.reply.send(match &replicated {
                Ok(()) => Ok(ack),
                Err(e) => Err(e.clone()),
            });
        }
        let publish = self.conn.publish_command();
        let cmds = after
            .into_iter()
            .map(|(ch, msg)| redis::cmd(publish).arg(ch).arg(msg).to_owned())
            .collect();
        if let Err(e) = self.conn.run_all(cmds).await {
            warn!(error = %e, "redis: publishing senders' copies failed");
        }
    }

    /// Waits for the configured replicas of the answered appends' slots.
    async fn replicated(&mut self, answered: &[(Job, String, Appended)]) -> Result<(), StoreError> {
        let want = self.replication.replicas;
        if want == 0 || answered.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<String> = answered.iter().map(|(_, k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        match self
            .conn
            .wait_replicas(&keys, want, self.replication.timeout)
            .await
        {
            Ok(n) if n >= want => Ok(()),
            Ok(n) => Err(StoreError::Unavailable(format!(
                "stored on the primary but on {n} of {want} replicas within {} ms; resend",
                self.replication.timeout.as_millis()
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn remember(&mut self, tag: String, seq: u64) {
        if self.known.len() >= SEQ_CACHE {
            self.known.clear();
        }
        self.known.insert(tag, seq);
    }

    /// The script call that appends `req` as seq `expected + 1`, with its
    /// deliveries planned for that seq.
    fn plan(
        &self,
        req: &mut AppendRequest,
        expected: u64,
        predecessor: &str,
    ) -> Result<Planned, StoreError> {
        let seq = expected + 1;
        req.message.seq = Some(seq);
        let age_ms = self.retention.max_age.as_millis() as u64;
        let payload = req.message.to_bytes();
        let payload_kept = payload.clone();
        let mut keys = vec![
            seq_key(&req.channel),
            log_key(&req.channel),
            chat::count_key(&req.channel),
            chat::redacted_key(&req.channel),
            chat::reads_key(&req.channel),
        ];
        if let Some(d) = &req.dedupe {
            // The user's length first: no two (user, id) pairs share a key.
            keys.push(format!(
                "rtgate:{}:dd:{}:{}:{}",
                tag(&req.channel),
                d.user.as_str().len(),
                d.user,
                d.client_msg_id
            ));
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(APPEND).arg(keys.len()).arg(keys);
        cmd.arg(expected)
            .arg(predecessor)
            .arg(&payload[..])
            .arg(&req.message.msg_id)
            .arg(req.message.ts)
            .arg(self.dedupe_window.as_millis() as u64)
            .arg(self.retention.max_count)
            .arg(self.conn.publish_command())
            .arg(age_ms)
            .arg(now_ms().saturating_sub(age_ms))
            .arg(u8::from(crate::store::counts_as_unread(
                req.message.msg_type,
            )));
        let mut after = Vec::new();
        for env in plan(&req.message, payload, &req.channel, req.origin, req.trace) {
            let (channel, msg) = envelope::encode(&env);
            // In a Redis Cluster a script may publish only in its own slot.
            if !self.conn.is_cluster() || same_slot(&env.target, &req.channel) {
                cmd.arg(channel).arg(msg);
            } else {
                after.push((channel, msg));
            }
        }
        Ok(Planned {
            cmd,
            payload: payload_kept,
            after,
            seq,
            channel: req.channel.clone(),
        })
    }
}

/// What the append script said.
enum Answer {
    Stored(Appended),
    Duplicate(Appended),
    /// The channel is at this seq, not where the writer expected it.
    Moved(u64),
}

fn parse_answer(v: Value) -> Result<Answer, StoreError> {
    let (kind, text): (i64, String) = redis::from_redis_value(v).map_err(unavailable)?;
    match kind {
        0 => parse_ack(&text, false).map(Answer::Stored),
        1 => parse_ack(&text, true).map(Answer::Duplicate),
        _ => text
            .parse()
            .map(Answer::Moved)
            .map_err(|_| StoreError::Corrupt(format!("bad seq {text:?}"))),
    }
}

fn parse_ack(ack: &str, duplicate: bool) -> Result<Appended, StoreError> {
    let mut f = ack.split(' ');
    let bad = || StoreError::Corrupt(format!("bad ack {ack:?}"));
    let msg_id = f.next().ok_or_else(bad)?.to_string();
    let seq = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ts = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(Appended {
        msg_id,
        seq,
        ts,
        duplicate,
    })
}

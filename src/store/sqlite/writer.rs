//! The writer thread: takes appends and cursor moves from a queue, commits
//! them in groups (one transaction, one fsync), and only then acks them and
//! hands them to the commit sink, in seq order per channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::retention::TRIM_EVERY;
use super::{Request, SeqIndex, channel_key};
use crate::model::{Channel, now_ms};
use crate::protocol::Id;
use crate::store::{AppendRequest, Appended, CommitSink, Committed, Retention, StoreError};

/// Channels whose last seq the writer keeps in memory.
const SEQ_CACHE: usize = 100_000;
/// Most requests one transaction takes.
const MAX_BATCH: usize = 1024;

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) sink: Arc<dyn CommitSink>,
    pub(super) retention: Retention,
    pub(super) dedupe_window: Duration,
    /// channel key -> last seq, loaded on first use.
    pub(super) last_seq: HashMap<String, u64>,
    pub(super) failing: Arc<Mutex<Option<String>>>,
    pub(super) last_trim: Instant,
    /// Something was written since the last trim.
    pub(super) dirty: bool,
    /// When idle channels were last forgotten.
    pub(super) last_forget: Instant,
    /// The in-memory mirror of latest seqs and cursors, kept here.
    pub(super) index: Arc<SeqIndex>,
    /// The event outbox's bounds, once set.
    pub(super) outbox_limits: Arc<Mutex<Option<crate::store::OutboxLimits>>>,
    /// Set when a stored message also leaves a `message.stored` event.
    pub(super) events: Arc<AtomicBool>,
}

/// One request of a batch, its reply taken aside.
enum Work {
    Append(Box<AppendRequest>),
    Cursor(Id, u64),
    Events(Vec<String>),
    EventsDone(Vec<i64>),
    Exec(super::chat::Write),
}

/// One append of a batch, between its insert and its commit.
struct Staged {
    ack: Option<Appended>,
    /// The committed message and its channel's key.
    committed: Option<(Committed, String)>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(TRIM_EVERY) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_trim();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.dirty = true;
            self.maybe_trim();
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let started = Instant::now();
        let size = batch.len();
        let snapshot = self.last_seq.clone();
        let mut staged = Vec::with_capacity(batch.len());
        let mut cursor_replies = Vec::new();
        let mut cursors_stored = Vec::new();
        let result = self.apply(batch, &mut staged, &mut cursor_replies, &mut cursors_stored);
        match result {
            Ok(()) => {
                crate::telemetry::store_commit(started.elapsed(), size);
                *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                // The mirror first, then the sessions: a login that reads
                // the mirror before this sees these messages arrive live.
                for (c, key) in staged.iter().filter_map(|s| s.committed.as_ref()) {
                    if let Some(seq) = c.message.seq {
                        self.index.appended(key, seq);
                    }
                }
                for (user, seq) in cursors_stored {
                    self.index.cursor_stored(user.as_str(), seq);
                }
                for s in staged {
                    if let Some((c, _)) = s.committed {
                        self.sink.committed(c);
                    }
                    let _ = s
                        .reply
                        .send(s.ack.ok_or(StoreError::Unavailable("not stored".into())));
                }
                for r in cursor_replies {
                    let _ = r.send(Ok(()));
                }
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.last_seq = snapshot;
                let msg = format!("write failed: {e}");
                tracing::error!(error = %e, "store commit failed");
                crate::telemetry::store_error();
                *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                // Everything in the transaction was rolled back: nothing is acked.
                for s in staged {
                    let _ = s.reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
                for r in cursor_replies {
                    let _ = r.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Runs a batch in one transaction. Every reply is kept in `staged` or
    /// `cursors` before its statement runs, so a failure can answer it.
    fn apply(
        &mut self,
        batch: Vec<Request>,
        staged: &mut Vec<Staged>,
        cursors: &mut Vec<oneshot::Sender<Result<(), StoreError>>>,
        cursors_stored: &mut Vec<(Id, u64)>,
    ) -> rusqlite::Result<()> {
        // Take every reply first: whatever fails below, each is answered.
        let mut work = Vec::with_capacity(batch.len());
        for req in batch {
            match req {
                Request::Append(req, reply) => {
                    staged.push(Staged {
                        ack: None,
                        committed: None,
                        reply,
                    });
                    work.push(Work::Append(req));
                }
                Request::Cursor(user, seq, reply) => {
                    cursors.push(reply);
                    work.push(Work::Cursor(user, seq));
                }
                Request::Events(events, reply) => {
                    cursors.push(reply);
                    work.push(Work::Events(events));
                }
                Request::EventsDone(ids, reply) => {
                    cursors.push(reply);
                    work.push(Work::EventsDone(ids));
                }
                Request::Exec(write, reply) => {
                    cursors.push(reply);
                    work.push(Work::Exec(write));
                }
            }
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut next = staged.iter_mut();
        for w in work {
            match w {
                Work::Append(req) => {
                    let (ack, committed) = self.append(*req)?;
                    let slot = next.next().expect("one slot per append");
                    slot.ack = Some(ack);
                    slot.committed = committed;
                }
                Work::Cursor(user, seq) => {
                    // Clamped to the inbox's latest seq in the same
                    // transaction: a cursor never runs ahead of the inbox.
                    let inbox = channel_key(&Channel::Inbox(user.clone()));
                    let stored: i64 = self
                        .conn
                        .prepare_cached(
                            "INSERT INTO cursors (user, seq) VALUES (?1,
                               min(?2, coalesce((SELECT last_seq FROM channels WHERE channel = ?3), 0)))
                             ON CONFLICT(user) DO UPDATE SET seq = max(seq, excluded.seq)
                             RETURNING seq",
                        )?
                        .query_row(params![user.as_str(), seq as i64, inbox], |r| r.get(0))?;
                    cursors_stored.push((user, stored as u64));
                }
                Work::Events(events) => {
                    for body in events {
                        self.event(&body)?;
                    }
                }
                Work::EventsDone(ids) => {
                    let mut del = self
                        .conn
                        .prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
                    for id in ids {
                        del.execute([id])?;
                    }
                }
                Work::Exec(write) => write(&self.conn)?,
            }
        }
        self.conn.execute_batch("COMMIT")
    }

    /// Puts one event in the outbox, inside the open transaction.
    fn event(&self, body: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT INTO outbox (body, ts) VALUES (?1, ?2)")?
            .execute(params![body, now_ms() as i64])
            .map(|_| ())
    }

    /// Inserts one message inside the open transaction; a new message comes
    /// back committed-to-be, with its channel's key (and, when events are
    /// on, its `message.stored` event in the same transaction).
    fn append(
        &mut self,
        mut req: AppendRequest,
    ) -> rusqlite::Result<(Appended, Option<(Committed, String)>)> {
        let now = now_ms();
        let key = channel_key(&req.channel);
        if let Some(d) = &req.dedupe {
            let found = self
                .conn
                .prepare_cached(
                    "SELECT msg_id, seq, ts FROM dedupe
                     WHERE user = ?1 AND channel = ?2 AND client_msg_id = ?3 AND expires > ?4",
                )?
                .query_row(
                    params![d.user.as_str(), key, d.client_msg_id, now as i64],
                    |r| {
                        Ok(Appended {
                            msg_id: r.get(0)?,
                            seq: r.get::<_, i64>(1)? as u64,
                            ts: r.get::<_, i64>(2)? as u64,
                            duplicate: true,
                        })
                    },
                )
                .optional()?;
            if let Some(dup) = found {
                return Ok((dup, None));
            }
        }
        let last = match self.last_seq.get(&key) {
            Some(s) => *s,
            None => self
                .conn
                .prepare_cached("SELECT last_seq FROM channels WHERE channel = ?1")?
                .query_row([&key], |r| r.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0) as u64,
        };
        let seq = last + 1;
        req.message.seq = Some(seq);
        let payload = req.message.to_bytes();
        self.conn
            .prepare_cached(
                "INSERT INTO messages (channel, seq, ts, payload, msg_id, counted, n)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                   coalesce((SELECT total FROM channels WHERE channel = ?1), 0))",
            )?
            .execute(params![
                key,
                seq as i64,
                req.message.ts as i64,
                &payload[..],
                req.message.msg_id,
                crate::store::counts_as_unread(req.message.msg_type)
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO channels (channel, last_seq, total) VALUES (?1, ?2, ?3)
                 ON CONFLICT(channel) DO UPDATE
                 SET last_seq = excluded.last_seq, total = total + excluded.total",
            )?
            .execute(params![
                key,
                seq as i64,
                crate::store::counts_as_unread(req.message.msg_type)
            ])?;
        // Retention by count, as part of the append: the rows that fall off
        // the end go in the same transaction (one, or a range after the
        // limit was lowered), so the table never grows past it.
        if seq > self.retention.max_count {
            self.conn
                .prepare_cached("DELETE FROM messages WHERE channel = ?1 AND seq <= ?2")?
                .execute(params![key, (seq - self.retention.max_count) as i64])?;
        }
        if self.last_seq.len() >= SEQ_CACHE {
            // A bound, not a policy: a miss costs one indexed read.
            self.last_seq.clear();
        }
        self.last_seq.insert(key.clone(), seq);
        let ack = Appended {
            msg_id: req.message.msg_id.clone(),
            seq,
            ts: req.message.ts,
            duplicate: false,
        };
        if let Some(d) = &req.dedupe {
            let expires = now + self.dedupe_window.as_millis() as u64;
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO dedupe (user, channel, client_msg_id, msg_id, seq, ts, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    d.user.as_str(),
                    key,
                    d.client_msg_id,
                    ack.msg_id,
                    seq as i64,
                    ack.ts as i64,
                    expires as i64
                ])?;
        }
        if self.events.load(Ordering::Acquire)
            && let Some(e) = crate::model::event::message_stored(&payload)
        {
            self.event(&e)?;
        }
        let committed = Committed {
            channel: req.channel,
            message: req.message,
            payload,
            origin: req.origin,
            trace: req.trace,
        };
        Ok((ack, Some((committed, key))))
    }
}

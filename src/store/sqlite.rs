//! The embedded durable [`Store`]: SQLite in WAL mode under the data folder.
//! One writer thread takes appends from a queue and commits them in groups
//! (one transaction and one fsync for many messages); an ack is sent only
//! after its group's commit. Reads use a separate connection.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{AppendRequest, Appended, CommitSink, Committed, Page, Retention, Store, StoreError};
use crate::model::{Channel, now_ms};
use crate::protocol::Id;

/// Channels whose last seq the writer keeps in memory.
const SEQ_CACHE: usize = 100_000;
/// Read connections.
const READERS: usize = 4;
/// Most requests one transaction takes.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before appends are refused (503).
const QUEUE: usize = 65_536;
/// How often the idle writer trims expired messages and dedupe keys.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// How often an idle writer trims (retention by age only moves with time).
const IDLE_TRIM_EVERY: Duration = Duration::from_secs(60);
/// Rows one trim step deletes at most (one transaction).
const TRIM_STEP: usize = 2_000;
/// How long one trim pass may hold the writer (it runs at most once a
/// second while there are writes).
const TRIM_BUDGET: Duration = Duration::from_millis(200);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    channel TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);
CREATE TABLE IF NOT EXISTS dedupe (
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (user, channel, client_msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_expires ON dedupe (expires);
CREATE TABLE IF NOT EXISTS cursors (
    user TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 2;
";

/// Version 1 deduped per user across channels; its entries live minutes,
/// so the table is dropped and recreated per (user, channel).
const MIGRATE_1_TO_2: &str = "DROP TABLE IF EXISTS dedupe;";

fn channel_key(c: &Channel) -> String {
    match c {
        Channel::Inbox(u) => format!("i:{u}"),
        Channel::Room(r) => format!("r:{r}"),
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

enum Request {
    Append(
        Box<AppendRequest>,
        oneshot::Sender<Result<Appended, StoreError>>,
    ),
    Cursor(Id, u64, oneshot::Sender<Result<(), StoreError>>),
}

/// The SQLite store.
pub struct SqliteStore {
    queue: SyncSender<Request>,
    /// Reads run on their own connections (WAL lets them run beside the
    /// writer), taken round robin so concurrent logins do not queue on one.
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// Set while the last commit failed; cleared by the next good one.
    failing: Arc<Mutex<Option<String>>>,
    /// Keeps the data folder's lock for the life of the store.
    _lock: File,
}

impl SqliteStore {
    /// Opens (or creates) `<data>/rtgate.db`. Fails with a clear error when
    /// the folder is locked by another rtgate, or the database is corrupt or
    /// not writable.
    pub fn open(
        data: &Path,
        sink: Arc<dyn CommitSink>,
        retention: Retention,
        dedupe_window: Duration,
    ) -> Result<Self, StoreError> {
        let lock_path = data.join("rtgate.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!(
                "{} is in use by another rtgate process",
                data.display()
            ))
        })?;
        let path = data.join("rtgate.db");
        let writer = open_conn(&path, true)?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| corrupt_or_unavailable(&path, e))?;
        if version == 1 {
            writer
                .execute_batch(MIGRATE_1_TO_2)
                .map_err(|e| corrupt_or_unavailable(&path, e))?;
        }
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| corrupt_or_unavailable(&path, e))?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| corrupt_or_unavailable(&path, e))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(format!("{}: {check}", path.display())));
        }
        let readers = (0..READERS)
            .map(|_| open_conn(&path, false).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (queue, rx) = sync_channel(QUEUE);
        let failing = Arc::new(Mutex::new(None));
        let writer = Writer {
            conn: writer,
            sink,
            retention,
            dedupe_window,
            last_seq: HashMap::new(),
            failing: failing.clone(),
            last_trim: Instant::now(),
            dirty: false,
            last_forget: Instant::now(),
        };
        std::thread::Builder::new()
            .name("rtgate-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            queue,
            readers: Arc::new(readers),
            next_reader: Default::default(),
            failing,
            _lock: lock,
        })
    }

    fn enqueue<T: Send + 'static>(
        &self,
        req: Request,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        match self.queue.try_send(req) {
            Ok(()) => async move { rx.await.unwrap_or(Err(StoreError::ShuttingDown)) }.boxed(),
            Err(TrySendError::Full(_)) => ready(Err(StoreError::Unavailable(
                "store queue is full; retry".into(),
            )))
            .boxed(),
            Err(TrySendError::Disconnected(_)) => ready(Err(StoreError::ShuttingDown)).boxed(),
        }
    }

    fn read_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let readers = self.readers.clone();
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % readers.len();
        async move {
            tokio::task::spawn_blocking(move || {
                let conn = readers[i].lock().unwrap_or_else(|p| p.into_inner());
                f(&conn)
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
        }
        .boxed()
    }
}

fn corrupt_or_unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(format!("{}: {e}", path.display()))
        }
        _ => StoreError::Unavailable(format!("{}: {e}", path.display())),
    }
}

fn open_conn(path: &PathBuf, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| corrupt_or_unavailable(path, e))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit (and
    // so an ack) means the WAL is fsynced.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
    )
    .map_err(|e| corrupt_or_unavailable(path, e))?;
    Ok(conn)
}

struct Writer {
    conn: Connection,
    sink: Arc<dyn CommitSink>,
    retention: Retention,
    dedupe_window: Duration,
    /// channel key -> last seq, loaded on first use.
    last_seq: HashMap<String, u64>,
    failing: Arc<Mutex<Option<String>>>,
    last_trim: Instant,
    /// Something was written since the last trim.
    dirty: bool,
    /// When idle channels were last forgotten.
    last_forget: Instant,
}

/// One append of a batch, between its insert and its commit.
struct Staged {
    ack: Option<Appended>,
    committed: Option<Committed>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
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
        let result = self.apply(batch, &mut staged, &mut cursor_replies);
        match result {
            Ok(()) => {
                crate::telemetry::store_commit(started.elapsed(), size);
                *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                for s in staged {
                    if let Some(c) = s.committed {
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
                    work.push(Ok(req));
                }
                Request::Cursor(user, seq, reply) => {
                    cursors.push(reply);
                    work.push(Err((user, seq)));
                }
            }
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut next = staged.iter_mut();
        for w in work {
            match w {
                Ok(req) => {
                    let (ack, committed) = self.append(*req)?;
                    let slot = next.next().expect("one slot per append");
                    slot.ack = Some(ack);
                    slot.committed = committed;
                }
                Err((user, seq)) => {
                    // Clamped to the inbox's latest seq in the same
                    // transaction: a cursor never runs ahead of the inbox.
                    let inbox = channel_key(&Channel::Inbox(user.clone()));
                    self.conn
                        .prepare_cached(
                            "INSERT INTO cursors (user, seq) VALUES (?1,
                               min(?2, coalesce((SELECT last_seq FROM channels WHERE channel = ?3), 0)))
                             ON CONFLICT(user) DO UPDATE SET seq = max(seq, excluded.seq)",
                        )?
                        .execute(params![user.as_str(), seq as i64, inbox])?;
                }
            }
        }
        self.conn.execute_batch("COMMIT")
    }

    /// Inserts one message inside the open transaction.
    fn append(
        &mut self,
        mut req: AppendRequest,
    ) -> rusqlite::Result<(Appended, Option<Committed>)> {
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
                "INSERT INTO messages (channel, seq, ts, payload) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key,
                seq as i64,
                req.message.ts as i64,
                &payload[..]
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO channels (channel, last_seq) VALUES (?1, ?2)
                 ON CONFLICT(channel) DO UPDATE SET last_seq = excluded.last_seq",
            )?
            .execute(params![key, seq as i64])?;
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
        let committed = Committed {
            channel: req.channel,
            message: req.message,
            payload,
            origin: req.origin,
        };
        Ok((ack, Some(committed)))
    }

    /// Trims after writes at most once a second, and otherwise once a minute
    /// (for retention by age): an idle node does not commit every second.
    fn maybe_trim(&mut self) {
        let due = if self.dirty {
            TRIM_EVERY
        } else {
            IDLE_TRIM_EVERY
        };
        if self.last_trim.elapsed() >= due {
            self.dirty = false;
            self.trim();
        }
    }

    /// Forgets channels with no message left (idle for longer than the
    /// retention age): their rows would otherwise pile up, one per made-up
    /// recipient. A client that later resumes past such a channel's end is
    /// told it was reset (`unrecovered`) and gets it from the start.
    fn forget_idle_channels(&mut self, started: Instant) -> usize {
        let mut total = 0;
        loop {
            let result = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
                let n = self.conn.execute(
                    "DELETE FROM channels WHERE channel IN
                     (SELECT c.channel FROM channels c
                      WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.channel = c.channel)
                      LIMIT ?1)",
                    params![TRIM_STEP as i64],
                )?;
                self.conn.execute_batch("COMMIT")?;
                Ok(n)
            });
            match result {
                Ok(n) => {
                    total += n;
                    if n < TRIM_STEP || started.elapsed() >= TRIM_BUDGET {
                        break;
                    }
                }
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    tracing::warn!(error = %e, "forgetting idle channels failed");
                    break;
                }
            }
        }
        if total > 0 {
            // Their cached seqs go too: a new message starts the channel anew.
            self.last_seq.clear();
        }
        total
    }

    /// Retention by age and expired dedupe keys, in steps of [`TRIM_STEP`]
    /// rows (one transaction each), repeated until the backlog is gone or
    /// [`TRIM_BUDGET`] is spent, so trimming keeps up with a sustained load
    /// without holding appends up for long. (Retention by count happens in
    /// each append.)
    fn trim(&mut self) {
        self.last_trim = Instant::now();
        let started = Instant::now();
        let mut total = 0;
        if self.last_forget.elapsed() >= IDLE_TRIM_EVERY.min(self.retention.max_age) {
            self.last_forget = Instant::now();
            total += self.forget_idle_channels(started);
        }
        loop {
            let now = now_ms() as i64;
            let oldest = now - self.retention.max_age.as_millis() as i64;
            let step = TRIM_STEP as i64;
            let result = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
                let dedupe = self.conn.execute(
                    "DELETE FROM dedupe WHERE (user, channel, client_msg_id) IN
                     (SELECT user, channel, client_msg_id FROM dedupe WHERE expires <= ?1 LIMIT ?2)",
                    params![now, step],
                )?;
                let aged = self.conn.execute(
                    "DELETE FROM messages WHERE (channel, seq) IN
                     (SELECT channel, seq FROM messages WHERE ts < ?1 LIMIT ?2)",
                    params![oldest, step],
                )?;
                self.conn.execute_batch("COMMIT")?;
                Ok((dedupe, aged))
            });
            match result {
                Ok((dedupe, aged)) => {
                    total += dedupe + aged;
                    let more = dedupe == TRIM_STEP || aged == TRIM_STEP;
                    if !more || started.elapsed() >= TRIM_BUDGET {
                        break;
                    }
                }
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    tracing::warn!(error = %e, "retention trim failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::debug!(deleted = total, took = ?started.elapsed(), "retention trimmed");
        }
    }
}

impl Store for SqliteStore {
    fn append(&self, req: AppendRequest) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::Append(Box::new(req), tx), rx)
    }

    fn read(
        &self,
        channel: &Channel,
        since: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Page, StoreError>> {
        let key = channel_key(channel);
        self.read_with(move |conn| {
            let latest = last_seq(conn, &key)?;
            let first: Option<i64> = conn
                .prepare_cached("SELECT min(seq) FROM messages WHERE channel = ?1")
                .and_then(|mut s| s.query_row([&key], |r| r.get(0)))
                .map_err(db_err)?;
            let first_kept = first.map_or(latest + 1, |f| f as u64);
            let mut page =
                Page { latest, last: since, gap: since + 1 < first_kept && since < latest, ..Page::default() };
            let mut stmt = conn
                .prepare_cached("SELECT seq, payload FROM messages WHERE channel = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![key, since as i64, limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(db_err)?;
            for row in rows {
                let (seq, payload) = row.map_err(db_err)?;
                let text = String::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                page.messages.push(RawValue::from_string(text).map_err(|e| StoreError::Corrupt(e.to_string()))?);
                page.last = seq as u64;
            }
            Ok(page)
        })
    }

    fn latest(&self, channel: &Channel) -> BoxFuture<'static, Result<u64, StoreError>> {
        let key = channel_key(channel);
        self.read_with(move |conn| last_seq(conn, &key))
    }

    fn cursor(&self, user: &Id) -> BoxFuture<'static, Result<u64, StoreError>> {
        let user = user.clone();
        let inbox = channel_key(&Channel::Inbox(user.clone()));
        self.read_with(move |conn| {
            conn.prepare_cached(
                "SELECT max(0, min(seq, coalesce((SELECT last_seq FROM channels WHERE channel = ?2), 0)))
                 FROM cursors WHERE user = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![user.as_str(), inbox], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|s| s.unwrap_or(0) as u64)
            .map_err(db_err)
        })
    }

    fn set_cursor(&self, user: &Id, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::Cursor(user.clone(), seq, tx), rx)
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(reason) = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return ready(Err(StoreError::Unavailable(reason))).boxed();
        }
        self.read_with(|conn| {
            conn.query_row("SELECT count(*) FROM channels", [], |_| Ok(()))
                .map_err(db_err)
        })
    }
}

fn last_seq(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT last_seq FROM channels WHERE channel = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get::<_, i64>(0)).optional())
        .map(|s| s.unwrap_or(0) as u64)
        .map_err(db_err)
}

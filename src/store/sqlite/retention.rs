//! Retention on the writer thread: by age, expired dedupe keys, and idle
//! channels, in bounded steps between commit groups. (Retention by count is
//! part of each append.)

use std::time::{Duration, Instant};

use rusqlite::params;

use super::writer::Writer;
use crate::model::now_ms;

/// How often the writer trims while there are writes.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(1);
/// How often an idle writer trims (retention by age only moves with time).
const IDLE_TRIM_EVERY: Duration = Duration::from_secs(60);
/// Rows one trim step deletes at most (one transaction).
const TRIM_STEP: usize = 2_000;
/// How long one trim pass may hold the writer (it runs at most once a
/// second while there are writes).
const TRIM_BUDGET: Duration = Duration::from_millis(200);

impl Writer {
    /// Trims after writes at most once a second, and otherwise once a minute
    /// (for retention by age): an idle node does not commit every second.
    pub(super) fn maybe_trim(&mut self) {
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
                let gone = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM channels WHERE channel IN
                         (SELECT c.channel FROM channels c
                          WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.channel = c.channel)
                          LIMIT ?1)
                         RETURNING channel",
                    )?
                    .query_map(params![TRIM_STEP as i64], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                // Read positions in a channel that starts anew would hide
                // its new messages: they go with it.
                let mut reads = self
                    .conn
                    .prepare_cached("DELETE FROM reads WHERE channel = ?1")?;
                for key in &gone {
                    reads.execute([key])?;
                }
                drop(reads);
                self.conn.execute_batch("COMMIT")?;
                Ok(gone)
            });
            match result {
                Ok(gone) => {
                    let n = gone.len();
                    for key in &gone {
                        self.index.forgotten(key);
                    }
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
        self.trim_outbox();
    }
}

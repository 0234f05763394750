//! The event outbox's bounds on the writer thread: events older than the
//! age bound, then the oldest past the byte bound, are deleted (and
//! counted) at each trim, at most once a second while there are writes.

use rusqlite::params;

use super::writer::Writer;
use crate::model::now_ms;

impl Writer {
    /// Drops the events past the outbox's bounds, if it has any.
    pub(super) fn trim_outbox(&mut self) {
        let Some(limits) = *self.outbox_limits.lock().unwrap_or_else(|p| p.into_inner()) else {
            return;
        };
        let cutoff = now_ms().saturating_sub(limits.max_age.as_millis() as u64) as i64;
        let result = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            // Events of an older schema have no time (0): bytes bound them.
            let aged = self
                .conn
                .prepare_cached("DELETE FROM outbox WHERE ts > 0 AND ts < ?1")?
                .execute(params![cutoff])?;
            let total: i64 = self
                .conn
                .prepare_cached("SELECT COALESCE(SUM(length(body)), 0) FROM outbox")?
                .query_row([], |r| r.get(0))?;
            let mut over = total - limits.max_bytes as i64;
            let mut dropped = 0;
            if over > 0 {
                // The oldest events whose bodies make up the excess.
                let mut last = None;
                {
                    let mut stmt = self
                        .conn
                        .prepare_cached("SELECT id, length(body) FROM outbox ORDER BY id")?;
                    let mut rows = stmt.query([])?;
                    while over > 0 {
                        let Some(row) = rows.next()? else { break };
                        last = Some(row.get::<_, i64>(0)?);
                        over -= row.get::<_, i64>(1)?;
                        dropped += 1;
                    }
                }
                if let Some(last) = last {
                    self.conn
                        .prepare_cached("DELETE FROM outbox WHERE id <= ?1")?
                        .execute(params![last])?;
                }
            }
            self.conn.execute_batch("COMMIT")?;
            Ok((aged as u64, dropped))
        });
        match result {
            Ok((aged, bytes)) => {
                crate::store::outbox_trimmed(aged, bytes);
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                tracing::warn!(error = %e, "trimming the event outbox failed");
            }
        }
    }
}

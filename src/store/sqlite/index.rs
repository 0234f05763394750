//! What a login asks the store most, answered from memory: each channel's
//! latest seq, each user's inbox cursor, and which users hold read
//! positions. A login with nothing to replay, of a user who never marked
//! anything read, then reads nothing from disk and never waits for a
//! blocking thread (a reconnect storm is mostly such logins; the unread
//! counts in every login reply asked the disk for positions each time).
//!
//! The writer thread is the only one that changes these tables, so it keeps
//! this mirror: loaded at open, updated after each commit and before the
//! committed messages are handed to sessions (a session that registered
//! before reading the mirror gets anything newer live), entries removed when
//! their channel is forgotten. Memory follows the `channels` table (about
//! 100 bytes per channel with history), bounded by [`CAP`] entries per map:
//! past it the map stops taking new keys and a key it lacks is read from
//! disk, as before.

use dashmap::DashMap;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most entries each map holds.
pub(super) const CAP: usize = 1_000_000;

/// One mirrored table: key -> value, and whether every row is in it.
struct Mirror {
    map: DashMap<String, u64>,
    /// Every row of the table is in `map`: a missing key has no row.
    complete: AtomicBool,
    cap: usize,
}

impl Mirror {
    fn load(conn: &Connection, sql: &str, cap: usize) -> rusqlite::Result<Self> {
        let map = DashMap::new();
        let mut complete = true;
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if map.len() >= cap {
                complete = false;
                break;
            }
            map.insert(row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64);
        }
        Ok(Self {
            map,
            complete: AtomicBool::new(complete),
            cap,
        })
    }

    /// The value, `Some(None)` when the table has no such row, `None` when
    /// unknown (read the table).
    fn get(&self, key: &str) -> Option<Option<u64>> {
        match self.map.get(key) {
            Some(v) => Some(Some(*v)),
            None if self.complete.load(Ordering::Acquire) => Some(None),
            None => None,
        }
    }

    fn set(&self, key: &str, value: u64) {
        if let Some(mut v) = self.map.get_mut(key) {
            *v = value;
        } else if self.map.len() < self.cap {
            self.map.insert(key.to_owned(), value);
        } else {
            self.complete.store(false, Ordering::Release);
        }
    }
}

/// Channels' latest seqs and users' inbox cursors, as committed, and the
/// users with read positions.
pub(super) struct SeqIndex {
    latest: Mirror,
    cursors: Mirror,
    /// Users with a row in `reads` (the value is unused). Kept on the safe
    /// side: a user is added before the transaction that writes the row
    /// commits, and stays after retention removes rows, so a user it lacks
    /// has no positions, and one it holds is read from disk.
    readers: Mirror,
}

impl SeqIndex {
    /// Loads both tables (up to `cap` rows each).
    pub(super) fn load(conn: &Connection, cap: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            latest: Mirror::load(conn, "SELECT channel, last_seq FROM channels", cap)?,
            cursors: Mirror::load(conn, "SELECT user, seq FROM cursors", cap)?,
            readers: Mirror::load(conn, "SELECT DISTINCT user, 1 FROM reads", cap)?,
        })
    }

    /// Whether `user` may hold read positions: `Some(false)` when it
    /// surely holds none, `None` when they must be read from disk.
    pub(super) fn may_have_reads(&self, user: &str) -> Option<bool> {
        self.readers.get(user).map(|v| v.is_some())
    }

    /// `user` is about to hold read positions (writer thread, inside the
    /// transaction that writes them).
    pub(super) fn reads_written(&self, user: &str) {
        if self.readers.map.get(user).is_none() {
            self.readers.set(user, 1);
        }
    }

    /// A channel's latest seq (0 for a channel with no history), `None`
    /// when it must be read from disk.
    pub(super) fn latest(&self, key: &str) -> Option<u64> {
        self.latest.get(key).map(|v| v.unwrap_or(0))
    }

    /// A user's inbox cursor clamped to the inbox (what `Store::cursor`
    /// answers), `None` when it must be read from disk.
    pub(super) fn cursor(&self, user: &str, inbox_key: &str) -> Option<u64> {
        let stored = self.cursors.get(user)?.unwrap_or(0);
        Some(stored.min(self.latest(inbox_key)?))
    }

    /// A committed append (writer thread).
    pub(super) fn appended(&self, key: &str, seq: u64) {
        self.latest.set(key, seq);
    }

    /// A committed cursor move, with the value now stored (writer thread).
    pub(super) fn cursor_stored(&self, user: &str, seq: u64) {
        self.cursors.set(user, seq);
    }

    /// A channel forgotten by retention (writer thread).
    pub(super) fn forgotten(&self, key: &str) {
        self.latest.map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE channels (channel TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
             CREATE TABLE cursors (user TEXT PRIMARY KEY, seq INTEGER NOT NULL);
             INSERT INTO channels VALUES ('i:bob', 7), ('r:lobby', 3), ('r:x', 1);
             INSERT INTO cursors VALUES ('bob', 5);
             CREATE TABLE reads (channel TEXT, user TEXT, seq INTEGER);
             INSERT INTO reads VALUES ('r:lobby', 'bob', 2), ('r:x', 'bob', 1);",
        )
        .unwrap();
        c
    }

    #[test]
    fn a_complete_mirror_answers_every_key_and_follows_the_writer() {
        let idx = SeqIndex::load(&db(), 10).unwrap();
        assert_eq!(idx.latest("r:lobby"), Some(3));
        assert_eq!(idx.latest("r:never"), Some(0));
        assert_eq!(idx.cursor("bob", "i:bob"), Some(5));
        assert_eq!(idx.cursor("carol", "i:carol"), Some(0));
        idx.appended("r:never", 1);
        idx.forgotten("r:lobby");
        idx.cursor_stored("carol", 2);
        assert_eq!(idx.latest("r:never"), Some(1));
        assert_eq!(idx.latest("r:lobby"), Some(0));
        // Clamped to the inbox, as the SQL is.
        assert_eq!(idx.cursor("carol", "i:carol"), Some(0));
        assert_eq!(idx.may_have_reads("bob"), Some(true));
        assert_eq!(idx.may_have_reads("carol"), Some(false));
        idx.reads_written("carol");
        assert_eq!(idx.may_have_reads("carol"), Some(true));
    }

    #[test]
    fn past_its_cap_a_mirror_sends_unknown_keys_to_disk() {
        let idx = SeqIndex::load(&db(), 2).unwrap();
        let known = ["i:bob", "r:lobby", "r:x"]
            .iter()
            .filter(|k| idx.latest(k).is_some())
            .count();
        assert_eq!(known, 2, "two rows loaded, the third unknown");
        assert_eq!(idx.latest("r:never"), None);
        // Known keys still follow the writer; new keys are not taken.
        let full = SeqIndex::load(&db(), 3).unwrap();
        full.appended("r:new", 1);
        assert_eq!(full.latest("r:new"), None);
        full.appended("r:x", 9);
        assert_eq!(full.latest("r:x"), Some(9));
    }
}

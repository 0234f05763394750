//! [`ChatStore`] over SQLite: messages found through the `msg_id` index,
//! read positions in the `reads` table, unread counts by an indexed range
//! count. Writes go through the writer thread's transactions.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, future::ready};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{Request, SqliteStore, channel_key, db_err};
use crate::model::Channel;
use crate::protocol::Id;
use crate::store::chat::{ChatStore, Located, MAX_READS_PAGE, ReadMark, ReadsPage};
use crate::store::{StoreError, channel_of};

/// A write run inside the writer's transaction.
pub(super) type Write = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

impl SqliteStore {
    pub(super) fn exec(&self, write: Write) -> BoxFuture<'static, Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::Exec(write, tx), rx)
    }

    /// A write inside the writer's transaction that answers a value, given
    /// once the transaction has committed.
    pub(super) fn exec_returning<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let out = Arc::new(Mutex::new(None));
        let kept = out.clone();
        let done = self.exec(Box::new(move |conn| {
            let value = write(conn)?;
            *kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
            Ok(())
        }));
        async move {
            done.await?;
            out.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| StoreError::Unavailable("the write answered nothing".into()))
        }
        .boxed()
    }
}

impl ChatStore for SqliteStore {
    fn locate(&self, msg_ids: Vec<String>) -> BoxFuture<'static, Result<Vec<Located>, StoreError>> {
        if msg_ids.is_empty() {
            return ready(Ok(Vec::new())).boxed();
        }
        self.read_with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT channel, seq, payload FROM messages WHERE msg_id = ?1")
                .map_err(db_err)?;
            let mut found = Vec::new();
            for id in msg_ids {
                let mut rows = stmt.query([&id]).map_err(db_err)?;
                if let Some(r) = rows.next().map_err(db_err)? {
                    let key: String = r.get(0).map_err(db_err)?;
                    let Some(channel) = channel_of(&key) else {
                        continue;
                    };
                    found.push(Located {
                        msg_id: id.clone(),
                        channel,
                        seq: r.get::<_, i64>(1).map_err(db_err)? as u64,
                        payload: Bytes::from(r.get::<_, Vec<u8>>(2).map_err(db_err)?),
                    });
                }
            }
            Ok(found)
        })
    }

    fn redact(
        &self,
        channel: &Channel,
        seq: u64,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let key = channel_key(channel);
        self.exec(Box::new(move |conn| {
            conn.prepare_cached("UPDATE messages SET payload = ?3 WHERE channel = ?1 AND seq = ?2")?
                .execute(params![key, seq as i64, &payload[..]])
                .map(|_| ())
        }))
    }

    fn set_reads(&self, marks: Vec<ReadMark>) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        let index = self.index.clone();
        self.exec_returning(move |conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO reads (channel, user, seq) VALUES (?1, ?2,
                   min(?3, coalesce((SELECT last_seq FROM channels WHERE channel = ?1), 0)))
                 ON CONFLICT(channel, user) DO UPDATE SET seq = max(seq, excluded.seq)
                 RETURNING seq",
            )?;
            let mut out = Vec::with_capacity(marks.len());
            for m in marks {
                index.reads_written(m.user.as_str());
                let key = channel_key(&m.channel);
                let pos: i64 =
                    stmt.query_row(params![key, m.user.as_str(), m.seq as i64], |r| r.get(0))?;
                out.push(pos as u64);
            }
            Ok(out)
        })
    }

    fn reads(
        &self,
        channel: &Channel,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<ReadsPage, StoreError>> {
        let key = channel_key(channel);
        let limit = limit.clamp(1, MAX_READS_PAGE);
        self.read_with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user, seq FROM reads WHERE channel = ?1 AND user > ?2
                     ORDER BY user LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(
                    params![key, after.unwrap_or_default(), limit as i64 + 1],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(db_err)?;
            let mut page = ReadsPage::default();
            for row in rows {
                let (user, seq) = row.map_err(db_err)?;
                if page.reads.len() == limit {
                    page.next = page.reads.last().map(|(u, _)| u.to_string());
                    break;
                }
                let user = Id::parse(&user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                page.reads.push((user, seq as u64));
            }
            Ok(page)
        })
    }

    fn read_positions(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<(Channel, u64)>, StoreError>> {
        // Most users never marked anything read: no disk, no blocking thread.
        if self.index.may_have_reads(user.as_str()) == Some(false) {
            return ready(Ok(Vec::new())).boxed();
        }
        let user = user.clone();
        self.read_with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT channel, seq FROM reads WHERE user = ?1")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([user.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, seq) = row.map_err(db_err)?;
                out.extend(channel_of(&key).map(|c| (c, seq as u64)));
            }
            Ok(out)
        })
    }

    fn unread_many(
        &self,
        positions: Vec<(Channel, u64)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        // Channels read up to their latest seq (most, at a login) are
        // answered from the mirror; the rest in one read.
        let mut counts = vec![0; positions.len()];
        let mut ask = Vec::new();
        for (i, (channel, after)) in positions.iter().enumerate() {
            let key = channel_key(channel);
            if self.index.latest(&key).is_none_or(|latest| *after < latest) {
                ask.push((i, key, *after));
            }
        }
        if ask.is_empty() {
            return ready(Ok(counts)).boxed();
        }
        self.read_with(move |conn| {
            // The channel's count minus the count before the first message
            // after the position: one lookup per channel.
            let mut first = conn
                .prepare_cached(
                    "SELECT coalesce((SELECT total FROM channels WHERE channel = ?1), 0) - n
                     FROM messages WHERE channel = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
                )
                .map_err(db_err)?;
            let mut scan = conn
                .prepare_cached(
                    "SELECT count(*) FROM messages WHERE channel = ?1 AND seq > ?2 AND counted",
                )
                .map_err(db_err)?;
            for (i, key, after) in ask {
                let n: Option<Option<i64>> = first
                    .query_row(params![key, after as i64], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                counts[i] = match n {
                    None => 0,
                    Some(Some(n)) => n.max(0) as u64,
                    // A message without its count: scan.
                    Some(None) => scan
                        .query_row(params![key, after as i64], |r| r.get::<_, i64>(0))
                        .map_err(db_err)? as u64,
                };
            }
            Ok(counts)
        })
    }
}

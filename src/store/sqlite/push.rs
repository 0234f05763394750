//! [`PushStore`] over SQLite: the `push` table, written through the
//! writer's transactions (insert, then the oldest past the limit removed in
//! the same one).

use futures_util::future::BoxFuture;
use rusqlite::params;

use super::{SqliteStore, db_err};
use crate::protocol::Id;
use crate::store::StoreError;
use crate::store::push::{MAX_REGISTRATIONS, PushJob, PushStore, Registration};

impl PushStore for SqliteStore {
    fn add_registration(
        &self,
        user: &Id,
        reg: Registration,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let user = user.clone();
        self.exec(Box::new(move |conn| {
            conn.prepare_cached(
                "INSERT INTO push (user, id, data, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user, id) DO UPDATE SET data = excluded.data, created = excluded.created",
            )?
            .execute(params![user.as_str(), reg.id, reg.data, reg.created as i64])?;
            conn.prepare_cached(
                "DELETE FROM push WHERE user = ?1 AND id NOT IN
                   (SELECT id FROM push WHERE user = ?1 ORDER BY created DESC, id LIMIT ?2)",
            )?
            .execute(params![user.as_str(), MAX_REGISTRATIONS as i64])?;
            Ok(())
        }))
    }

    fn remove_registration(
        &self,
        user: &Id,
        id: String,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let user = user.clone();
        self.exec_returning(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM push WHERE user = ?1 AND id = ?2")?
                .execute(params![user.as_str(), id])?;
            Ok(n > 0)
        })
    }

    fn registrations(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<Registration>, StoreError>> {
        let user = user.clone();
        self.read_with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, data, created FROM push WHERE user = ?1 ORDER BY created, id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([user.as_str()], |r| {
                    Ok(Registration {
                        id: r.get(0)?,
                        data: r.get(1)?,
                        created: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
    }

    fn schedule_push(
        &self,
        due: u64,
        body: String,
    ) -> BoxFuture<'static, Result<String, StoreError>> {
        self.exec_returning(move |conn| {
            conn.prepare_cached("INSERT INTO push_jobs (due, body) VALUES (?1, ?2)")?
                .execute(params![due as i64, body])?;
            Ok(conn.last_insert_rowid().to_string())
        })
    }

    fn claim_pushes(
        &self,
        now: u64,
        lease: std::time::Duration,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<PushJob>, StoreError>> {
        let until = now + lease.as_millis() as u64;
        self.exec_returning(move |conn| {
            let mut jobs = Vec::new();
            {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, due, body FROM push_jobs WHERE due <= ?1 ORDER BY due, id LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![now as i64, limit as i64])?;
                while let Some(r) = rows.next()? {
                    jobs.push(PushJob {
                        key: r.get::<_, i64>(0)?.to_string(),
                        due: r.get::<_, i64>(1)? as u64,
                        body: r.get(2)?,
                    });
                }
            }
            let mut lease = conn.prepare_cached("UPDATE push_jobs SET due = ?1 WHERE id = ?2")?;
            for j in &jobs {
                lease.execute(params![until as i64, j.key.parse::<i64>().unwrap_or(0)])?;
            }
            Ok(jobs)
        })
    }

    fn finish_pushes(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        self.exec(Box::new(move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM push_jobs WHERE id = ?1")?;
            for k in keys {
                stmt.execute(params![k.parse::<i64>().unwrap_or(0)])?;
            }
            Ok(())
        }))
    }
}

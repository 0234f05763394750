//! [`PushStore`] in Redis: one hash per user (in its inbox's slot), each
//! field a registration id and its value `<created>\t<data>`. The limit is
//! kept by the script that adds, so two nodes adding at once cannot pass it.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;

use super::{RedisStore, unavailable};
use crate::model::Channel;
use crate::protocol::Id;
use crate::redis_io::envelope::tag;
use crate::store::StoreError;
use crate::store::push::{MAX_REGISTRATIONS, PushJob, PushStore, Registration};

/// Adds ARGV[1] = ARGV[2] to KEYS[1]; past ARGV[3] fields, removes the
/// oldest (by the time before the tab, then by id).
const ADD: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local n = #all / 2
local max = tonumber(ARGV[3])
if n > max then
  local entries = {}
  for i = 1, #all, 2 do
    local created = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
    table.insert(entries, {all[i], created})
  end
  table.sort(entries, function(a, b)
    if a[2] == b[2] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for i = 1, n - max do redis.call('HDEL', KEYS[1], entries[i][1]) end
end
return n
";

/// Push jobs: their bodies (a hash) and when each is due (a sorted set),
/// in one slot.
const JOBS: &str = "rtgate:{push}:jobs";
const DUE: &str = "rtgate:{push}:due";
const NEXT: &str = "rtgate:{push}:next";

/// Adds a job: KEYS jobs, due, next; ARGV due, body. Answers its key.
const SCHEDULE: &str = r"
local key = tostring(redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[1], key, ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], key)
return key
";

/// Claims due jobs: KEYS jobs, due; ARGV now, lease end, limit. Answers
/// key, due, body for each, their due moved to the lease's end.
const CLAIM: &str = r"
local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #keys, 2 do
  local body = redis.call('HGET', KEYS[1], keys[i])
  if body then
    redis.call('ZADD', KEYS[2], ARGV[2], keys[i])
    table.insert(out, keys[i])
    table.insert(out, keys[i + 1])
    table.insert(out, body)
  else
    redis.call('ZREM', KEYS[2], keys[i])
  end
end
return out
";

fn push_key(user: &Id) -> String {
    format!("rtgate:{}:push", tag(&Channel::Inbox(user.clone())))
}

impl PushStore for RedisStore {
    fn add_registration(
        &self,
        user: &Id,
        reg: Registration,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        let key = push_key(user);
        async move {
            redis::cmd("EVAL")
                .arg(ADD)
                .arg(1)
                .arg(key)
                .arg(&reg.id)
                .arg(format!("{}\t{}", reg.created, reg.data))
                .arg(MAX_REGISTRATIONS)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn remove_registration(
        &self,
        user: &Id,
        id: String,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut conn = self.conn.clone();
        let key = push_key(user);
        async move {
            let n: i64 = conn.hdel(key, id).await.map_err(unavailable)?;
            Ok(n > 0)
        }
        .boxed()
    }

    fn registrations(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<Registration>, StoreError>> {
        let mut conn = self.conn.clone();
        let key = push_key(user);
        async move {
            let all: Vec<(String, String)> = conn.hgetall(key).await.map_err(unavailable)?;
            let mut regs: Vec<Registration> = all
                .into_iter()
                .filter_map(|(id, v)| {
                    let (created, data) = v.split_once('\t')?;
                    Some(Registration {
                        id,
                        data: data.to_owned(),
                        created: created.parse().ok()?,
                    })
                })
                .collect();
            regs.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
            Ok(regs)
        }
        .boxed()
    }

    fn schedule_push(
        &self,
        due: u64,
        body: String,
    ) -> BoxFuture<'static, Result<String, StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            redis::cmd("EVAL")
                .arg(SCHEDULE)
                .arg(3)
                .arg(JOBS)
                .arg(DUE)
                .arg(NEXT)
                .arg(due)
                .arg(body)
                .query_async::<String>(&mut conn)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn claim_pushes(
        &self,
        now: u64,
        lease: std::time::Duration,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<PushJob>, StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            let flat: Vec<String> = redis::cmd("EVAL")
                .arg(CLAIM)
                .arg(2)
                .arg(JOBS)
                .arg(DUE)
                .arg(now)
                .arg(now + lease.as_millis() as u64)
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(flat
                .chunks_exact(3)
                .map(|c| PushJob {
                    key: c[0].clone(),
                    due: c[1].parse().unwrap_or(0),
                    body: c[2].clone(),
                })
                .collect())
        }
        .boxed()
    }

    fn finish_pushes(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        async move {
            if keys.is_empty() {
                return Ok(());
            }
            let cmds = vec![
                redis::cmd("ZREM").arg(DUE).arg(&keys).to_owned(),
                redis::cmd("HDEL").arg(JOBS).arg(&keys).to_owned(),
            ];
            conn.run_all(cmds).await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }
}

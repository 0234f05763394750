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
use crate::store::push::{MAX_REGISTRATIONS, PushStore, Registration};

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
}

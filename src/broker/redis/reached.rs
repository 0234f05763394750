//! What push asks of the cluster: how far each user's inbox reached a live
//! session on any node (each node shares its marks, the highest kept per
//! user), and one claim per user per push window, so one node pushes.

use std::time::Duration;

use super::unavailable;
use crate::broker::BrokerError;
use crate::hub::reached::KEEP;
use crate::protocol::Id;
use crate::redis_io::RedisConn;

/// Raises KEYS[1] to ARGV[1] (never lowers it) and renews its expiry.
const RAISE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new > cur then cur = new end
redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
return cur
";

fn reached_key(u: &Id) -> String {
    format!("rtgate:reached:{u}")
}

fn claim_key(u: &Id) -> String {
    format!("rtgate:pushwin:{u}")
}

/// Shares this node's marks.
pub(super) async fn share(mut conn: RedisConn, marks: Vec<(Id, u64)>) -> Result<(), BrokerError> {
    let cmds = marks
        .iter()
        .map(|(u, seq)| {
            redis::cmd("EVAL")
                .arg(RAISE)
                .arg(1)
                .arg(reached_key(u))
                .arg(*seq)
                .arg(KEEP.as_millis() as u64)
                .to_owned()
        })
        .collect();
    conn.run_all(cmds).await.map_err(unavailable)?;
    Ok(())
}

/// The shared marks of `users`, in order (0: none).
pub(super) async fn get(mut conn: RedisConn, users: &[Id]) -> Result<Vec<u64>, BrokerError> {
    let cmds = users
        .iter()
        .map(|u| redis::cmd("GET").arg(reached_key(u)).to_owned())
        .collect();
    let values = conn.run_all(cmds).await.map_err(unavailable)?;
    Ok(values
        .into_iter()
        .map(|v| {
            redis::from_redis_value::<Option<u64>>(v)
                .ok()
                .flatten()
                .unwrap_or(0)
        })
        .collect())
}

/// Takes `user`'s push window for `window`, unless another node holds it.
pub(super) async fn claim(
    mut conn: RedisConn,
    user: &Id,
    window: Duration,
) -> Result<bool, BrokerError> {
    let cmd = redis::cmd("SET")
        .arg(claim_key(user))
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(window.as_millis().max(1) as u64)
        .to_owned();
    let v = conn.run_all(vec![cmd]).await.map_err(unavailable)?;
    Ok(matches!(
        v.first(),
        Some(redis::Value::Okay) | Some(redis::Value::SimpleString(_))
    ))
}

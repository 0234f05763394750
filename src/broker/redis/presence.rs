//! Reading the cluster's presence from Redis: which users are online,
//! who is in a room, each user's live sessions, and the nodes alive. Every
//! entry carries its expiry; an entry past it (its node died without
//! draining) counts as gone.

use std::collections::HashSet;

use redis::AsyncCommands;

use super::{NODES_KEY, members_key, online_key, sessions_key, unavailable};
use crate::broker::BrokerError;
use crate::model::now_ms;
use crate::model::presence::SessionInfo;
use crate::protocol::Id;
use crate::redis_io::RedisConn;

/// The nodes alive, sorted.
pub(super) async fn nodes(mut conn: RedisConn) -> Result<Vec<String>, BrokerError> {
    let entries: Vec<(String, u64)> = conn.hgetall(NODES_KEY).await.map_err(unavailable)?;
    let now = now_ms();
    let mut nodes: Vec<String> = entries
        .into_iter()
        .filter(|(_, exp)| *exp > now)
        .map(|(n, _)| n)
        .collect();
    nodes.sort();
    Ok(nodes)
}

/// The live sessions of `users`, on every node.
pub(super) async fn sessions(
    mut conn: RedisConn,
    users: Vec<Id>,
) -> Result<Vec<SessionInfo>, BrokerError> {
    let cmds = users
        .iter()
        .map(|u| redis::cmd("HVALS").arg(sessions_key(u)).to_owned())
        .collect();
    let values = conn.run_all(cmds).await.map_err(unavailable)?;
    let now = now_ms();
    let mut out = Vec::new();
    for v in values {
        let entries: Vec<String> = redis::from_redis_value(v).unwrap_or_default();
        for e in entries {
            let Some((exp, json)) = e.split_once('\t') else {
                continue;
            };
            if exp.parse::<u64>().is_ok_and(|x| x > now)
                && let Ok(s) = serde_json::from_str::<SessionInfo>(json)
            {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Which of `users` are online anywhere, in the order asked.
pub(super) async fn online(mut conn: RedisConn, users: Vec<Id>) -> Result<Vec<Id>, BrokerError> {
    let cmds = users
        .iter()
        .map(|u| redis::cmd("HVALS").arg(online_key(u)).to_owned())
        .collect();
    let values = conn.run_all(cmds).await.map_err(unavailable)?;
    let all: Vec<Vec<i64>> = values
        .into_iter()
        .map(|v| redis::from_redis_value(v).unwrap_or_default())
        .collect();
    let now = now_ms() as i64;
    Ok(users
        .into_iter()
        .zip(all)
        .filter(|(_, exp)| exp.iter().any(|e| *e > now))
        .map(|(u, _)| u)
        .collect())
}

/// The users online in `room`, anywhere, sorted.
pub(super) async fn room(mut conn: RedisConn, room: Id) -> Result<Vec<Id>, BrokerError> {
    let entries: Vec<(String, i64)> = conn
        .hgetall(members_key(&room))
        .await
        .map_err(unavailable)?;
    let now = now_ms() as i64;
    let mut users: Vec<Id> = entries
        .into_iter()
        .filter(|(_, exp)| *exp > now)
        .filter_map(|(field, _)| field.split_once('\t').and_then(|(_, u)| Id::parse(u).ok()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    users.sort();
    Ok(users)
}

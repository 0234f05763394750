//! The Redis broker's upkeep, run by its control task: applying queued
//! subscriptions and presence changes, refreshing this node's presence
//! entries, and resubscribing after Redis lost its state.

use super::{Control, RedisBroker, members_key, online_key, room_channel, user_channel};
use crate::model::now_ms;
use crate::redis_io::RedisConn;

impl RedisBroker {
    pub(super) fn expires(&self) -> i64 {
        (now_ms() + self.ttl.as_millis() as u64) as i64
    }

    pub(super) fn keep(&self) -> i64 {
        2 * self.ttl.as_millis() as i64
    }

    pub(super) async fn apply(&self, conn: &mut RedisConn, c: Control) -> redis::RedisResult<()> {
        let mut cmds = Vec::new();
        match c {
            Control::Subscribe(ch, done) => {
                let r = conn.subscribe(ch).await;
                if let Some(done) = done {
                    let _ = done.send(r.is_ok());
                }
                return r;
            }
            Control::Unsubscribe(ch) => return conn.unsubscribe(ch).await,
            Control::UserOnline(u) => {
                let key = online_key(&u);
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(&self.node)
                        .arg(self.expires())
                        .to_owned(),
                );
                cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(self.keep()).to_owned());
            }
            Control::UserOffline(u) => cmds.push(
                redis::cmd("HDEL")
                    .arg(online_key(&u))
                    .arg(&self.node)
                    .to_owned(),
            ),
            Control::Joined(room, user) => {
                let key = members_key(&room);
                let field = format!("{}\t{user}", self.node);
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(field)
                        .arg(self.expires())
                        .to_owned(),
                );
                cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(self.keep()).to_owned());
            }
            Control::Left(room, user) => {
                cmds.push(
                    redis::cmd("HDEL")
                        .arg(members_key(&room))
                        .arg(format!("{}\t{user}", self.node))
                        .to_owned(),
                );
            }
        }
        conn.run_all(cmds).await.map(|_| ())
    }

    /// This node's presence entries, as commands (with a fresh expiry).
    pub(super) fn presence_commands(&self) -> Vec<redis::Cmd> {
        let (expires, keep) = (self.expires(), self.keep());
        let mut cmds = Vec::new();
        for u in self.hub.local_users() {
            let key = online_key(&u);
            cmds.push(
                redis::cmd("HSET")
                    .arg(&key)
                    .arg(&self.node)
                    .arg(expires)
                    .to_owned(),
            );
            cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(keep).to_owned());
        }
        for room in self.hub.local_rooms() {
            let key = members_key(&room);
            for user in self.hub.room_users(&room) {
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(format!("{}\t{user}", self.node))
                        .arg(expires)
                        .to_owned(),
                );
            }
            cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(keep).to_owned());
        }
        cmds
    }

    /// Rewrites this node's presence entries with a fresh expiry.
    pub(super) async fn refresh(&self, conn: &mut RedisConn) -> redis::RedisResult<()> {
        conn.run_all(self.presence_commands()).await.map(|_| ())
    }

    /// Subscribes again to every channel this node needs (after Redis lost
    /// its state, or missed an unsubscribe).
    pub(super) async fn resubscribe(&self, conn: &mut RedisConn) -> redis::RedisResult<()> {
        for u in self.hub.local_users() {
            conn.subscribe(user_channel(&u)).await?;
        }
        for r in self.hub.local_rooms() {
            conn.subscribe(room_channel(&r)).await?;
        }
        Ok(())
    }
}

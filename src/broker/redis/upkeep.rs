//! The Redis broker's upkeep, run by its control task: applying queued
//! subscriptions and presence changes, refreshing this node's presence
//! entries, and resubscribing after Redis lost its state.

use std::sync::LazyLock;

use super::{
    Control, RedisBroker, members_key, online_key, room_channel, room_user_key, sessions_key,
    user_channel,
};
use crate::broker::Broker;
use crate::model::event::Edge;
use crate::model::now_ms;
use crate::model::presence::{Change, event};
use crate::protocol::Id;
use crate::redis_io::RedisConn;
use serde_json::value::RawValue;

/// A user's node entry in a room joins or leaves; answers 1 when that makes
/// the user's first (join) or last (leave) presence in the room anywhere:
/// no other node holds a live entry. KEYS[1]: the (room, user) hash.
/// ARGV: node, expiry, key lifetime, now, `join` or `leave`.
static PRESENCE_CHANGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] and tonumber(all[i + 1]) > tonumber(ARGV[4]) then
    others = others + 1
  end
end
local changed
if ARGV[5] == 'join' then
  changed = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  changed = redis.call('HDEL', KEYS[1], ARGV[1])
end
if changed == 1 and others == 0 then return 1 end
return 0
",
    )
});

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
            Control::SessionOpened(u, session, json) => {
                let key = sessions_key(&u);
                let value = format!("{}\t{json}", self.expires());
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(session)
                        .arg(value)
                        .to_owned(),
                );
                cmds.push(redis::cmd("PEXPIRE").arg(&key).arg(self.keep()).to_owned());
            }
            Control::SessionClosed(u, session) => {
                cmds.push(
                    redis::cmd("HDEL")
                        .arg(sessions_key(&u))
                        .arg(session)
                        .to_owned(),
                );
            }
            Control::UserOnline(u, info) => {
                let edge = self.node_entry(conn, &online_key(&u), true).await?;
                if edge {
                    self.edge(
                        Edge::User {
                            user: &u,
                            online: true,
                        },
                        info.as_deref(),
                    );
                }
            }
            Control::UserOffline(u, info) => {
                let edge = self.node_entry(conn, &online_key(&u), false).await?;
                if edge {
                    self.edge(
                        Edge::User {
                            user: &u,
                            online: false,
                        },
                        info.as_deref(),
                    );
                }
            }
            Control::Joined(room, user, info) => {
                self.presence_change(conn, &room, &user, Change::Join, info.as_deref())
                    .await?;
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
            Control::Left(room, user, info) => {
                self.presence_change(conn, &room, &user, Change::Leave, info.as_deref())
                    .await?;
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

    /// Records this node's entry for `user` in `room` (or removes it) and,
    /// when that is the user's first or last presence there anywhere,
    /// publishes the room's presence event and reports the edge.
    async fn presence_change(
        &self,
        conn: &mut RedisConn,
        room: &Id,
        user: &Id,
        change: Change,
        info: Option<&RawValue>,
    ) -> redis::RedisResult<()> {
        let joined = change == Change::Join;
        if self
            .node_entry(conn, &room_user_key(room, user), joined)
            .await?
        {
            self.publish(event(room, user, change, info));
            self.edge(Edge::Room { room, user, joined }, info);
        }
        Ok(())
    }

    /// Sets (or removes) this node's entry in a hash of node entries;
    /// true when no other node holds a live one: a first or last presence.
    async fn node_entry(
        &self,
        conn: &mut RedisConn,
        key: &str,
        set: bool,
    ) -> redis::RedisResult<bool> {
        let edge: i64 = PRESENCE_CHANGE
            .key(key)
            .arg(&self.node)
            .arg(self.expires())
            .arg(self.keep())
            .arg(now_ms())
            .arg(if set { "join" } else { "leave" })
            .invoke_async(conn)
            .await?;
        Ok(edge == 1)
    }

    fn edge(&self, edge: Edge<'_>, info: Option<&RawValue>) {
        if let Some(sink) = self.edges.get() {
            sink.edge(edge, info);
        }
    }

    /// This node's presence entries, as commands (with a fresh expiry).
    pub(super) fn presence_commands(&self) -> Vec<redis::Cmd> {
        let (expires, keep) = (self.expires(), self.keep());
        let mut cmds = vec![
            redis::cmd("HSET")
                .arg(super::NODES_KEY)
                .arg(&self.node)
                .arg(expires)
                .to_owned(),
        ];
        for u in self.hub.local_users() {
            let sessions = sessions_key(&u);
            for s in self.hub.sessions_of(&u, &self.node) {
                let json = serde_json::to_string(&s).expect("a session serializes");
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&sessions)
                        .arg(&s.session_id)
                        .arg(format!("{expires}\t{json}"))
                        .to_owned(),
                );
            }
            cmds.push(redis::cmd("PEXPIRE").arg(sessions).arg(keep).to_owned());
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
                let per_user = room_user_key(&room, &user);
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&per_user)
                        .arg(&self.node)
                        .arg(expires)
                        .to_owned(),
                );
                cmds.push(redis::cmd("PEXPIRE").arg(per_user).arg(keep).to_owned());
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

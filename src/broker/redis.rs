//! The cluster broker over Redis Pub/Sub. A node subscribes only to what its
//! local sessions need: `rtgate:u:<user>` while it holds a session of the
//! user, `rtgate:r:<room>` while it holds a member of the room. Presence
//! lives in Redis hashes whose entries carry an expiry, refreshed by every
//! node, so a dead node's users age out. The Redis connection reconnects with
//! backoff and resubscribes by itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Broker, BrokerError};
use crate::hub::router::now_ms;
use crate::hub::{Channel, Envelope, Hub, OutFrame, Position, SessionId, Target};
use crate::protocol::Id;
use crate::telemetry;
use crate::transport::Delivery;

/// Envelopes waiting to be published, and pushes waiting to be delivered.
const QUEUE: usize = 65_536;

/// The Pub/Sub channel of a user.
pub fn user_channel(user: &Id) -> String {
    format!("rtgate:u:{user}")
}

/// The Pub/Sub channel of a room.
pub fn room_channel(room: &Id) -> String {
    format!("rtgate:r:{room}")
}

/// The header line of an envelope on the wire, without the seq (which the
/// store's script prepends for stored messages): `<u|r> <target> <exclude|-> <v|s>`.
pub fn envelope_header(target: &Target, exclude: Option<SessionId>, volatile: bool) -> String {
    let (kind, id) = match target {
        Target::User(u) => ("u", u),
        Target::Room(r) => ("r", r),
    };
    let exclude = exclude.map_or_else(|| "-".to_string(), |s| format!("{:032x}", s.0));
    format!("{kind} {id} {exclude} {}", if volatile { "v" } else { "s" })
}

/// Parses `<seq|-> <header>\n<payload>` back into an envelope.
fn parse_envelope(msg: &[u8]) -> Option<Envelope> {
    let nl = msg.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&msg[..nl]).ok()?;
    let payload = Bytes::copy_from_slice(&msg[nl + 1..]);
    let mut f = head.split(' ');
    let seq = f.next()?;
    let kind = f.next()?;
    let target = Id::parse(f.next()?).ok()?;
    let exclude = match f.next()? {
        "-" => None,
        hex => Some(SessionId(u128::from_str_radix(hex, 16).ok()?)),
    };
    let volatile = f.next()? == "v";
    let (target, channel) = match kind {
        "u" => (Target::User(target.clone()), Channel::Inbox(target)),
        "r" => (Target::Room(target.clone()), Channel::Room(target)),
        _ => return None,
    };
    let position = match seq {
        "-" => None,
        n => Some(Position {
            channel,
            seq: n.parse().ok()?,
        }),
    };
    let how = if volatile {
        Delivery::Volatile
    } else {
        Delivery::Reliable
    };
    Some(Envelope {
        target,
        exclude,
        frame: OutFrame {
            payload,
            how,
            position,
        },
    })
}

/// A change the control task applies to Redis, in order.
enum Control {
    /// Subscribe, then tell the waiter.
    Subscribe(String, Option<oneshot::Sender<()>>),
    Unsubscribe(String),
    UserOnline(Id),
    UserOffline(Id),
    Joined(Id, Id),
    Left(Id, Id),
}

/// The Redis broker. Cheap to share behind an `Arc`.
pub struct RedisBroker {
    node: String,
    /// How long a presence entry lives without a refresh (refreshed every quarter of it).
    ttl: Duration,
    hub: Hub,
    conn: ConnectionManager,
    publish: mpsc::Sender<(String, Vec<u8>)>,
    control: mpsc::UnboundedSender<Control>,
    connected: Arc<AtomicBool>,
}

/// Why the broker could not connect.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(String);

impl RedisBroker {
    /// Connects to Redis (`redis://host:port`; RESP3 is switched on here)
    /// and starts the tasks that publish, subscribe, refresh presence and
    /// deliver received envelopes into `hub`.
    pub async fn connect(
        url: &str,
        node: String,
        hub: Hub,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, RedisError> {
        let client = redis::Client::open(resp3(url)).map_err(|e| RedisError(e.to_string()))?;
        let (push_tx, mut push_rx) = mpsc::channel::<PushInfo>(QUEUE);
        let connected = Arc::new(AtomicBool::new(true));
        let flag = connected.clone();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2))
            .set_push_sender(move |info: PushInfo| {
                if info.kind == PushKind::Disconnection {
                    flag.store(false, Ordering::Release);
                }
                // Never block the connection: a full queue drops (the
                // message stays in the store for replay) and is counted.
                push_tx.try_send(info).map_err(|_| {
                    telemetry::broker_dropped();
                    redis::aio::SendError
                })
            });
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| RedisError(e.to_string()))?;
        let (publish, mut pub_rx) = mpsc::channel::<(String, Vec<u8>)>(QUEUE);
        let (control, mut ctl_rx) = mpsc::unbounded_channel();
        let broker = Arc::new(Self {
            node,
            ttl,
            hub: hub.clone(),
            conn: conn.clone(),
            publish,
            control,
            connected,
        });

        // Received envelopes into the local hub.
        let deliver_hub = hub.clone();
        let deliver_flag = broker.connected.clone();
        tokio::spawn(async move {
            while let Some(info) = push_rx.recv().await {
                match info.kind {
                    PushKind::Message => {
                        if let Some(Value::BulkString(msg)) = info.data.into_iter().nth(1) {
                            match parse_envelope(&msg) {
                                Some(env) => {
                                    telemetry::broker_received();
                                    deliver_hub.deliver(&env);
                                }
                                None => warn!("unparsable envelope from redis"),
                            }
                        }
                    }
                    PushKind::Subscribe => deliver_flag.store(true, Ordering::Release),
                    _ => {}
                }
            }
        });

        // Publishes in order, one connection, pipelined under load.
        let mut pub_conn = conn.clone();
        tokio::spawn(async move {
            while let Some(first) = pub_rx.recv().await {
                let mut pipe = redis::pipe();
                pipe.publish(first.0, first.1).ignore();
                let mut n = 1;
                while n < 256 {
                    match pub_rx.try_recv() {
                        Ok((ch, msg)) => {
                            pipe.publish(ch, msg).ignore();
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = pipe.query_async::<()>(&mut pub_conn).await {
                    warn!(error = %e, dropped = n, "redis publish failed");
                }
            }
        });

        // Subscriptions and presence changes, in order.
        let b = broker.clone();
        tokio::spawn(async move {
            let mut conn = b.conn.clone();
            while let Some(c) = ctl_rx.recv().await {
                if let Err(e) = b.apply(&mut conn, c).await {
                    warn!(error = %e, "redis control command failed; the refresh will repair it");
                }
            }
        });

        // Presence refresh and liveness pings (which also drive reconnects
        // and resubscription).
        let b = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(b.ttl / 4);
            let mut ping = tokio::time::interval(Duration::from_secs(1));
            let mut conn = b.conn.clone();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = b.refresh(&mut conn).await {
                            debug!(error = %e, "presence refresh failed");
                        }
                    }
                    _ = ping.tick() => {
                        let up = redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok();
                        let was = b.connected.swap(up, Ordering::AcqRel);
                        if up && !was {
                            telemetry::broker_reconnect();
                            info!("redis reachable again");
                            let _ = b.resubscribe(&mut conn).await;
                            let _ = b.refresh(&mut conn).await;
                        }
                    }
                    // The presence is removed by `Broker::leave`, called first on shutdown.
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(broker)
    }

    async fn apply(&self, conn: &mut ConnectionManager, c: Control) -> redis::RedisResult<()> {
        let expires = (now_ms() + self.ttl.as_millis() as u64) as i64;
        match c {
            Control::Subscribe(ch, done) => {
                let r = conn.subscribe(ch).await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                r
            }
            Control::Unsubscribe(ch) => conn.unsubscribe(ch).await,
            Control::UserOnline(u) => {
                let key = format!("rtgate:online:{u}");
                redis::pipe()
                    .hset(&key, &self.node, expires)
                    .ignore()
                    .pexpire(&key, 2 * self.ttl.as_millis() as i64)
                    .ignore()
                    .query_async(conn)
                    .await
            }
            Control::UserOffline(u) => conn.hdel(format!("rtgate:online:{u}"), &self.node).await,
            Control::Joined(room, user) => {
                let key = format!("rtgate:members:{room}");
                redis::pipe()
                    .hset(&key, format!("{}\t{user}", self.node), expires)
                    .ignore()
                    .pexpire(&key, 2 * self.ttl.as_millis() as i64)
                    .ignore()
                    .query_async(conn)
                    .await
            }
            Control::Left(room, user) => {
                conn.hdel(
                    format!("rtgate:members:{room}"),
                    format!("{}\t{user}", self.node),
                )
                .await
            }
        }
    }

    /// Rewrites this node's presence entries with a fresh expiry.
    async fn refresh(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let expires = (now_ms() + self.ttl.as_millis() as u64) as i64;
        let keep = 2 * self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for u in self.hub.local_users() {
            let key = format!("rtgate:online:{u}");
            pipe.hset(&key, &self.node, expires)
                .ignore()
                .pexpire(&key, keep)
                .ignore();
        }
        for room in self.hub.local_rooms() {
            let key = format!("rtgate:members:{room}");
            for user in self.hub.room_users(&room) {
                pipe.hset(&key, format!("{}\t{user}", self.node), expires)
                    .ignore();
            }
            pipe.pexpire(&key, keep).ignore();
        }
        pipe.query_async(conn).await
    }

    /// Subscribes again to every channel this node needs (after Redis lost
    /// its state, or missed an unsubscribe).
    async fn resubscribe(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        for u in self.hub.local_users() {
            conn.subscribe(user_channel(&u)).await?;
        }
        for r in self.hub.local_rooms() {
            conn.subscribe(room_channel(&r)).await?;
        }
        Ok(())
    }

    fn send(&self, c: Control) {
        let _ = self.control.send(c);
    }

    /// Queues a subscription; resolves when it is in effect (or after a
    /// bounded wait while Redis is unreachable: the resubscription after
    /// reconnect covers it then).
    fn subscribe(&self, channel: String) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Subscribe(channel, Some(tx)));
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        .boxed()
    }
}

/// Switches the URL to RESP3 (push messages on a multiplexed connection).
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

impl Broker for RedisBroker {
    fn publish(&self, env: Envelope) {
        let channel = match &env.target {
            Target::User(u) => user_channel(u),
            Target::Room(r) => room_channel(r),
        };
        let seq = env
            .frame
            .position
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.seq.to_string());
        let header = envelope_header(
            &env.target,
            env.exclude,
            env.frame.how == Delivery::Volatile,
        );
        let mut msg = format!("{seq} {header}\n").into_bytes();
        msg.extend_from_slice(&env.frame.payload);
        telemetry::broker_published();
        if self.publish.try_send((channel, msg)).is_err() {
            telemetry::broker_dropped();
        }
    }

    fn watch_room(&self, room: &Id) -> BoxFuture<'static, ()> {
        self.subscribe(room_channel(room))
    }

    fn unwatch_room(&self, room: &Id) {
        self.send(Control::Unsubscribe(room_channel(room)));
    }

    fn user_online(&self, user: &Id) -> BoxFuture<'static, ()> {
        let subscribed = self.subscribe(user_channel(user));
        self.send(Control::UserOnline(user.clone()));
        subscribed
    }

    fn user_offline(&self, user: &Id) {
        self.send(Control::Unsubscribe(user_channel(user)));
        self.send(Control::UserOffline(user.clone()));
    }

    fn room_joined(&self, room: &Id, user: &Id) {
        self.send(Control::Joined(room.clone(), user.clone()));
    }

    fn room_left(&self, room: &Id, user: &Id) {
        if !self.hub.room_users(room).contains(user) {
            self.send(Control::Left(room.clone(), user.clone()));
        }
    }

    fn online(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        let mut conn = self.conn.clone();
        async move {
            let mut pipe = redis::pipe();
            for u in &users {
                pipe.hvals(format!("rtgate:online:{u}"));
            }
            let all: Vec<Vec<i64>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            let now = now_ms() as i64;
            Ok(users
                .into_iter()
                .zip(all)
                .filter(|(_, exp)| exp.iter().any(|e| *e > now))
                .map(|(u, _)| u)
                .collect())
        }
        .boxed()
    }

    fn room_presence(&self, room: Id) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        let mut conn = self.conn.clone();
        async move {
            let entries: Vec<(String, i64)> = conn
                .hgetall(format!("rtgate:members:{room}"))
                .await
                .map_err(unavailable)?;
            let now = now_ms() as i64;
            let mut users: Vec<Id> = entries
                .into_iter()
                .filter(|(_, exp)| *exp > now)
                .filter_map(|(field, _)| {
                    field.split_once('\t').and_then(|(_, u)| Id::parse(u).ok())
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            users.sort();
            Ok(users)
        }
        .boxed()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let (hub, node) = (self.hub.clone(), self.node.clone());
        let mut conn = self.conn.clone();
        async move {
            let mut pipe = redis::pipe();
            for u in hub.local_users() {
                pipe.hdel(format!("rtgate:online:{u}"), &node).ignore();
            }
            for room in hub.local_rooms() {
                for user in hub.room_users(&room) {
                    pipe.hdel(format!("rtgate:members:{room}"), format!("{node}\t{user}"))
                        .ignore();
                }
            }
            let _ = pipe.query_async::<()>(&mut conn).await;
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        let mut conn = self.conn.clone();
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let sid = SessionId::new();
        let header = envelope_header(&Target::Room(Id::parse("r1").unwrap()), Some(sid), false);
        let wire = format!("42 {header}\n{{\"a\":1}}");
        let env = parse_envelope(wire.as_bytes()).unwrap();
        assert_eq!(env.target, Target::Room(Id::parse("r1").unwrap()));
        assert_eq!(env.exclude, Some(sid));
        assert_eq!(env.frame.position.unwrap().seq, 42);
        assert_eq!(&env.frame.payload[..], br#"{"a":1}"#);
        let header = envelope_header(&Target::User(Id::parse("u").unwrap()), None, true);
        let env = parse_envelope(format!("- {header}\nx\ny").as_bytes()).unwrap();
        assert!(env.frame.position.is_none() && env.exclude.is_none());
        assert_eq!(env.frame.how, Delivery::Volatile);
        assert_eq!(&env.frame.payload[..], b"x\ny");
        assert!(parse_envelope(b"garbage").is_none());
        assert_eq!(resp3("redis://h:1"), "redis://h:1?protocol=resp3");
    }
}

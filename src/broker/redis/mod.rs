//! The cluster broker over Redis Pub/Sub. A node subscribes only to what its
//! local sessions need: `rtgate:u:<user>` while it holds a session of the
//! user, `rtgate:r:<room>` while it holds a member of the room. Presence
//! lives in Redis hashes whose entries carry an expiry, refreshed by every
//! node, so a dead node's users age out. The Redis connection reconnects with
//! backoff and resubscribes by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{PushInfo, PushKind, Value};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod presence;
mod reached;
mod upkeep;

use super::{Broker, BrokerError};
use crate::hub::Hub;
use crate::model::event::EdgeSink;
use crate::model::presence::SessionInfo;
use crate::model::{Envelope, SessionId, Target};
use crate::protocol::CloseCode;
use crate::protocol::Id;
use crate::redis_io::envelope::{self, pubsub_channel};
use crate::redis_io::{DEADLINE, RedisConn};
use crate::telemetry;

/// Envelopes waiting to be published, and pushes waiting to be delivered.
const QUEUE: usize = 65_536;

fn user_channel(user: &Id) -> String {
    pubsub_channel(&Target::User(user.clone()))
}

fn room_channel(room: &Id) -> String {
    pubsub_channel(&Target::Room(room.clone()))
}

/// A change the control task applies to Redis, in order.
enum Control {
    /// Subscribe, then tell the waiter.
    Subscribe(String, Option<oneshot::Sender<bool>>),
    Unsubscribe(String),
    /// A session's presence entry (user, session id, its description).
    SessionOpened(Id, String, String),
    SessionClosed(Id, String),
    /// A user, and its info for the `user.online` event.
    UserOnline(Id, Option<Box<RawValue>>),
    UserOffline(Id, Option<Box<RawValue>>),
    /// A room, a user, and the user's info for the presence event.
    Joined(Id, Id, Option<Box<RawValue>>),
    Left(Id, Id, Option<Box<RawValue>>),
}

/// The Redis broker. Cheap to share behind an `Arc`.
pub(crate) struct RedisBroker {
    node: String,
    /// How long a presence entry lives without a refresh (refreshed every quarter of it).
    ttl: Duration,
    hub: Hub,
    conn: RedisConn,
    publish: mpsc::Sender<(String, Vec<u8>)>,
    control: mpsc::UnboundedSender<Control>,
    connected: Arc<AtomicBool>,
    /// Where presence edges go (the event webhook's outbox), once set.
    edges: std::sync::OnceLock<Arc<dyn EdgeSink>>,
}

/// Why the broker could not connect.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub(crate) struct BrokerConnectError(String);

fn online_key(u: &Id) -> String {
    format!("rtgate:online:{u}")
}

/// The cluster's nodes: field node id, value the entry's expiry.
const NODES_KEY: &str = "rtgate:nodes";

/// A user's live sessions: field session id, value `<expiry>\t<json>`.
fn sessions_key(u: &Id) -> String {
    format!("rtgate:sessions:{u}")
}

fn members_key(room: &Id) -> String {
    format!("rtgate:members:{room}")
}

/// The nodes where `user` has a session in `room` (field: node, value: the
/// entry's expiry), for the room's presence events: in the room's hash slot.
fn room_user_key(room: &Id, user: &Id) -> String {
    format!("rtgate:{{r:{room}}}:u:{user}")
}

impl RedisBroker {
    /// Connects to Redis (`redis://host:port`, or with `cluster` a
    /// comma-separated list of Redis Cluster seeds; RESP3 is switched on
    /// here) and starts the tasks that publish, subscribe, refresh presence
    /// and deliver received envelopes into `hub`.
    pub(crate) async fn connect(
        url: &str,
        cluster: bool,
        node: String,
        hub: Hub,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, BrokerConnectError> {
        let (push_tx, mut push_rx) = mpsc::channel::<PushInfo>(QUEUE);
        let lost = Arc::new(AtomicBool::new(false));
        let conn = RedisConn::connect(url, cluster, Some((push_tx, lost.clone())))
            .await
            .map_err(|e| BrokerConnectError(e.to_string()))?;
        let connected = Arc::new(AtomicBool::new(true));
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
            edges: std::sync::OnceLock::new(),
        });

        // Received envelopes into the local hub.
        let on_disconnect = broker.clone();
        tokio::spawn(async move {
            while let Some(info) = push_rx.recv().await {
                match info.kind {
                    PushKind::Message | PushKind::SMessage => {
                        if let Some(Value::BulkString(msg)) = info.data.into_iter().nth(1) {
                            match envelope::decode(&msg) {
                                Some(env) => {
                                    telemetry::broker_received();
                                    hub.deliver(&env);
                                }
                                None => warn!("unparsable envelope from redis"),
                            }
                        }
                    }
                    PushKind::Disconnection => on_disconnect.went_down("redis connection lost"),
                    _ => {}
                }
            }
        });

        // Publishes in order, pipelined under load.
        let mut pub_conn = conn.clone();
        tokio::spawn(async move {
            let command = pub_conn.publish_command();
            while let Some(first) = pub_rx.recv().await {
                let mut cmds = vec![first];
                while cmds.len() < 256 {
                    match pub_rx.try_recv() {
                        Ok(m) => cmds.push(m),
                        Err(_) => break,
                    }
                }
                let n = cmds.len();
                let cmds = cmds.into_iter().map(|(ch, msg)| {
                    let mut c = redis::cmd(command);
                    c.arg(ch).arg(msg);
                    c
                });
                if let Err(e) = pub_conn.run_all(cmds.collect()).await {
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
                        if !up {
                            b.went_down("redis does not answer");
                        } else if !b.connected.swap(true, Ordering::AcqRel) {
                            // No session lived through the outage (they were
                            // closed when it began and logins were refused),
                            // so none can have missed what was published
                            // before this node subscribed again.
                            telemetry::broker_reconnect();
                            info!("redis reachable again");
                            let _ = b.resubscribe(&mut conn).await;
                            let _ = b.refresh(&mut conn).await;
                        }
                        if lost.swap(false, Ordering::AcqRel) {
                            b.resync("a message from redis was dropped (queue full)");
                        }
                    }
                    // The presence is removed by `Broker::leave`, called first on shutdown.
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(broker)
    }

    /// Redis is unreachable: from now until it answers again, this node may
    /// miss messages, so every local session is told to resume (close 1001)
    /// and logins are refused. Once per outage.
    fn went_down(&self, why: &str) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.resync(why);
        }
    }

    /// Tells every local session to reconnect and resume with `since`,
    /// because this node may have missed envelopes for it.
    fn resync(&self, why: &str) {
        let n = self.hub.session_count();
        warn!(
            sessions = n,
            reason = why,
            "resync: closing local sessions with 1001"
        );
        telemetry::broker_resync();
        self.hub.close_all(CloseCode::GoingAway);
    }

    fn send(&self, c: Control) {
        let _ = self.control.send(c);
    }

    /// Queues a subscription; resolves to true once it is in effect, false
    /// when Redis did not confirm it in time. The control task runs
    /// subscriptions in order, so a second subscription of a channel is
    /// confirmed after the first.
    fn subscribe(&self, channel: String) -> BoxFuture<'static, bool> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Subscribe(channel, Some(tx)));
        async move { matches!(tokio::time::timeout(2 * DEADLINE, rx).await, Ok(Ok(true))) }.boxed()
    }
}

impl Broker for RedisBroker {
    fn publish(&self, env: Envelope) {
        telemetry::broker_published();
        if self.publish.try_send(envelope::encode(&env)).is_err() {
            telemetry::broker_dropped();
        }
    }

    fn watch_room(&self, room: &Id) -> BoxFuture<'static, bool> {
        self.subscribe(room_channel(room))
    }

    fn unwatch_room(&self, room: &Id) {
        self.send(Control::Unsubscribe(room_channel(room)));
    }

    fn user_online(&self, user: &Id, info: Option<&RawValue>) -> BoxFuture<'static, bool> {
        // Presence first: once the login is answered (after the
        // subscription), every node sees the user online.
        self.send(Control::UserOnline(
            user.clone(),
            info.map(ToOwned::to_owned),
        ));
        self.subscribe(user_channel(user))
    }

    fn set_edges(&self, sink: Arc<dyn EdgeSink>) {
        let _ = self.edges.set(sink);
    }

    fn session_opened(&self, user: &Id, session: SessionId) {
        let id = session.to_string();
        let Some(info) = self
            .hub
            .sessions_of(user, &self.node)
            .into_iter()
            .find(|s| s.session_id == id)
        else {
            return;
        };
        let json = serde_json::to_string(&info).expect("a session serializes");
        self.send(Control::SessionOpened(user.clone(), id, json));
    }

    fn session_closed(&self, user: &Id, session: SessionId) {
        self.send(Control::SessionClosed(user.clone(), session.to_string()));
    }

    fn nodes(&self) -> BoxFuture<'static, Result<Vec<String>, BrokerError>> {
        presence::nodes(self.conn.clone()).boxed()
    }

    fn sessions(
        &self,
        users: Vec<Id>,
    ) -> BoxFuture<'static, Result<Vec<SessionInfo>, BrokerError>> {
        presence::sessions(self.conn.clone(), users).boxed()
    }

    fn user_offline(&self, user: &Id, info: Option<&RawValue>) {
        self.send(Control::Unsubscribe(user_channel(user)));
        self.send(Control::UserOffline(
            user.clone(),
            info.map(ToOwned::to_owned),
        ));
    }

    fn room_joined(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if self.hub.sessions_in(room, user) == 1 {
            let info = info.map(ToOwned::to_owned);
            self.send(Control::Joined(room.clone(), user.clone(), info));
        }
    }

    fn room_left(&self, room: &Id, user: &Id, info: Option<&RawValue>) {
        if !self.hub.in_room(room, user) {
            let info = info.map(ToOwned::to_owned);
            self.send(Control::Left(room.clone(), user.clone(), info));
        }
    }

    fn online(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        presence::online(self.conn.clone(), users).boxed()
    }

    fn room_presence(&self, room: Id) -> BoxFuture<'static, Result<Vec<Id>, BrokerError>> {
        presence::room(self.conn.clone(), room).boxed()
    }

    fn share_reached(&self, marks: Vec<(Id, u64)>) -> BoxFuture<'static, Result<(), BrokerError>> {
        reached::share(self.conn.clone(), marks).boxed()
    }

    fn reached(&self, users: Vec<Id>) -> BoxFuture<'static, Result<Vec<u64>, BrokerError>> {
        let (conn, hub) = (self.conn.clone(), self.hub.clone());
        async move {
            let shared = reached::get(conn, &users).await?;
            Ok(users
                .iter()
                .zip(shared)
                .map(|(u, s)| s.max(hub.reached().get(u)))
                .collect())
        }
        .boxed()
    }

    fn claim_push(
        &self,
        user: &Id,
        window: Duration,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let (conn, user) = (self.conn.clone(), user.clone());
        async move { reached::claim(conn, &user, window).await }.boxed()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let (hub, node) = (self.hub.clone(), self.node.clone());
        let mut conn = self.conn.clone();
        async move {
            let mut cmds = vec![redis::cmd("HDEL").arg(NODES_KEY).arg(&node).to_owned()];
            for u in hub.local_users() {
                cmds.push(redis::cmd("HDEL").arg(online_key(&u)).arg(&node).to_owned());
                for s in hub.sessions_of(&u, &node) {
                    cmds.push(
                        redis::cmd("HDEL")
                            .arg(sessions_key(&u))
                            .arg(s.session_id)
                            .to_owned(),
                    );
                }
            }
            for room in hub.local_rooms() {
                for user in hub.room_users(&room) {
                    cmds.push(
                        redis::cmd("HDEL")
                            .arg(members_key(&room))
                            .arg(format!("{node}\t{user}"))
                            .to_owned(),
                    );
                    cmds.push(
                        redis::cmd("HDEL")
                            .arg(room_user_key(&room, &user))
                            .arg(&node)
                            .to_owned(),
                    );
                }
            }
            let _ = conn.run_all(cmds).await;
        }
        .boxed()
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        let mut conn = self.conn.clone();
        async move { conn.ping().await.map_err(unavailable) }.boxed()
    }
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

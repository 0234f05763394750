//! The per-connection session driver, generic over [`Transport`]: login and
//! its timeout, heartbeat, limits, command dispatch, replay and the writer
//! that drains the session's bounded outbound queue. One task per session.

pub(crate) mod limits;

use std::collections::{HashMap, HashSet};
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{Instrument, debug, field, info, info_span, warn};

use crate::auth::{Identity, UrlCredentials};
use crate::gateway::Gateway;
use crate::hub::{Closer, SessionHandle};
use crate::model::{Channel, OutFrame, SessionId, now_ms};
use crate::protocol::message::HISTORY;
use crate::protocol::{
    CloseCode, Command, DecodeError, Destination, Id, Inbound, Login, PONG, ProtoError, Publish,
    Reply, decode,
};
use crate::routing::Sent;
use crate::store::{Appended, StoreError};
use crate::telemetry;
use crate::transport::{Delivery, Incoming, Transport, TransportError};
use limits::{RateLimit, Verdict};

/// Frames written per flush when the outbound queue has a backlog.
const WRITE_BATCH: usize = 64;
/// How long a closing session waits for its in-flight acks.
const ACK_DRAIN: Duration = Duration::from_secs(2);
/// Messages per replay page.
const REPLAY_PAGE: usize = 100;

/// Runs a session to its end. Returns when the peer leaves or the session is
/// closed; the session is unregistered from the hub before it returns.
pub(crate) async fn run<T: Transport>(transport: T, gw: Gateway) {
    let peer = transport.peer().clone();
    let span =
        info_span!("session", transport = %peer.kind, peer = %peer.addr, user = field::Empty);
    let url = UrlCredentials {
        path_user: peer.path_user,
        query_user: peer.query_user,
        query_token: peer.query_token,
    };
    let limit = RateLimit::new(gw.config().rate_limit);
    let kind = peer.kind;
    telemetry::connection_opened(kind);
    let cancel = gw.shutdown().child_token();
    let session = Session {
        m: telemetry::session_metrics(kind),
        cancel,
        t: transport,
        gw,
        url,
        active: None,
        closer: None,
        limit,
        last_inbound: Instant::now(),
        acks: FuturesUnordered::new(),
    };
    session.run().instrument(span).await;
    telemetry::connection_closed(kind);
}

/// What to do after handling something.
enum Flow {
    Continue,
    Close(CloseCode),
    /// The transport failed: nothing more can be sent.
    Gone,
}

impl From<TransportError> for Flow {
    fn from(e: TransportError) -> Self {
        debug!(error = %e, "transport ended");
        Flow::Gone
    }
}

type AckFuture = BoxFuture<'static, (Option<String>, Result<Appended, StoreError>)>;

struct Session<T> {
    /// Metric handles for the hot path.
    m: telemetry::SessionMetrics,
    /// Cancelled to end the session: a child of the node's shutdown token,
    /// and the token the hub's [`Closer`] cancels.
    cancel: tokio_util::sync::CancellationToken,
    t: T,
    gw: Gateway,
    url: UrlCredentials,
    /// Set by a successful login.
    active: Option<Active>,
    /// The hub's way to close this session (set at login), kept apart from
    /// `active` so the select loop can borrow both.
    closer: Option<Arc<Closer>>,
    limit: RateLimit,
    last_inbound: Instant,
    /// Stores in flight whose ack is still to be sent, in any order.
    acks: FuturesUnordered<AckFuture>,
}

/// A logged-in session's state.
struct Active {
    id: SessionId,
    identity: Identity,
    handle: SessionHandle,
    rx: mpsc::Receiver<OutFrame>,
    rooms: HashSet<Id>,
    /// Per replayed channel, the last seq the replay sent: live frames up to
    /// it were already delivered and are dropped.
    replayed: HashMap<Channel, u64>,
}

async fn next_out(active: &mut Option<Active>) -> Option<OutFrame> {
    match active {
        Some(a) => a.rx.recv().await,
        None => pending().await,
    }
}

impl<T: Transport> Session<T> {
    async fn run(mut self) {
        let cfg = self.gw.config().clone();
        let login_deadline = Instant::now() + cfg.login_timeout;
        let mut heartbeat = interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Created once, not per loop turn: registering a waiter on a
        // cancellation token or a timer is not free.
        let cancelled = self.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        let login_timer = sleep_until(login_deadline);
        tokio::pin!(login_timer);
        let flow = loop {
            let flow = tokio::select! {
                biased;
                _ = &mut cancelled => {
                    // A request from the hub carries its code; otherwise the node is shutting down.
                    let code = self.closer.as_ref().and_then(|c| c.requested_code());
                    Flow::Close(code.unwrap_or(CloseCode::GoingAway))
                }
                _ = &mut login_timer, if self.active.is_none() => {
                    info!("no login in time");
                    telemetry::login("timeout");
                    Flow::Close(CloseCode::Timeout)
                }
                _ = heartbeat.tick() => self.on_heartbeat_tick(cfg.heartbeat).await,
                Some((cmid, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    self.on_ack(cmid, result).await
                }
                Some(frame) = next_out(&mut self.active) => self.write_out(frame).await,
                incoming = self.t.recv() => match incoming {
                    None => Flow::Gone,
                    Some(Err(e)) => Flow::from(e),
                    Some(Ok(inc)) => {
                        self.last_inbound = Instant::now();
                        match self.on_incoming(inc).await {
                            Flow::Continue => match self.t.flush().await {
                                Ok(()) => Flow::Continue,
                                Err(e) => Flow::from(e),
                            },
                            other => other,
                        }
                    }
                },
            };
            if !matches!(flow, Flow::Continue) {
                break flow;
            }
        };
        if let Flow::Close(code) = flow {
            info!(code = code.code(), reason = code.label(), "closing session");
            telemetry::closed(code);
            // Messages already handed to the store get their acks before the
            // close, so the client need not resend them.
            let drain = async {
                while let Some((cmid, result)) = self.acks.next().await {
                    if !matches!(self.on_ack(cmid, result).await, Flow::Continue) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(ACK_DRAIN, drain).await;
            self.t.close(code, code.reason()).await;
        }
        self.finish();
    }

    /// Leaves the hub and tells the broker what this node no longer holds.
    fn finish(&mut self) {
        let Some(a) = self.active.take() else { return };
        let rooms: Vec<Id> = a.rooms.into_iter().collect();
        let (last_user, last_rooms) =
            self.gw
                .hub()
                .unregister(a.id, &a.identity.user, rooms.iter().cloned());
        let broker = self.gw.broker();
        for room in &rooms {
            broker.room_left(room, &a.identity.user);
        }
        for room in &last_rooms {
            broker.unwatch_room(room);
        }
        if last_user {
            broker.user_offline(&a.identity.user);
        }
        debug!("session unregistered");
    }

    async fn on_heartbeat_tick(&mut self, every: Duration) -> Flow {
        if !self.t.detects_dead_peers() && self.last_inbound.elapsed() >= every * 3 {
            info!("no inbound traffic for three heartbeats");
            return Flow::Close(CloseCode::Timeout);
        }
        if self.active.is_none() {
            return Flow::Continue;
        }
        match self.t.keepalive().await {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    async fn on_ack(&mut self, cmid: Option<String>, result: Result<Appended, StoreError>) -> Flow {
        let reply = match result {
            Ok(a) => Reply::ack(cmid, a.msg_id, a.seq, a.ts),
            Err(e) => {
                warn!(error = %e, "store append failed");
                Reply::error(&ProtoError::Unavailable(e.to_string()), cmid)
            }
        };
        if let Err(e) = self.reply(reply).await {
            return e.into();
        }
        match self.t.flush().await {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    /// Writes one queued frame and whatever else is already queued, then
    /// flushes once.
    async fn write_out(&mut self, first: OutFrame) -> Flow {
        if let Some(a) = &self.active {
            self.m.queue_depth.record((a.rx.len() + 1) as f64);
        }
        let mut next = Some(first);
        let mut written = 0;
        while let Some(frame) = next.take() {
            let Some(active) = &mut self.active else {
                break;
            };
            let stale = frame.position.as_ref().is_some_and(|p| {
                active
                    .replayed
                    .get(&p.channel)
                    .is_some_and(|upto| p.seq <= *upto)
            });
            if !stale {
                if let Err(e) = self.t.send(frame.payload, frame.how).await {
                    return e.into();
                }
                written += 1;
            }
            if written < WRITE_BATCH {
                next = self.active.as_mut().and_then(|a| a.rx.try_recv().ok());
            }
        }
        self.m.frames_out.increment(written as u64);
        match self.t.flush().await {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    async fn reply(&mut self, reply: Reply) -> Result<(), TransportError> {
        self.m.frames_out.increment(1);
        self.t.send(reply.to_bytes(), Delivery::Reliable).await
    }

    async fn error(&mut self, err: ProtoError, cmid: Option<String>) -> Result<(), TransportError> {
        debug!(code = err.code(), reason = %err, "client error");
        telemetry::client_error(err.code());
        self.reply(Reply::error(&err, cmid)).await
    }

    async fn on_incoming(&mut self, inc: Incoming) -> Flow {
        let max = self.gw.config().max_frame;
        let frame = match inc {
            Incoming::Activity => return Flow::Continue,
            Incoming::TooLarge(size) => {
                self.m.frames_in.increment(1);
                return self.too_large(size, max).await;
            }
            Incoming::Frame(b) | Incoming::Datagram(b) => b,
        };
        self.m.frames_in.increment(1);
        if frame.len() > max {
            return self.too_large(frame.len(), max).await;
        }
        let decoded = decode(&frame);
        let counted = !matches!(
            decoded,
            Ok(Inbound::Ping) | Ok(Inbound::Command(Command::Heartbeat))
        );
        if counted {
            match self.limit.check() {
                Verdict::Allow => {}
                verdict => {
                    let cmid = match &decoded {
                        Ok(Inbound::Command(Command::Publish(s))) => s.client_msg_id.clone(),
                        _ => None,
                    };
                    if let Err(e) = self
                        .error(ProtoError::RateLimited(self.gw.config().rate_limit), cmid)
                        .await
                    {
                        return e.into();
                    }
                    return match verdict {
                        Verdict::Close => Flow::Close(CloseCode::RateLimited),
                        _ => Flow::Continue,
                    };
                }
            }
        }
        let result = match decoded {
            Ok(Inbound::Ping) => {
                self.m.frames_out.increment(1);
                self.t
                    .send(Bytes::from_static(PONG), Delivery::Reliable)
                    .await
            }
            Ok(Inbound::Command(cmd)) => return self.dispatch(cmd).await,
            Err(DecodeError {
                error,
                client_msg_id,
            }) => self.error(error, client_msg_id).await,
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    async fn too_large(&mut self, size: usize, limit: usize) -> Flow {
        if let Err(e) = self.error(ProtoError::TooLarge { size, limit }, None).await {
            return e.into();
        }
        Flow::Close(CloseCode::TooLarge)
    }

    async fn dispatch(&mut self, cmd: Command) -> Flow {
        let result = match (cmd, self.active.is_some()) {
            (Command::Login(login), false) => return self.login(login).await,
            (_, false) => {
                self.error(
                    ProtoError::Unauthorized("log in first (msgType 2)".into()),
                    None,
                )
                .await
            }
            (Command::Login(_), true) => {
                self.error(ProtoError::bad("already logged in"), None).await
            }
            (Command::Heartbeat, true) => self.reply(Reply::heartbeat(now_ms())).await,
            (Command::Publish(s), true) => self.send(s).await,
            (Command::Cursor { seq }, true) => self.cursor(seq).await,
            (Command::Join(room), true) => match self.join(room.clone()).await {
                Ok(seq) => self.reply(Reply::joined(room, seq)).await,
                Err(e) => self.error(e, None).await,
            },
            (Command::Leave(room), true) => {
                self.leave(&room);
                self.reply(Reply::left(room)).await
            }
            (Command::History { room, since, limit }, true) => {
                self.history(room, since, limit).await
            }
            (Command::PresenceRoom(room), true) => self.presence_room(room).await,
            (Command::PresenceUsers(users), true) => {
                let result = self.gw.broker().online(users).await;
                match result {
                    Ok(online) => self.reply(Reply::presence(None, online)).await,
                    Err(e) => {
                        self.error(ProtoError::Unavailable(e.to_string()), None)
                            .await
                    }
                }
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    fn active(&self) -> &Active {
        self.active.as_ref().expect("only called after login")
    }

    async fn login(&mut self, login: Login) -> Flow {
        let identity = match self.gw.auth().login(&login, &self.url) {
            Ok(id) => id,
            Err(e) => {
                info!(reason = %e, "login refused");
                telemetry::login(match e {
                    crate::auth::AuthError::Unauthorized(_) => "unauthorized",
                    crate::auth::AuthError::Forbidden(_) => "forbidden",
                });
                let (err, code) = e.to_protocol();
                return match self.error(err, None).await {
                    Ok(()) => Flow::Close(code),
                    Err(e) => e.into(),
                };
            }
        };
        let user = identity.user.clone();
        tracing::Span::current().record("user", field::display(&user));
        let id = SessionId::new();
        let (tx, rx) = mpsc::channel(self.gw.config().outbound_queue);
        let handle = SessionHandle {
            id,
            user: user.clone(),
            tx,
            closer: Arc::new(Closer::new(self.cancel.clone())),
        };
        if self.gw.hub().register(handle.clone()) {
            // Subscribed before the replay reads the store: no gap between
            // what the replay covers and what arrives live.
            self.gw.broker().user_online(&user).await;
        }
        self.closer = Some(handle.closer.clone());
        self.active = Some(Active {
            id,
            identity,
            handle,
            rx,
            rooms: HashSet::new(),
            replayed: HashMap::new(),
        });
        info!(session = %id, "logged in");
        telemetry::login("ok");

        let mut errors = Vec::new();
        for room in login.rooms {
            if let Err(e) = self.join(room).await {
                errors.push(e);
            }
        }
        // Registered first, read second: anything committed from now on is
        // in the outbound queue, anything before is in what we read.
        let store = self.gw.store().clone();
        let mut channels = Vec::new();
        let inbox = Channel::Inbox(user.clone());
        let inbox_since = match login.since.inbox {
            Some(n) => Ok(n),
            None => store.cursor(&user).await,
        };
        let mut store_error = None;
        match inbox_since {
            Ok(since) => channels.push((inbox.clone(), since)),
            Err(e) => store_error = Some(e),
        }
        for (room, since) in login.since.rooms {
            if self.active().identity.rooms.allows(&room) {
                channels.push((Channel::Room(room), since));
            } else {
                errors.push(ProtoError::Forbidden(format!(
                    "room {room} is not in your token"
                )));
            }
        }
        let mut first_pages = Vec::new();
        let mut unrecovered = Vec::new();
        // The inbox page also tells the inbox's latest seq.
        let mut inbox_seq = 0;
        for (channel, since) in channels {
            match store.read(&channel, since, REPLAY_PAGE).await {
                Ok(page) => {
                    if page.gap {
                        unrecovered.push(channel.to_string());
                    }
                    if channel == inbox {
                        inbox_seq = page.latest;
                    }
                    first_pages.push((channel, page));
                }
                Err(e) => store_error = Some(e),
            }
        }
        let reply = Reply {
            msg_type: crate::protocol::message::LOGIN,
            send_user_id: Some(user),
            session_id: Some(id.to_string()),
            node_id: Some(self.gw.node_id().to_string()),
            heartbeat_sec: Some(self.gw.config().heartbeat.as_secs()),
            inbox_seq: Some(inbox_seq),
            unrecovered: (!unrecovered.is_empty()).then_some(unrecovered),
            ts: Some(now_ms()),
            ..Reply::default()
        };
        if let Err(e) = self.reply(reply).await {
            return e.into();
        }
        if let Some(e) = store_error {
            errors.push(ProtoError::Unavailable(format!("replay incomplete: {e}")));
        }
        for err in errors {
            if let Err(e) = self.error(err, None).await {
                return e.into();
            }
        }
        for (channel, page) in first_pages {
            if let Err(e) = self.replay(channel, page).await {
                return e.into();
            }
        }
        Flow::Continue
    }

    /// Sends a channel's replay, page after page, up to the latest seq seen
    /// by its first page; later messages arrive live.
    async fn replay(
        &mut self,
        channel: Channel,
        mut page: crate::store::Page,
    ) -> Result<(), TransportError> {
        let until = page.latest;
        let mut sent = 0usize;
        loop {
            let more = page.messages.len() == REPLAY_PAGE && page.last < until;
            for msg in page.messages {
                self.t.send(raw_bytes(msg), Delivery::Reliable).await?;
                sent += 1;
            }
            self.t.flush().await?;
            if let Some(a) = &mut self.active {
                a.replayed.insert(channel.clone(), page.last);
            }
            if !more {
                break;
            }
            match self.gw.store().read(&channel, page.last, REPLAY_PAGE).await {
                Ok(next) => page = next,
                Err(e) => {
                    return self
                        .error(
                            ProtoError::Unavailable(format!("replay of {channel} stopped: {e}")),
                            None,
                        )
                        .await;
                }
            }
        }
        debug!(%channel, sent, "replayed");
        self.m.frames_out.increment(sent as u64);
        let kind = if matches!(channel, Channel::Inbox(_)) {
            "inbox"
        } else {
            "room"
        };
        telemetry::replayed(kind, sent);
        Ok(())
    }

    async fn send(&mut self, s: Publish) -> Result<(), TransportError> {
        let a = self.active();
        if let Destination::Room(room) = &s.to
            && !a.rooms.contains(room)
        {
            let cmid = s.client_msg_id.clone();
            return self
                .error(
                    ProtoError::Forbidden(format!("not a member of room {room}")),
                    cmid,
                )
                .await;
        }
        let cmid = s.client_msg_id.clone();
        match self
            .gw
            .publisher()
            .send(a.identity.user.clone(), Some(a.id), s)
        {
            Sent::Volatile => {}
            Sent::Stored(fut) => self.acks.push(fut.map(move |r| (cmid, r)).boxed()),
        }
        Ok(())
    }

    async fn cursor(&mut self, seq: u64) -> Result<(), TransportError> {
        let user = self.active().identity.user.clone();
        match self.gw.store().set_cursor(&user, seq).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.error(ProtoError::Unavailable(e.to_string()), None)
                    .await
            }
        }
    }

    /// Joins a room; answers the room's current seq.
    async fn join(&mut self, room: Id) -> Result<u64, ProtoError> {
        let max_rooms = self.gw.config().max_rooms;
        let a = self.active.as_mut().expect("logged in");
        if !a.identity.rooms.allows(&room) {
            return Err(ProtoError::Forbidden(format!(
                "room {room} is not in your token"
            )));
        }
        if !a.rooms.contains(&room) {
            if a.rooms.len() >= max_rooms {
                return Err(ProtoError::Conflict(format!(
                    "a session may join at most {max_rooms} rooms"
                )));
            }
            a.rooms.insert(room.clone());
            let first = self.gw.hub().join(&room, a.handle.clone());
            self.gw.broker().room_joined(&room, &a.identity.user);
            if first {
                self.gw.broker().watch_room(&room).await;
            }
        }
        self.gw
            .store()
            .latest(&Channel::Room(room))
            .await
            .map_err(|e| ProtoError::Unavailable(e.to_string()))
    }

    fn leave(&mut self, room: &Id) {
        let a = self.active.as_mut().expect("logged in");
        if a.rooms.remove(room) {
            if self.gw.hub().leave(room, a.id) {
                self.gw.broker().unwatch_room(room);
            }
            self.gw.broker().room_left(room, &a.identity.user);
        }
    }

    async fn history(
        &mut self,
        room: Option<Id>,
        since: u64,
        limit: u32,
    ) -> Result<(), TransportError> {
        let a = self.active();
        let channel = match &room {
            Some(r) if !a.identity.rooms.allows(r) => {
                return self
                    .error(
                        ProtoError::Forbidden(format!("room {r} is not in your token")),
                        None,
                    )
                    .await;
            }
            Some(r) => Channel::Room(r.clone()),
            None => Channel::Inbox(a.identity.user.clone()),
        };
        let page = self.gw.store().read(&channel, since, limit as usize).await;
        match page {
            Ok(page) => {
                let reply = Reply {
                    msg_type: HISTORY,
                    room_id: room,
                    seq: Some(page.latest),
                    messages: Some(page.messages),
                    ..Reply::default()
                };
                self.reply(reply).await
            }
            Err(e) => {
                self.error(ProtoError::Unavailable(e.to_string()), None)
                    .await
            }
        }
    }

    async fn presence_room(&mut self, room: Id) -> Result<(), TransportError> {
        if !self.active().identity.rooms.allows(&room) {
            return self
                .error(
                    ProtoError::Forbidden(format!("room {room} is not in your token")),
                    None,
                )
                .await;
        }
        let result = self.gw.broker().room_presence(room.clone()).await;
        match result {
            Ok(users) => self.reply(Reply::presence(Some(room), users)).await,
            Err(e) => {
                self.error(ProtoError::Unavailable(e.to_string()), None)
                    .await
            }
        }
    }
}

fn raw_bytes(raw: Box<RawValue>) -> Bytes {
    let s: Box<str> = raw.into();
    Bytes::from(s.into_boxed_bytes())
}

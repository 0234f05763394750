//! The per-connection session driver, generic over [`Transport`]: one task
//! per session that waits on close requests, one timer (heartbeat, login
//! deadline, credentials' expiry), pending acks, its outbound queue and the
//! peer ([`sources`]), and writes what [`login`] and [`commands`] decide.

mod chat;
mod commands;
mod control;
mod core;
mod input;
pub(crate) mod limits;
mod login;
mod output;
mod publish;
mod replay_plan;
mod sources;
mod state;
mod verdicts;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::{Instrument, debug, field, info, info_span, warn};

use crate::auth::UrlCredentials;
use crate::gateway::Gateway;
use crate::model::{DirectSend, now_ms};
use crate::protocol::{CloseCode, Encoding, Id, ProtoError, Reply};
use crate::store::Appended;
use crate::telemetry;
use crate::transport::{PeerInfo, Transport, TransportError};
use crate::wake::WakeFlag;
use commands::{AckFuture, Done};
use core::{Core, Due};
use output::WriteError;
use sources::{Woke, next_ack};
use state::LoggedIn;

/// Frames written per flush when the outbound queue has a backlog.
const WRITE_BATCH: usize = 64;
/// Messages per replay page.
const REPLAY_PAGE: usize = 100;
/// After the peer closed, how long to wait for each frame it sent before.
const INBOUND_DRAIN: Duration = Duration::from_millis(200);
/// How long a closing session waits for its in-flight acks.
const ACK_DRAIN: Duration = Duration::from_secs(2);
/// How long a session's close may take, its linger for the peer's answer
/// included; past it the transport is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Runs a session to its end. Returns when the peer leaves or the session is
/// closed; the session is unregistered from the hub before it returns.
///
/// The driver is built before the future, so the future holds one copy of
/// it: an idle session's task is the driver and the select loop's state.
pub(crate) fn run<T: Transport>(
    transport: T,
    door: Option<Arc<dyn DirectSend>>,
    peer: PeerInfo,
    gw: Gateway,
) -> impl Future<Output = ()> + Send {
    let span =
        info_span!("session", transport = %peer.kind, peer = %peer.addr, user = field::Empty);
    let url = UrlCredentials {
        transport: peer.kind,
        client: peer.addr.ip(),
        path_user: peer.path_user,
        query_user: peer.query_user,
        query_token: peer.query_token,
        cookie: peer.cookie,
        origin: peer.origin,
        authorization: peer.authorization,
        wt_draft: peer.wt_draft,
    };
    let core = Core::new(&gw.config().limits, Instant::now());
    let kind = peer.kind;
    let m = telemetry::session_metrics(kind);
    let mut driver = Driver {
        m,
        cancelled: Some(Box::pin(gw.shutdown().clone().cancelled_owned())),
        t: transport,
        gw,
        pre: Some(Box::new(PreLogin { url, door })),
        _address_permit: peer.address_permit,
        active: None,
        core,
        acks: None,
        writable: true,
        wake: WakeFlag::new(),
        encoding: peer.encoding,
    };
    // Instrumented from outside: a span moved into the block would be kept
    // twice for the session's life (the captured one and the one in the
    // `Instrumented` it went into).
    // The loop awaited here, not through a `run` of its own: each layer of
    // futures is room kept for the session's life.
    async move {
        m.opened();
        let flow = driver.select_loop().await;
        // The ending runs boxed, the flow moved in: neither the loop's timer
        // nor the flow takes room in an idle session's future.
        Box::pin(driver.end(flow)).await;
        m.closed();
    }
    .instrument(span)
}

/// A handler of the session's, boxed so that its state is allocated only
/// while it runs.
type Handler<'a> = Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// What a turn of the select loop does about what woke it.
enum Step<'a> {
    /// Decided without waiting.
    Now(Flow),
    /// A handler to await.
    Later(Handler<'a>),
}

/// What to do after handling something.
pub(super) enum Flow {
    Continue,
    Close(CloseCode),
    /// Close with a reason of the server API's, not the code's own.
    CloseWith(CloseCode, String),
    /// The transport failed: nothing more can be sent.
    Gone,
}

impl From<TransportError> for Flow {
    fn from(e: TransportError) -> Self {
        debug!(error = %e, "transport ended");
        Flow::Gone
    }
}

impl From<WriteError> for Flow {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Transport(e) => e.into(),
            WriteError::Stalled => Flow::Close(CloseCode::SlowConsumer),
            WriteError::Interrupted(code) => Flow::Close(code),
        }
    }
}

impl From<Result<(), WriteError>> for Flow {
    fn from(r: Result<(), WriteError>) -> Self {
        match r {
            Ok(()) => Flow::Continue,
            Err(e) => e.into(),
        }
    }
}

/// What a session needs only until its login succeeds, in one box.
struct PreLogin {
    /// What the request said about the user.
    url: UrlCredentials,
    /// The fan-out's side door into this session, if its transport has
    /// one; the login hands it to the hub.
    door: Option<Arc<dyn DirectSend>>,
}

/// One session's task: the transport, the state after login, and what is
/// in flight.
struct Driver<T> {
    /// Metric handles for the hot path.
    m: &'static telemetry::SessionMetrics,
    /// The node's shutdown (every session closes 1001), waited for until a
    /// login: from then on the hub's [`Closer`](crate::hub::Closer) carries
    /// it too (the node closes every session the hub holds), so a
    /// logged-in session keeps no waiter of its own.
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    t: T,
    gw: Gateway,
    /// What the request said about the user and the fan-out's side door,
    /// until a login succeeds.
    pre: Option<Box<PreLogin>>,
    /// A client behind a trusted proxy: its place under the per-address
    /// cap, freed when the session ends.
    _address_permit: Option<Arc<crate::caps::ConnPermit>>,
    /// Set by a successful login; its hub handle holds the session's id and
    /// the hub's way to close it.
    active: Option<LoggedIn>,
    /// The session's rules and timers, without I/O.
    core: Core,
    /// Stores in flight whose ack is still to be sent, in any order;
    /// allocated by the first durable message, not by every connection.
    acks: Option<Box<FuturesUnordered<AckFuture>>>,
    /// False once the peer can no longer be written to: what it sent
    /// before closing is still handled, its answers are skipped.
    writable: bool,
    /// Raised when a source other than the outbound queue woke the task.
    wake: WakeFlag,
    /// How the peer's frames are encoded; inside, every frame is JSON.
    encoding: Encoding,
}

impl<T: Transport> Driver<T> {
    /// The select loop: turns until something ends the session; what
    /// ended it. Handlers that are large or rare run boxed, so the loop's
    /// own state (what an idle session holds) stays small.
    async fn select_loop(&mut self) -> Flow {
        // Created once, not per loop turn: registering a timer is not free.
        // One timer for everything due at a time (an idle session's only
        // one): the heartbeat, the login deadline until a login, then the
        // expiry of credentials that expire (see `Core::wake_at`).
        let deadline = sleep_until(self.core.wake_at());
        tokio::pin!(deadline);
        loop {
            self.rearm(deadline.as_mut());
            // `woke` (the largest thing a turn holds) and the step end before
            // the handler is awaited, so an idle session's future does not
            // keep room for them: only the handler's box crosses the await.
            let handler = {
                let woke = poll_fn(|cx| self.poll_woke(cx, deadline.as_mut())).await;
                match self.step(woke) {
                    Step::Now(Flow::Continue) => continue,
                    Step::Now(flow) => return flow,
                    Step::Later(handler) => handler,
                }
            };
            let flow = handler.await;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
    }

    /// After the loop: what the peer sent before it went, the close, and
    /// leaving the hub.
    async fn end(&mut self, flow: Flow) {
        if let Flow::Gone = flow {
            Box::pin(self.drain_inbound()).await;
        }
        match flow {
            Flow::Close(code) => Box::pin(self.close(code, code.reason())).await,
            Flow::CloseWith(code, reason) => Box::pin(self.close(code, &reason)).await,
            _ => {}
        }
        self.finish();
    }

    /// Moves the one timer to whatever is due next; a refresh (msgType 10)
    /// may have moved the credentials' expiry.
    fn rearm(&mut self, deadline: Pin<&mut Sleep>) {
        let exp = self.active.as_ref().and_then(|a| a.identity.expires);
        if exp != self.core.expires() {
            self.core.credentials(exp, Instant::now(), now_ms());
        }
        let wake = self.core.wake_at();
        if deadline.deadline() != wake {
            deadline.reset(wake);
            // Polled again with the flag's waker before the task sleeps.
            self.wake.raise();
        }
    }

    /// What to do about `woke`: decided at once, or a handler to await.
    /// Handlers that write or wait run boxed: their state (a write bounded
    /// by a deadline, a login) would otherwise sit in every idle session's
    /// future.
    fn step(&mut self, woke: Woke) -> Step<'_> {
        let flow = match woke {
            Woke::Cancelled => {
                // A request from the hub carries its code; otherwise the node is shutting down.
                let code = self
                    .active
                    .as_ref()
                    .and_then(|a| a.handle.closer.requested_code());
                Flow::Close(code.unwrap_or(CloseCode::GoingAway))
            }
            Woke::Deadline => match self.core.on_timer(Instant::now()) {
                Due::Nothing => Flow::Continue,
                Due::Heartbeat => return Step::Later(Box::pin(self.on_heartbeat_tick())),
                Due::LoginTimeout => {
                    info!("no login in time");
                    telemetry::login("timeout");
                    Flow::Close(CloseCode::Timeout)
                }
                Due::AnnounceExpiry(exp) => {
                    return Step::Later(Box::pin(async move {
                        match self.reply(Reply::expires(exp)).await {
                            Ok(()) => self.flush().await,
                            Err(e) => e.into(),
                        }
                    }));
                }
                Due::Expired => {
                    info!("credentials expired");
                    let e = ProtoError::Unauthorized("credentials expired".into());
                    return Step::Later(Box::pin(async move {
                        match self.error(e, None).await {
                            Ok(()) => Flow::Close(CloseCode::Unauthorized),
                            Err(e) => e.into(),
                        }
                    }));
                }
            },
            Woke::Done(Done::Ack(cmid, result)) => {
                return Step::Later(Box::pin(self.on_ack(cmid, result)));
            }
            Woke::Done(Done::Verdict(v)) => return Step::Later(Box::pin(self.on_verdict(v))),
            Woke::Out(frame) => return Step::Later(Box::pin(self.write_out(frame))),
            Woke::In(None) => Flow::Gone,
            Woke::In(Some(Err(e))) => Flow::from(e),
            Woke::In(Some(Ok(inc))) => {
                self.core.on_traffic(Instant::now());
                return Step::Later(Box::pin(async move {
                    match self.on_incoming(inc).await {
                        Flow::Continue => self.flush().await,
                        other => other,
                    }
                }));
            }
        };
        Step::Now(flow)
    }

    /// Sends the acks of what is already stored, then closes with `code`.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        info!(code = code.code(), reason = code.label(), "closing session");
        telemetry::closed(code);
        // Messages already handed to the store get their acks before the
        // close, so the client need not resend them.
        let drain = async {
            while let Some(done) = next_ack(&mut self.acks).await {
                // Verdicts no longer matter: the session is closing.
                let Done::Ack(cmid, result) = done else {
                    continue;
                };
                if !matches!(self.on_ack(cmid, result).await, Flow::Continue) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(ACK_DRAIN, drain).await;
        // Bounded: a peer that stopped reading takes no close either.
        let _ = tokio::time::timeout(CLOSE_WAIT, self.t.close(code, reason)).await;
    }

    /// Leaves the hub and tells the broker what this node no longer holds.
    fn finish(&mut self) {
        let Some(a) = self.active.take() else { return };
        let id = a.id();
        let rooms: Vec<Id> = a.rooms.into_vec();
        let (last_user, last_rooms) =
            self.gw
                .hub()
                .unregister(id, &a.identity.user, rooms.iter().cloned());
        let broker = self.gw.broker();
        broker.session_closed(&a.identity.user, id);
        for room in &rooms {
            broker.room_left(room, &a.identity.user, a.identity.info.as_deref());
        }
        for room in &last_rooms {
            broker.unwatch_room(room);
        }
        if last_user {
            broker.user_offline(&a.identity.user, a.identity.info.as_deref());
        }
        debug!("session unregistered");
    }

    async fn on_heartbeat_tick(&mut self) -> Flow {
        match self.heartbeat().await {
            Ok(liveness) if self.core.silent(Instant::now(), liveness) => {
                info!("no inbound traffic for three heartbeats");
                Flow::Close(CloseCode::Timeout)
            }
            Ok(_) => Flow::Continue,
            Err(e) => e.into(),
        }
    }

    async fn on_ack(
        &mut self,
        cmid: Option<String>,
        result: Result<Option<Appended>, ProtoError>,
    ) -> Flow {
        let reply = match result {
            Ok(None) => return Flow::Continue,
            Ok(Some(a)) => Reply::ack(cmid, a.msg_id, a.seq, a.ts),
            Err(e) => {
                match e.code() {
                    503 => warn!(error = %e, "message not stored"),
                    _ => debug!(error = %e, "message refused"),
                }
                Reply::error(&e, cmid)
            }
        };
        if let Err(e) = self.reply(reply).await {
            return e.into();
        }
        self.flush().await
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod driver_tests;

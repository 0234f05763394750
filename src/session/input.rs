//! The driver's read side: a frame from the peer is sized, rate-limited,
//! decoded and handled: `ping`, the login (with its replies and replay), or
//! a command of a logged-in session.

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{Instrument, field};

use super::commands::{self, Effects};
use super::core::{Admit, Reading};
use super::limits::HEARTBEATS_PER_SECOND;
use super::login::{self, Refused};
use super::verdicts::{self, Verdict};
use super::{Driver, Flow};
use crate::model::{Delivery, now_ms};
use crate::protocol::encoding::msgpack_to_json;
use crate::protocol::{
    CloseCode, Command, DecodeError, Encoding, Inbound, Login, PONG, ProtoError, decode,
};
use crate::telemetry;
use crate::transport::{Incoming, Transport};

impl<T: Transport> Driver<T> {
    pub(super) async fn on_incoming(&mut self, inc: Incoming) -> Flow {
        let frame = match inc {
            Incoming::Activity => {
                let beat = self.core.admit_heartbeat(Instant::now());
                if beat != Admit::Handle {
                    return self.refused(beat, None).await;
                }
                return Flow::Continue;
            }
            Incoming::TooLarge(size) => {
                self.m.frames_in.increment(1);
                return self.refused(self.core.too_large(size), None).await;
            }
            Incoming::Frame(b) => (b, false),
            Incoming::Datagram(b) => (b, true),
        };
        let (frame, datagram) = frame;
        self.m.frames_in.increment(1);
        let size = self.core.admit_size(frame.len());
        if size != Admit::Handle {
            return self.refused(size, None).await;
        }
        // A MessagePack peer's frames become the JSON every transport's
        // frames are decoded from (a literal `ping` stays what it is).
        let mut decoded = match self.encoding {
            Encoding::MsgPack if frame.trim_ascii() != b"ping" => match msgpack_to_json(&frame) {
                Ok(json) => decode(&json),
                Err(error) => Err(DecodeError {
                    error,
                    client_msg_id: None,
                }),
            },
            _ => decode(&frame),
        };
        // A datagram may carry only a heartbeat or a volatile message (a
        // typing notice is one): a
        // login, a stored message or a command would be lost or reordered
        // without the client knowing (PROTOCOL.md section 9).
        if datagram
            && !matches!(
                &decoded,
                Ok(Inbound::Ping) | Ok(Inbound::Command(Command::Heartbeat)) | Err(_)
            )
            && !matches!(&decoded, Ok(Inbound::Command(Command::Publish(p))) if p.volatile)
            && !matches!(&decoded, Ok(Inbound::Command(Command::Typing { .. })))
        {
            let cmid = match &decoded {
                Ok(Inbound::Command(Command::Publish(p))) => p.client_msg_id.clone(),
                _ => None,
            };
            decoded = Err(DecodeError {
                error: ProtoError::bad(
                    "a datagram may carry only a heartbeat (msgType 1) or a volatile message; \
                     send anything else on the stream",
                ),
                client_msg_id: cmid,
            });
        }
        // Heartbeats are not counted, only bounded.
        let admit = match decoded {
            Ok(Inbound::Ping) | Ok(Inbound::Command(Command::Heartbeat)) => {
                self.core.admit_heartbeat(Instant::now())
            }
            _ => self.core.admit_rate(Instant::now()),
        };
        if admit != Admit::Handle {
            let cmid = match decoded {
                Ok(Inbound::Command(Command::Publish(s))) => s.client_msg_id,
                _ => None,
            };
            return self.refused(admit, cmid).await;
        }
        match decoded {
            Ok(Inbound::Ping) => {
                self.m.frames_out.increment(1);
                self.send(Bytes::from_static(PONG), Delivery::Reliable)
                    .await
                    .into()
            }
            Ok(Inbound::Command(Command::Login(login))) if self.active.is_none() => {
                self.login(login, &frame).await
            }
            Ok(Inbound::Command(cmd)) => self.dispatch(cmd).await,
            Err(DecodeError {
                error,
                client_msg_id,
            }) => self.error(error, client_msg_id).await.into(),
        }
    }

    /// A frame the core did not admit: its error, and the close that may follow.
    async fn refused(&mut self, admit: Admit, cmid: Option<String>) -> Flow {
        let err = match admit {
            Admit::TooLarge { size, limit } => ProtoError::TooLarge { size, limit },
            Admit::HeartbeatFlood => ProtoError::Limit(format!(
                "more than {HEARTBEATS_PER_SECOND} heartbeats (ping, msgType 1, WebSocket Ping \
                 or Pong) in a second"
            )),
            _ => ProtoError::RateLimited(self.gw.config().limits.rate_limit),
        };
        if let Err(e) = self.error(err, cmid).await {
            return e.into();
        }
        match admit.closes() {
            Some(code) => Flow::Close(code),
            None => Flow::Continue,
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Flow {
        let Some(state) = &mut self.active else {
            let e = ProtoError::Unauthorized("log in first (msgType 2)".into());
            return self.error(e, None).await.into();
        };
        let effects = commands::handle(state, &self.gw, cmd).await;
        self.apply(effects).await
    }

    /// Goes on with what waited for a join hook verdict.
    pub(super) async fn on_verdict(&mut self, v: Verdict) -> Flow {
        let Some(state) = &mut self.active else {
            return Flow::Continue;
        };
        let effects = verdicts::resume(state, &self.gw, v).await;
        match self.apply(effects).await {
            // Nothing else flushes what this wrote (an incoming frame's
            // replies are flushed once it is handled).
            Flow::Continue => self.flush().await,
            other => other,
        }
    }

    /// Sends what a command came to and keeps the work it left running.
    async fn apply(&mut self, effects: Effects) -> Flow {
        let Effects {
            replies,
            acks,
            close,
        } = effects;
        if !acks.is_empty() {
            self.acks.get_or_insert_default().extend(acks);
        }
        for r in replies {
            if let Err(e) = self.reply(r).await {
                return e.into();
            }
        }
        match close {
            Some(code) => Flow::Close(code),
            None => Flow::Continue,
        }
    }

    async fn login(&mut self, login: Login, frame: &[u8]) -> Flow {
        let reading = Reading {
            single_stream: login.single_stream,
            redundancy: login.redundancy,
        };
        let Some(pre) = self.pre.as_deref() else {
            // Logins come here only before one succeeded, while `pre` is set.
            return Flow::Continue;
        };
        let span =
            tracing::trace_span!(target: telemetry::otel::TARGET, "login", user = field::Empty);
        let direct = pre.door.clone();
        let attempt = login::login(&self.gw, login, &pre.url, frame, direct);
        let started = match attempt.instrument(span.clone()).await {
            Ok(s) => {
                span.record("user", field::display(s.state.user()));
                s
            }
            Err(Refused::Bad(e)) => return self.error(e, None).await.into(),
            Err(Refused::Close(e, code)) => {
                return match self.error(e, None).await {
                    Ok(()) => Flow::Close(code),
                    Err(e) => e.into(),
                };
            }
            Err(Refused::Auth(e)) => {
                let (err, code) = e.to_protocol();
                return match self.error(err, None).await {
                    Ok(()) => Flow::Close(code),
                    Err(e) => e.into(),
                };
            }
        };
        self.pre = None;
        self.core.logged_in(
            started.state.identity.expires,
            reading,
            Instant::now(),
            now_ms(),
        );
        for (channel, seq) in &started.held {
            self.core.replayed(channel, *seq);
        }
        // The session is in the hub: the node's shutdown now comes through
        // its closer. One that began before it got there is seen here.
        self.cancelled = None;
        if self.gw.shutdown().is_cancelled() {
            started.state.handle.closer.close(CloseCode::GoingAway);
        }
        self.active = Some(started.state);
        if let Err(e) = self.reply(started.reply).await {
            return e.into();
        }
        for notice in started.joined {
            if let Err(e) = self.reply(notice).await {
                return e.into();
            }
        }
        for err in started.errors {
            if let Err(e) = self.error(err, None).await {
                return e.into();
            }
        }
        for (channel, since) in started.replay {
            if let Err(e) = self.replay(channel, since).await {
                return e.into();
            }
        }
        Flow::Continue
    }
}

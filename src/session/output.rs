//! The driver's write side: every frame to the peer goes through here
//! (skipped once the peer can no longer be written to), queued frames are
//! written in batches with one flush, login replays page by page, and frames
//! the peer sent before its close are still handled.

use bytes::Bytes;
use serde_json::value::RawValue;
use tracing::debug;

use super::{Driver, Flow, INBOUND_DRAIN, REPLAY_PAGE, WRITE_BATCH};
use crate::model::{Channel, Delivery, OutFrame};
use crate::protocol::message::{ERROR, LEAVE};
use crate::protocol::{ProtoError, Reply};
use crate::telemetry;
use crate::transport::{Transport, TransportError};

impl<T: Transport> Driver<T> {
    /// The peer is gone (it closed, or a write to it failed): frames it sent
    /// before are still in the transport's queue and are handled now, so a
    /// message sent just before a close is delivered (volatile) or stored
    /// (durable). Nothing more is written.
    pub(super) async fn drain_inbound(&mut self) {
        self.writable = false;
        if self.active.is_none() {
            return;
        }
        let mut handled = 0usize;
        while let Ok(Some(Ok(inc))) = tokio::time::timeout(INBOUND_DRAIN, self.t.recv()).await {
            let _ = self.on_incoming(inc).await;
            handled += 1;
        }
        if handled > 0 {
            debug!(handled, "handled frames the peer sent before it closed");
        }
    }

    /// Sends one frame, unless the peer can no longer be written to.
    pub(super) async fn send(&mut self, frame: Bytes, how: Delivery) -> Result<(), TransportError> {
        if !self.writable {
            return Ok(());
        }
        let r = self.t.send(frame, how).await;
        if r.is_err() {
            self.writable = false;
        }
        r
    }

    /// Sends one stored frame of `channel` (on its own stream where the
    /// transport has one), unless the peer can no longer be written to.
    pub(super) async fn send_in(
        &mut self,
        frame: Bytes,
        channel: &Channel,
    ) -> Result<(), TransportError> {
        if !self.writable {
            return Ok(());
        }
        let r = self.t.send_in(frame, channel).await;
        if r.is_err() {
            self.writable = false;
        }
        r
    }

    /// Flushes, unless the peer can no longer be written to.
    pub(super) async fn flush(&mut self) -> Flow {
        if !self.writable {
            return Flow::Continue;
        }
        match self.t.flush().await {
            Ok(()) => Flow::Continue,
            Err(e) => {
                self.writable = false;
                e.into()
            }
        }
    }

    /// Writes one queued frame and whatever else is already queued, then
    /// flushes once.
    pub(super) async fn write_out(&mut self, first: OutFrame) -> Flow {
        if let Some(a) = &self.active {
            self.m.queue_depth.record((a.rx.len() + 1) as f64);
        }
        let mut next = Some(first);
        let mut written = 0;
        while let Some(frame) = next.take() {
            if frame.how == Delivery::Presence {
                let wanted = self.active.as_ref().is_some_and(|a| {
                    matches!(&frame.position, Some(p) if matches!(&p.channel, Channel::Room(r) if a.presence_rooms.contains(r)))
                });
                if wanted {
                    if let Err(e) = self.send(frame.payload.clone(), Delivery::Reliable).await {
                        return e.into();
                    }
                    written += 1;
                }
                next = self.active.as_mut().and_then(|a| a.rx.try_recv());
                continue;
            }
            if frame.how == Delivery::Control {
                match Box::pin(self.on_control(&frame.payload)).await {
                    Flow::Continue => {}
                    other => return other,
                }
                next = self.active.as_mut().and_then(|a| a.rx.try_recv());
                continue;
            }
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
                let sent = match (&frame.position, frame.how) {
                    (Some(p), Delivery::Reliable) => {
                        self.send_in(frame.payload.clone(), &p.channel).await
                    }
                    _ => self.send(frame.payload.clone(), frame.how).await,
                };
                if let Err(e) = sent {
                    return e.into();
                }
                written += 1;
            }
            if written < WRITE_BATCH {
                next = self.active.as_mut().and_then(|a| a.rx.try_recv());
            }
        }
        self.m.frames_out.increment(written as u64);
        self.flush().await
    }

    /// Sends one reply; error replies are logged and counted.
    pub(super) async fn reply(&mut self, reply: Reply) -> Result<(), TransportError> {
        if reply.msg_type == ERROR {
            let code = reply.code.unwrap_or_default();
            debug!(code, reason = reply.reason.as_deref(), "client error");
            telemetry::client_error(code);
        }
        if reply.msg_type == LEAVE
            && reply.code.is_none()
            && let Some(room) = &reply.room_id
        {
            self.t.end_channel(&Channel::Room(room.clone()));
        }
        self.m.frames_out.increment(1);
        self.send(reply.to_bytes(), Delivery::Reliable).await
    }

    pub(super) async fn error(
        &mut self,
        err: ProtoError,
        cmid: Option<String>,
    ) -> Result<(), TransportError> {
        self.reply(Reply::error(&err, cmid)).await
    }

    /// Sends a channel's replay after `since`, page after page, up to the
    /// latest seq seen by its first page; later messages arrive live.
    pub(super) async fn replay(
        &mut self,
        channel: Channel,
        since: u64,
    ) -> Result<(), TransportError> {
        let mut page = match self.gw.store().read(&channel, since, REPLAY_PAGE).await {
            Ok(p) => p,
            Err(e) => {
                let e = ProtoError::Unavailable(format!("replay of {channel} stopped: {e}"));
                return self.error(e, None).await;
            }
        };
        let until = page.latest;
        let mut sent = 0usize;
        loop {
            let more = page.messages.len() == REPLAY_PAGE && page.last < until;
            for msg in page.messages {
                self.send_in(raw_bytes(msg), &channel).await?;
                sent += 1;
            }
            if self.writable {
                self.t.flush().await?;
            }
            if let Some(a) = &mut self.active {
                a.replayed.insert(channel.clone(), page.last);
            }
            if !more {
                break;
            }
            match self.gw.store().read(&channel, page.last, REPLAY_PAGE).await {
                Ok(next) => page = next,
                Err(e) => {
                    let e = ProtoError::Unavailable(format!("replay of {channel} stopped: {e}"));
                    return self.error(e, None).await;
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
}

fn raw_bytes(raw: Box<RawValue>) -> Bytes {
    let s: Box<str> = raw.into();
    Bytes::from(s.into_boxed_bytes())
}

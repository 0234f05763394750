//! The driver's write side: every frame to the peer goes through here
//! (skipped once the peer can no longer be written to), queued frames are
//! written in batches with one flush, login replays page by page, and frames
//! the peer sent before its close are still handled.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::core::Route;
use super::{Driver, Flow, INBOUND_DRAIN, REPLAY_PAGE, WRITE_BATCH};
use crate::hub::Closer;
use crate::model::frame::encode;
use crate::model::{Channel, Delivery, OutFrame};
use crate::protocol::message::{ERROR, LEAVE};
use crate::protocol::{CloseCode, ProtoError, Reply};
use crate::telemetry;
use crate::transport::{Lane, Liveness, Transport, TransportError};

/// Why a write to the peer did not complete.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The transport failed: nothing more can be sent.
    Transport(TransportError),
    /// The peer took nothing for the write deadline (the heartbeat
    /// interval): a reader that stopped, closed 4008.
    Stalled,
    /// A close was asked for (the hub's, or the node's shutdown) while the
    /// write waited on the peer.
    Interrupted(CloseCode),
}

impl From<TransportError> for WriteError {
    fn from(e: TransportError) -> Self {
        WriteError::Transport(e)
    }
}

/// Runs a write to the peer, giving up when it waits longer than `limit`
/// or when the session is asked to close meanwhile. A write that completes
/// at once (the common case) starts no timer, and the waiting part's state
/// is boxed: every session's future would otherwise carry it while idle.
async fn bounded(
    write: impl Future<Output = Result<(), TransportError>>,
    limit: Duration,
    closer: Option<&Closer>,
    shutdown: &CancellationToken,
) -> Result<(), WriteError> {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(r) = futures_util::poll!(write.as_mut()) {
        return r.map_err(WriteError::from);
    }
    Box::pin(wait_bounded(write, limit, closer, shutdown)).await
}

/// The waiting part of [`bounded`].
async fn wait_bounded(
    write: std::pin::Pin<&mut impl Future<Output = Result<(), TransportError>>>,
    limit: Duration,
    closer: Option<&Closer>,
    shutdown: &CancellationToken,
) -> Result<(), WriteError> {
    let asked = poll_fn(|cx| match closer {
        Some(c) => c.poll_requested(cx),
        None => Poll::Pending,
    });
    tokio::select! {
        biased;
        r = write => r.map_err(WriteError::from),
        code = asked => Err(WriteError::Interrupted(code)),
        () = shutdown.cancelled() => Err(WriteError::Interrupted(CloseCode::GoingAway)),
        () = tokio::time::sleep(limit) => Err(WriteError::Stalled),
    }
}

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
    pub(super) async fn send(&mut self, frame: Bytes, how: Delivery) -> Result<(), WriteError> {
        let lane = self.core.lane_of(how);
        let frame = encode(&frame, self.encoding);
        self.write(frame, lane).await
    }

    /// Sends one stored frame of `channel` (on its own stream where the
    /// transport has one and the client reads more than one), unless the
    /// peer can no longer be written to.
    pub(super) async fn send_in(
        &mut self,
        frame: Bytes,
        channel: &Channel,
    ) -> Result<(), WriteError> {
        let lane = self.core.channel_lane(channel);
        let frame = encode(&frame, self.encoding);
        self.write(frame, lane).await
    }

    async fn write(&mut self, frame: Bytes, lane: Lane<'_>) -> Result<(), WriteError> {
        if !self.writable {
            return Ok(());
        }
        let limit = self.core.write_deadline();
        let r = bounded(
            self.t.write(frame, lane),
            limit,
            self.active.as_ref().map(|a| &*a.handle.closer),
            self.gw.shutdown(),
        )
        .await;
        self.wrote(r)
    }

    /// Flushes, unless the peer can no longer be written to.
    pub(super) async fn flush(&mut self) -> Flow {
        self.flush_out().await.into()
    }

    async fn flush_out(&mut self) -> Result<(), WriteError> {
        if !self.writable {
            return Ok(());
        }
        let limit = self.core.write_deadline();
        let r = bounded(
            self.t.flush(),
            limit,
            self.active.as_ref().map(|a| &*a.handle.closer),
            self.gw.shutdown(),
        )
        .await;
        self.wrote(r)
    }

    /// The transport's heartbeat, bounded like a write.
    pub(super) async fn heartbeat(&mut self) -> Result<Liveness, WriteError> {
        if !self.writable {
            return Ok(Liveness::Transport);
        }
        let limit = self.core.write_deadline();
        let mut liveness = Liveness::Session;
        let t = &mut self.t;
        let probe = async {
            liveness = t.heartbeat().await?;
            Ok(())
        };
        let r = bounded(
            probe,
            limit,
            self.active.as_ref().map(|a| &*a.handle.closer),
            self.gw.shutdown(),
        )
        .await;
        self.wrote(r).map(|()| liveness)
    }

    /// After a write: a failed or abandoned one ends writing.
    fn wrote(&mut self, r: Result<(), WriteError>) -> Result<(), WriteError> {
        if let Err(e) = &r {
            self.writable = false;
            if matches!(e, WriteError::Stalled) {
                info!(
                    "the peer took nothing for a heartbeat interval: closing it as a slow consumer"
                );
                self.m.write_stalls.increment(1);
            }
        }
        r
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
            let Some(active) = &self.active else { break };
            match self.core.route(&frame, active.presence_rooms()) {
                Route::Skip => {}
                Route::Control => match Box::pin(self.on_control(&frame.payload)).await {
                    Flow::Continue => {}
                    other => return other,
                },
                Route::Write(lane) => {
                    // In the peer's encoding, made once per frame for all
                    // the sessions that share it.
                    let bytes = frame.encoded(self.encoding);
                    if let Err(e) = self.write(bytes, lane).await {
                        return e.into();
                    }
                    written += 1;
                }
            }
            if written < WRITE_BATCH {
                next = self.active.as_mut().and_then(|a| a.rx.try_recv());
            }
        }
        self.m.frames_out.increment(written as u64);
        let flow = self.flush().await;
        if let Some(a) = &self.active {
            // What it took is out: the fan-out may go around the queue again.
            a.rx.written();
        }
        flow
    }

    /// Sends one reply; error replies are logged and counted.
    pub(super) async fn reply(&mut self, reply: Reply) -> Result<(), WriteError> {
        if reply.msg_type == ERROR {
            let code = reply.code.unwrap_or_default();
            debug!(code, reason = reply.reason.as_deref(), "client error");
            telemetry::client_error(code);
        }
        if reply.msg_type == LEAVE
            && reply.code.is_none()
            && let Some(room) = &reply.room_id
        {
            self.t.end_lane(&Channel::Room(room.clone()));
        }
        self.m.frames_out.increment(1);
        self.send(reply.to_bytes(), Delivery::Reliable).await
    }

    pub(super) async fn error(
        &mut self,
        err: ProtoError,
        cmid: Option<String>,
    ) -> Result<(), WriteError> {
        self.reply(Reply::error(&err, cmid)).await
    }

    /// Sends a channel's replay after `since`, page after page, up to the
    /// latest seq seen by its first page; later messages arrive live.
    pub(super) async fn replay(&mut self, channel: Channel, since: u64) -> Result<(), WriteError> {
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
            self.flush_out().await?;
            self.core.replayed(&channel, page.last);
            if let Channel::Inbox(user) = &channel {
                self.gw.hub().reached().mark(user, page.last);
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

//! The session's rules without I/O, in the manner of quinn-proto: a
//! synchronous state machine that the async driver feeds what happened (a
//! frame from the peer, a frame from the hub, the clock, a login, a
//! refresh, a replay page) and asks what to do (whether a frame is handled,
//! refused or ends the session; which lane a frame goes out on or whether it
//! is dropped; when to wake next and what is then due). Every instant comes
//! from the caller, so its tests run on an in-memory clock.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::limits::{RateLimit, Verdict};
use crate::auth::EXP_LEEWAY_SECS;
use crate::config::LimitsConfig;
use crate::model::{Channel, Delivery, OutFrame};
use crate::protocol::{CloseCode, Id, Redundancy};
use crate::transport::{Lane, Liveness};

/// How long before its credentials expire a session is told (at most; a
/// short-lived token is announced halfway through its life).
const EXPIRY_NOTICE: Duration = Duration::from_secs(60);

/// What the session's one timer found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet (the timer fired early, or what it was set for moved).
    Nothing,
    /// The heartbeat: the transport's probe, then [`Core::silent`].
    Heartbeat,
    /// No login in time: close 4408.
    LoginTimeout,
    /// The credentials expire at this Unix time: announce it (msgType 10).
    AnnounceExpiry(u64),
    /// The credentials expired and no refresh came: close 4401.
    Expired,
}

/// What to do with one frame from the peer, before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Handle it.
    Handle,
    /// Over the size limit: error 413, then close 4413.
    TooLarge { size: usize, limit: usize },
    /// Over the rate limit: error 429, the frame is dropped.
    RateLimited,
    /// Over the rate limit for too long: error 429, then close 4429.
    Abusive,
    /// More heartbeats in a second than any client sends: error 429, then
    /// close 4429.
    HeartbeatFlood,
}

/// Where a frame from the session's queue goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route<'a> {
    /// Written on this lane.
    Write(Lane<'a>),
    /// An instruction for the session itself, handled in queue order.
    Control,
    /// Not for this peer: a presence event it did not ask for, or a live
    /// frame its replay already sent.
    Skip,
}

impl Admit {
    /// The close code that follows, if any.
    pub(super) fn closes(self) -> Option<CloseCode> {
        match self {
            Admit::TooLarge { .. } => Some(CloseCode::TooLarge),
            Admit::Abusive | Admit::HeartbeatFlood => Some(CloseCode::RateLimited),
            Admit::Handle | Admit::RateLimited => None,
        }
    }
}

/// Expiring credentials, and whether their expiry was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expiry {
    /// Unix seconds.
    at: u64,
    /// When to announce it, fixed when the credentials arrive: at most
    /// [`EXPIRY_NOTICE`] before, halfway through a shorter life.
    notice: Instant,
    /// When to close the session: the expiry plus the leeway.
    end: Instant,
    announced: bool,
}

/// One session's rules and the state they need.
pub(super) struct Core {
    /// The heartbeat interval in milliseconds, and the frame size limit:
    /// four bytes each (a `Duration` and a `usize` took 24), as this sits
    /// in every idle session's task.
    heartbeat_ms: u32,
    max_frame: u32,
    /// Until a login: when the session is closed without one.
    login_deadline: Option<Instant>,
    next_beat: Instant,
    /// Boxed: most sessions' credentials do not expire, and the box keeps
    /// 40 bytes out of every idle session's task.
    expiry: Option<Box<Expiry>>,
    last_inbound: Instant,
    limit: RateLimit,
    /// How the client reads channel frames (login's `streams` and
    /// `redundancy`).
    reading: Reading,
    /// Per replayed channel, the last seq the replay sent: live frames up
    /// to it were already delivered and are dropped. Allocated by the first
    /// replay (most sessions have none).
    #[expect(
        clippy::box_collection,
        reason = "the box keeps the map's header out of every idle session's task"
    )]
    replayed: Option<Box<HashMap<Channel, u64>>>,
}

/// How a client reads its channels' frames.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reading {
    /// Only its one stream (`"streams":"single"`): channel frames go there.
    pub(super) single_stream: bool,
    /// Redundant datagram copies of channel frames (`"redundancy"`).
    pub(super) redundancy: Redundancy,
}

impl Core {
    /// A session that connected at `now` and has not logged in.
    pub(super) fn new(limits: &LimitsConfig, now: Instant) -> Self {
        Self {
            heartbeat_ms: u32::try_from(limits.heartbeat.as_millis()).unwrap_or(u32::MAX),
            max_frame: u32::try_from(limits.max_frame).unwrap_or(u32::MAX),
            login_deadline: Some(now + limits.login_timeout),
            next_beat: now + limits.heartbeat,
            expiry: None,
            last_inbound: now,
            limit: RateLimit::new(limits.rate_limit),
            reading: Reading::default(),
            replayed: None,
        }
    }

    /// The heartbeat interval, which is also how long a write may wait on
    /// the peer.
    pub(super) fn write_deadline(&self) -> Duration {
        self.heartbeat()
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.into())
    }

    /// A login succeeded at `now` (`unix_ms` on the wall clock), with
    /// credentials that expire at `expires` (Unix seconds) if they do, and
    /// the client reads channel frames as `reading` says.
    pub(super) fn logged_in(
        &mut self,
        expires: Option<u64>,
        reading: Reading,
        now: Instant,
        unix_ms: u64,
    ) {
        self.login_deadline = None;
        self.reading = reading;
        self.credentials(expires, now, unix_ms);
    }

    /// When the session's credentials expire (Unix seconds), if they do.
    pub(super) fn expires(&self) -> Option<u64> {
        self.expiry.as_ref().map(|e| e.at)
    }

    /// The session's credentials expire at `expires`, as of `now` and
    /// `unix_ms` (a refresh): an expiry that moved is announced again.
    pub(super) fn credentials(&mut self, expires: Option<u64>, now: Instant, unix_ms: u64) {
        if self.expires() == expires {
            return;
        }
        self.expiry = expires.map(|at| {
            let left = Duration::from_millis((at * 1000).saturating_sub(unix_ms));
            let end =
                Duration::from_millis(((at + EXP_LEEWAY_SECS) * 1000).saturating_sub(unix_ms));
            Box::new(Expiry {
                at,
                notice: now + left - EXPIRY_NOTICE.min(left / 2),
                end: now + end,
                announced: false,
            })
        });
    }

    /// When the timer must fire next: the heartbeat, or earlier the login
    /// deadline or the expiry's next step. Reads no clock: every instant
    /// was fixed when it was learned.
    pub(super) fn wake_at(&self) -> Instant {
        self.event_at()
            .map_or(self.next_beat, |t| t.min(self.next_beat))
    }

    fn event_at(&self) -> Option<Instant> {
        if let Some(deadline) = self.login_deadline {
            return Some(deadline);
        }
        let e = self.expiry.as_deref()?;
        Some(if e.announced { e.end } else { e.notice })
    }

    /// The timer fired at `now`: what is due. A login deadline or expiry
    /// step comes before the heartbeat when both are due.
    pub(super) fn on_timer(&mut self, now: Instant) -> Due {
        if let Some(at) = self.event_at()
            && at <= now
        {
            if self.login_deadline.is_some() {
                return Due::LoginTimeout;
            }
            return match &mut self.expiry {
                Some(e) if !e.announced => {
                    e.announced = true;
                    Due::AnnounceExpiry(e.at)
                }
                _ => Due::Expired,
            };
        }
        if self.next_beat <= now {
            self.next_beat = now + self.heartbeat();
            return Due::Heartbeat;
        }
        Due::Nothing
    }

    /// The peer sent something (any frame, a Pong included).
    pub(super) fn on_traffic(&mut self, now: Instant) {
        self.last_inbound = now;
    }

    /// After a heartbeat: whether the peer is to be closed 4408 for
    /// silence (three heartbeats without traffic), when the session, not
    /// the transport, judges it.
    pub(super) fn silent(&self, now: Instant, liveness: Liveness) -> bool {
        liveness == Liveness::Session
            && now.saturating_duration_since(self.last_inbound) >= self.heartbeat() * 3
    }

    /// A frame of `size` bytes from the peer, before it is decoded.
    pub(super) fn admit_size(&self, size: usize) -> Admit {
        if size > self.max_frame() {
            return self.too_large(size);
        }
        Admit::Handle
    }

    /// A decoded frame that counts against the rate limit (heartbeats and
    /// `ping` do not), arriving at `now`.
    pub(super) fn admit_rate(&mut self, now: Instant) -> Admit {
        match self.limit.check(now.into_std()) {
            Verdict::Allow => Admit::Handle,
            Verdict::Reject => Admit::RateLimited,
            Verdict::Close => Admit::Abusive,
        }
    }

    /// A heartbeat (`ping`, msgType 1, a WebSocket Ping or Pong) arriving at
    /// `now`: not counted against the rate limit, but a flood of them
    /// (more than [`HEARTBEATS_PER_SECOND`](super::limits::HEARTBEATS_PER_SECOND)
    /// in a second) is abuse.
    pub(super) fn admit_heartbeat(&mut self, now: Instant) -> Admit {
        match self.limit.check_heartbeat(now.into_std()) {
            Verdict::Close => Admit::HeartbeatFlood,
            Verdict::Allow | Verdict::Reject => Admit::Handle,
        }
    }

    /// A frame the transport refused as too large before reading it whole.
    pub(super) fn too_large(&self, size: usize) -> Admit {
        Admit::TooLarge {
            size,
            limit: self.max_frame(),
        }
    }

    fn max_frame(&self) -> usize {
        self.max_frame as usize
    }

    /// The login's replay of `channel` sent everything up to `upto`.
    pub(super) fn replayed(&mut self, channel: &Channel, upto: u64) {
        // Seqs start at 1: nothing to drop (most logins hold their inbox at
        // 0, and keep no map for it).
        if upto == 0 {
            return;
        }
        let replayed = self.replayed.get_or_insert_default();
        match replayed.get_mut(channel) {
            Some(seq) => *seq = (*seq).max(upto),
            None => {
                replayed.insert(channel.clone(), upto);
            }
        }
    }

    /// The lane of a reply or notice of this session's own (not queued).
    pub(super) fn lane_of(&self, how: Delivery) -> Lane<'static> {
        match how {
            Delivery::Volatile => Lane::Unreliable,
            _ => Lane::Reliable,
        }
    }

    /// The lane of one stored frame of `channel` (a replay's).
    pub(super) fn channel_lane<'a>(&self, channel: &'a Channel) -> Lane<'a> {
        match self.reading.single_stream {
            true => Lane::Reliable,
            false => Lane::Channel(channel, self.reading.redundancy),
        }
    }

    /// Where a frame from the session's queue goes; `presence` lists the
    /// rooms whose presence events the session asked for.
    pub(super) fn route<'a>(&self, frame: &'a OutFrame, presence: &[Id]) -> Route<'a> {
        match frame.how {
            Delivery::Control => return Route::Control,
            Delivery::Presence => {
                let wanted = matches!(&frame.position, Some(p) if matches!(&p.channel, Channel::Room(r) if presence.contains(r)));
                return match wanted {
                    true => Route::Write(Lane::Reliable),
                    false => Route::Skip,
                };
            }
            Delivery::Reliable | Delivery::Volatile => {}
        }
        match (&frame.position, frame.how) {
            (Some(p), _)
                if self
                    .replayed
                    .as_ref()
                    .and_then(|r| r.get(&p.channel))
                    .is_some_and(|upto| p.seq <= *upto) =>
            {
                Route::Skip
            }
            (Some(p), Delivery::Reliable) => Route::Write(self.channel_lane(&p.channel)),
            _ => Route::Write(self.lane_of(frame.how)),
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

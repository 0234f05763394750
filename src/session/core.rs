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
use crate::protocol::{CloseCode, Id};
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
            Admit::Abusive => Some(CloseCode::RateLimited),
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
    heartbeat: Duration,
    max_frame: usize,
    /// Until a login: when the session is closed without one.
    login_deadline: Option<Instant>,
    next_beat: Instant,
    expiry: Option<Expiry>,
    last_inbound: Instant,
    limit: RateLimit,
    /// The client reads only its one stream (login's `singleStream`):
    /// channel frames go there too.
    single_stream: bool,
    /// Per replayed channel, the last seq the replay sent: live frames up
    /// to it were already delivered and are dropped.
    replayed: HashMap<Channel, u64>,
}

impl Core {
    /// A session that connected at `now` and has not logged in.
    pub(super) fn new(limits: &LimitsConfig, now: Instant) -> Self {
        Self {
            heartbeat: limits.heartbeat,
            max_frame: limits.max_frame,
            login_deadline: Some(now + limits.login_timeout),
            next_beat: now + limits.heartbeat,
            expiry: None,
            last_inbound: now,
            limit: RateLimit::new(limits.rate_limit),
            single_stream: false,
            replayed: HashMap::new(),
        }
    }

    /// The heartbeat interval, which is also how long a write may wait on
    /// the peer.
    pub(super) fn write_deadline(&self) -> Duration {
        self.heartbeat
    }

    /// A login succeeded at `now` (`unix_ms` on the wall clock), with
    /// credentials that expire at `expires` (Unix seconds) if they do, and
    /// the client reads one stream or many.
    pub(super) fn logged_in(
        &mut self,
        expires: Option<u64>,
        single_stream: bool,
        now: Instant,
        unix_ms: u64,
    ) {
        self.login_deadline = None;
        self.single_stream = single_stream;
        self.credentials(expires, now, unix_ms);
    }

    /// When the session's credentials expire (Unix seconds), if they do.
    pub(super) fn expires(&self) -> Option<u64> {
        self.expiry.map(|e| e.at)
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
            Expiry {
                at,
                notice: now + left - EXPIRY_NOTICE.min(left / 2),
                end: now + end,
                announced: false,
            }
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
        let e = self.expiry?;
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
            self.next_beat = now + self.heartbeat;
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
            && now.saturating_duration_since(self.last_inbound) >= self.heartbeat * 3
    }

    /// A frame of `size` bytes from the peer, before it is decoded.
    pub(super) fn admit_size(&self, size: usize) -> Admit {
        if size > self.max_frame {
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

    /// A frame the transport refused as too large before reading it whole.
    pub(super) fn too_large(&self, size: usize) -> Admit {
        Admit::TooLarge {
            size,
            limit: self.max_frame,
        }
    }

    /// The login's replay of `channel` sent everything up to `upto`.
    pub(super) fn replayed(&mut self, channel: &Channel, upto: u64) {
        match self.replayed.get_mut(channel) {
            Some(seq) => *seq = (*seq).max(upto),
            None => {
                self.replayed.insert(channel.clone(), upto);
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
        match self.single_stream {
            true => Lane::Reliable,
            false => Lane::Channel(channel),
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
                    .get(&p.channel)
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
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::model::Position;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            heartbeat: Duration::from_secs(25),
            login_timeout: Duration::from_secs(10),
            max_frame: 1000,
            rate_limit: 5,
            outbound_queue: 16,
            max_rooms: 64,
            max_sessions_per_user: 32,
            user_rate_limit: 0,
            max_recipients_per_min: 0,
            max_conns: 0,
            max_conns_per_ip: 0,
        }
    }

    const S: Duration = Duration::from_secs(1);
    /// The wall clock when the tests' sessions connect: 2026-12-01.
    const UNIX_MS: u64 = 1_796_083_200_000;

    /// A core and the instant it was made at; `at(t0, secs)` is the wall
    /// clock `secs` later.
    fn core() -> (Core, Instant) {
        let t0 = Instant::now();
        (Core::new(&limits(), t0), t0)
    }

    fn unix(secs: u64) -> u64 {
        UNIX_MS + secs * 1000
    }

    #[test]
    fn without_a_login_the_session_is_closed_at_the_login_deadline() {
        let (mut c, t0) = core();
        assert_eq!(c.wake_at(), t0 + 10 * S);
        assert_eq!(c.on_timer(t0 + 9 * S), Due::Nothing);
        assert_eq!(c.on_timer(t0 + 10 * S), Due::LoginTimeout);
    }

    #[test]
    fn after_login_the_heartbeat_comes_every_interval_and_silence_closes_after_three() {
        let (mut c, t0) = core();
        c.logged_in(None, false, t0, unix(0));
        assert_eq!(c.wake_at(), t0 + 25 * S);
        assert_eq!(c.on_timer(t0 + 25 * S), Due::Heartbeat);
        assert_eq!(c.wake_at(), t0 + 50 * S);
        assert!(!c.silent(t0 + 50 * S, Liveness::Session));
        c.on_traffic(t0 + 40 * S);
        assert!(!c.silent(t0 + 75 * S, Liveness::Session), "traffic at 40 s");
        assert!(c.silent(t0 + 115 * S, Liveness::Session));
        assert!(
            !c.silent(t0 + 500 * S, Liveness::Transport),
            "QUIC judges its own peers"
        );
    }

    #[test]
    fn expiring_credentials_are_announced_then_close_unless_refreshed() {
        let t0 = Instant::now();
        let mut c = Core::new(
            &LimitsConfig {
                heartbeat: 1000 * S,
                ..limits()
            },
            t0,
        );
        // Expires in 200 s: announced 60 s before, closed 3 s (leeway) after.
        let exp = unix(200) / 1000;
        c.logged_in(Some(exp), false, t0, unix(0));
        assert_eq!(c.wake_at(), t0 + 140 * S);
        assert_eq!(c.on_timer(t0 + 139 * S), Due::Nothing);
        assert_eq!(c.on_timer(t0 + 140 * S), Due::AnnounceExpiry(exp));
        assert_eq!(c.wake_at(), t0 + 203 * S);
        // A refresh to a later expiry moves both steps.
        c.credentials(Some(exp + 300), t0 + 150 * S, unix(150));
        assert_eq!(c.wake_at(), t0 + 440 * S);
        assert_eq!(c.on_timer(t0 + 203 * S), Due::Nothing);
        assert_eq!(c.on_timer(t0 + 440 * S), Due::AnnounceExpiry(exp + 300));
        assert_eq!(c.on_timer(t0 + 502 * S), Due::Nothing);
        assert_eq!(c.on_timer(t0 + 503 * S), Due::Expired);
    }

    #[test]
    fn the_login_deadline_comes_before_a_heartbeat_due_at_the_same_time() {
        let t0 = Instant::now();
        let mut c = Core::new(
            &LimitsConfig {
                heartbeat: 10 * S,
                ..limits()
            },
            t0,
        );
        assert_eq!(c.on_timer(t0 + 10 * S), Due::LoginTimeout);
    }

    #[test]
    fn a_short_lived_token_is_announced_halfway() {
        let (mut c, t0) = core();
        c.logged_in(Some(unix(100) / 1000), false, t0, unix(0));
        assert_eq!(c.wake_at(), t0 + 25 * S, "the heartbeat first");
        assert_eq!(c.on_timer(t0 + 25 * S), Due::Heartbeat);
        assert_eq!(c.wake_at(), t0 + 50 * S);
        // Fixed when the token came, not recomputed from what is left (it
        // used to slide towards the expiry, each step taken as a heartbeat).
        assert_eq!(
            c.on_timer(t0 + 50 * S),
            Due::AnnounceExpiry(unix(100) / 1000)
        );
    }

    #[test]
    fn frames_over_the_limit_close_4413_and_floods_are_refused_then_closed_4429() {
        let (mut c, t0) = core();
        let big = c.admit_size(1001);
        assert_eq!(
            big,
            Admit::TooLarge {
                size: 1001,
                limit: 1000
            }
        );
        assert_eq!(big.closes(), Some(CloseCode::TooLarge));
        assert_eq!(c.admit_size(1000), Admit::Handle);
        // Rate 5: a burst of 10, then refusals, then a close past 10 strikes.
        let verdicts: Vec<Admit> = (0..21).map(|_| c.admit_rate(t0)).collect();
        assert!(
            verdicts[..10].iter().all(|v| *v == Admit::Handle),
            "{verdicts:?}"
        );
        assert!(verdicts[10..20].iter().all(|v| *v == Admit::RateLimited));
        assert_eq!(verdicts[20], Admit::Abusive);
        assert_eq!(verdicts[20].closes(), Some(CloseCode::RateLimited));
        assert_eq!(
            verdicts[10].closes(),
            None,
            "a refusal alone keeps the session"
        );
    }

    fn stored(room: &str, seq: u64) -> OutFrame {
        OutFrame::new(
            Bytes::from(format!("{{\"seq\":{seq}}}")),
            Delivery::Reliable,
            Some(Position {
                channel: Channel::Room(Id::parse(room).unwrap()),
                seq,
            }),
        )
    }

    fn lane(r: Route<'_>) -> Option<String> {
        match r {
            Route::Write(Lane::Reliable) => Some("reliable".into()),
            Route::Write(Lane::Unreliable) => Some("unreliable".into()),
            Route::Write(Lane::Channel(c)) => Some(c.to_string()),
            Route::Control => Some("control".into()),
            Route::Skip => None,
        }
    }

    #[test]
    fn replay_then_live_drops_what_the_replay_sent_and_nothing_after_it() {
        let (mut c, t0) = core();
        c.logged_in(None, false, t0, unix(0));
        let room = Channel::Room(Id::parse("r").unwrap());
        // Live frames 3..=6 were queued while the replay sent up to 4.
        c.replayed(&room, 4);
        let got: Vec<Option<String>> = (3..=6)
            .map(|s| lane(c.route(&stored("r", s), &[])))
            .collect();
        let on = Some(room.to_string());
        assert_eq!(got, vec![None, None, on.clone(), on.clone()]);
        // A later page only moves forward.
        c.replayed(&room, 2);
        assert_eq!(lane(c.route(&stored("r", 5), &[])), on);
        // Other channels are untouched.
        assert!(lane(c.route(&stored("other", 1), &[])).is_some());
    }

    #[test]
    fn frames_take_their_lanes_and_a_single_stream_client_gets_all_on_one() {
        let (mut c, t0) = core();
        c.logged_in(None, true, t0, unix(0));
        assert_eq!(lane(c.route(&stored("r", 1), &[])), Some("reliable".into()));
        let (mut c, t0) = core();
        c.logged_in(None, false, t0, unix(0));
        let volatile = OutFrame::new(Bytes::from_static(b"{}"), Delivery::Volatile, None);
        assert_eq!(lane(c.route(&volatile, &[])), Some("unreliable".into()));
        let control = OutFrame::new(Bytes::from_static(b"{}"), Delivery::Control, None);
        assert_eq!(lane(c.route(&control, &[])), Some("control".into()));
        let presence = OutFrame::new(
            Bytes::from_static(b"{}"),
            Delivery::Presence,
            Some(Position {
                channel: Channel::Room(Id::parse("r").unwrap()),
                seq: 0,
            }),
        );
        assert_eq!(lane(c.route(&presence, &[])), None, "not asked for");
        let asked = [Id::parse("r").unwrap()];
        assert_eq!(lane(c.route(&presence, &asked)), Some("reliable".into()));
    }
}

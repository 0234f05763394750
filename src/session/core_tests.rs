//! The session core on an in-memory clock: deadlines, heartbeats and
//! silence, expiry notices and refreshes, admission, replay dedupe, lanes.

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
    c.logged_in(None, Reading::default(), t0, unix(0));
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
    c.logged_in(Some(exp), Reading::default(), t0, unix(0));
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
    c.logged_in(Some(unix(100) / 1000), Reading::default(), t0, unix(0));
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

#[test]
fn heartbeats_spend_no_rate_but_a_flood_of_them_closes_4429() {
    let (mut c, t0) = core();
    // The bucket is spent; heartbeats are still answered.
    let _ = (0..21).map(|_| c.admit_rate(t0)).count();
    let beats: Vec<Admit> = (0..21).map(|_| c.admit_heartbeat(t0)).collect();
    assert!(beats[..20].iter().all(|v| *v == Admit::Handle), "{beats:?}");
    assert_eq!(beats[20], Admit::HeartbeatFlood);
    assert_eq!(beats[20].closes(), Some(CloseCode::RateLimited));
    // The next second starts a new count.
    assert_eq!(c.admit_heartbeat(t0 + S), Admit::Handle);
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
        Route::Write(Lane::Channel(c, _)) => Some(c.to_string()),
        Route::Control => Some("control".into()),
        Route::Skip => None,
    }
}

#[test]
fn replay_then_live_drops_what_the_replay_sent_and_nothing_after_it() {
    let (mut c, t0) = core();
    c.logged_in(None, Reading::default(), t0, unix(0));
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
    c.logged_in(
        None,
        Reading {
            single_stream: true,
            ..Reading::default()
        },
        t0,
        unix(0),
    );
    assert_eq!(lane(c.route(&stored("r", 1), &[])), Some("reliable".into()));
    let (mut c, t0) = core();
    c.logged_in(None, Reading::default(), t0, unix(0));
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

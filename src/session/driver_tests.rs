//! The whole session driver (`run`) without a socket: an in-memory
//! transport, an in-memory store and hub, and tokio's paused clock, so the
//! heartbeat, the login deadline, an expiring token and a write that never
//! completes play out in virtual time. What the tests see is what a peer
//! would: the frames written, in order, and the close code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::commands::tests::gateway_with;
use crate::config::{Config, Options};
use crate::gateway::Gateway;
use crate::model::{Channel, TransportKind};
use crate::protocol::{CloseCode, Encoding};
use crate::transport::{Incoming, Lane, Liveness, PeerInfo, Transport, TransportError};

/// What the peer saw: frames in the order they were written, and the close.
#[derive(Default)]
struct Seen {
    frames: Vec<Value>,
    close: Option<u16>,
}

/// The in-memory transport: frames in through a channel, frames out into
/// `seen`; a peer that stops reading makes every write wait for good.
struct Mem {
    inbound: mpsc::UnboundedReceiver<Incoming>,
    seen: Arc<Mutex<Seen>>,
    stalled: Arc<AtomicBool>,
    changed: watch::Sender<usize>,
}

impl Mem {
    async fn wait_if_stalled(&self) {
        if self.stalled.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }
}

impl Transport for Mem {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        self.inbound.recv().await.map(Ok)
    }

    async fn write(&mut self, frame: Bytes, _lane: Lane<'_>) -> Result<(), TransportError> {
        self.wait_if_stalled().await;
        let text = String::from_utf8(frame.to_vec()).expect("UTF-8 frames");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.frames.push(v);
            seen.frames.len()
        };
        self.changed.send_replace(n);
        Ok(())
    }

    fn end_lane(&mut self, _channel: &Channel) {}

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.wait_if_stalled().await;
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        Ok(Liveness::Session)
    }

    async fn close(&mut self, code: CloseCode, _reason: &str) {
        self.seen.lock().unwrap().close = Some(code.code());
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The test's end of one session.
struct Peer {
    tx: Option<mpsc::UnboundedSender<Incoming>>,
    seen: Arc<Mutex<Seen>>,
    stalled: Arc<AtomicBool>,
    changed: watch::Receiver<usize>,
    /// Frames already taken by `next`.
    read: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// A session on `gw`, connected now, not logged in.
    fn connect(gw: &Gateway) -> Peer {
        let (tx, inbound) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stalled = Arc::new(AtomicBool::new(false));
        let (changed, watcher) = watch::channel(0);
        let t = Mem {
            inbound,
            seen: seen.clone(),
            stalled: stalled.clone(),
            changed,
        };
        let peer = PeerInfo {
            kind: TransportKind::WebSocket,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
            path_user: None,
            query_user: None,
            query_token: None,
            cookie: None,
            origin: None,
            authorization: None,
            wt_draft: None,
            address_permit: None,
            encoding: Encoding::Json,
        };
        let task = tokio::spawn(super::run(t, None, peer, gw.clone()));
        Peer {
            tx: Some(tx),
            seen,
            stalled,
            changed: watcher,
            read: 0,
            task,
        }
    }

    /// A session of `user`, logged in with `login`'s other fields.
    async fn login(gw: &Gateway, user: &str, mut login: Value) -> (Peer, Value) {
        let mut p = Peer::connect(gw);
        login["msgType"] = json!(2);
        login["sendUserId"] = json!(user);
        p.send(login);
        let reply = p.next().await;
        assert_eq!(reply["msgType"], 2, "{reply}");
        (p, reply)
    }

    fn send(&self, v: Value) {
        self.send_raw(Incoming::Frame(Bytes::from(v.to_string())));
    }

    fn send_raw(&self, inc: Incoming) {
        let tx = self.tx.as_ref().expect("the peer is still there");
        tx.send(inc).expect("the session reads");
    }

    /// The next frame written, waiting (in virtual time) at most ten
    /// minutes.
    async fn next(&mut self) -> Value {
        let want = self.read + 1;
        tokio::time::timeout(
            Duration::from_secs(600),
            self.changed
                .wait_for(|_| self.seen.lock().unwrap().frames.len() >= want),
        )
        .await
        .expect("a frame within ten minutes")
        .expect("the session is there");
        self.read = want;
        self.seen.lock().unwrap().frames[want - 1].clone()
    }

    /// The close code, waiting (in virtual time) at most ten minutes.
    async fn closed(&mut self) -> u16 {
        tokio::time::timeout(
            Duration::from_secs(600),
            self.changed
                .wait_for(|_| self.seen.lock().unwrap().close.is_some()),
        )
        .await
        .expect("closed within ten minutes")
        .expect("the session is there");
        self.seen.lock().unwrap().close.expect("a close")
    }

    /// Frames written since the last `next`, without waiting.
    fn written(&self) -> Vec<Value> {
        self.seen.lock().unwrap().frames[self.read..].to_vec()
    }
}

fn gateway(args: &[&str]) -> Gateway {
    let config: Config = Options::from_args(args.iter().copied())
        .unwrap()
        .resolve()
        .unwrap();
    gateway_with(config)
}

/// An HS256 token for `sub` that expires `secs` from the wall clock's now.
fn token(secret: &str, sub: &str, secs: u64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let exp = crate::model::now_ms() / 1000 + secs;
    let claims = json!({"sub": sub, "exp": exp});
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn direct(to: &str, text: &str) -> Value {
    json!({"msgType": 3, "receivedUserId": to, "msgBody": {"text": text}, "clientMsgId": text})
}

#[tokio::test(start_paused = true)]
async fn without_a_login_the_session_is_closed_4408_at_the_login_deadline() {
    let gw = gateway(&["--login-timeout-sec", "10"]);
    let t0 = Instant::now();
    let mut p = Peer::connect(&gw);
    assert_eq!(p.closed().await, 4408);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    p.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_closed_4408_after_three_heartbeats_and_a_talking_one_is_not() {
    let gw = gateway(&["--heartbeat-sec", "5"]);
    let (mut quiet, _) = Peer::login(&gw, "quiet", json!({})).await;
    let (talker, _) = Peer::login(&gw, "talker", json!({})).await;
    let t0 = Instant::now();
    let beat = tokio::spawn(async move {
        for _ in 0..8 {
            talker.send(json!({"msgType": 1}));
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        talker
    });
    assert_eq!(quiet.closed().await, 4408);
    let took = t0.elapsed();
    // Closed at the first heartbeat that finds three intervals of silence.
    assert!(
        took >= Duration::from_secs(15) && took <= Duration::from_secs(20),
        "{took:?}"
    );
    let talker = beat.await.unwrap();
    assert_eq!(talker.seen.lock().unwrap().close, None, "the talker stays");
}

#[tokio::test(start_paused = true)]
async fn what_waited_offline_is_replayed_in_order_then_live_without_a_gap_or_a_duplicate() {
    let gw = gateway(&[]);
    let (mut alice, _) = Peer::login(&gw, "alice", json!({})).await;
    for i in 1..=3 {
        alice.send(direct("bob", &format!("offline {i}")));
        assert_eq!(alice.next().await["clientMsgId"], format!("offline {i}"));
    }
    let (mut bob, reply) = Peer::login(&gw, "bob", json!({"since": {"inbox": 0}})).await;
    assert_eq!(reply["inboxSeq"], 3, "{reply}");
    // A message sent right after the login reply comes after the replay,
    // once.
    alice.send(direct("bob", "live 4"));
    let mut got = Vec::new();
    while got.len() < 4 {
        let f = bob.next().await;
        if f["msgType"] == 3 {
            got.push((f["seq"].as_u64().unwrap(), f["msgBody"]["text"].clone()));
        }
    }
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{got:?}");
    assert_eq!(got[3].1, "live 4");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        bob.written().iter().all(|f| f["msgType"] != 3),
        "nothing twice: {:?}",
        bob.written()
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_closed_4008_after_a_heartbeat_and_others_keep_going() {
    let gw = gateway(&["--heartbeat-sec", "5"]);
    let (mut stuck, _) = Peer::login(&gw, "carol", json!({"roomId": "r"})).await;
    let (mut reader, _) = Peer::login(&gw, "dave", json!({"roomId": "r"})).await;
    let (mut talker, _) = Peer::login(&gw, "erin", json!({"roomId": "r"})).await;
    stuck.stalled.store(true, Ordering::Release);
    let t0 = Instant::now();
    talker
        .send(json!({"msgType": 3, "roomId": "r", "msgBody": {"text": "hi"}, "clientMsgId": "m1"}));
    assert_eq!(stuck.closed().await, 4008);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "a write blocked for the heartbeat interval: {took:?}"
    );
    loop {
        let f = reader.next().await;
        if f["msgType"] == 3 {
            assert_eq!(f["msgBody"]["text"], "hi");
            break;
        }
    }
    assert_eq!(talker.next().await["clientMsgId"], "m1", "acked");
    stuck.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn oversize_frames_close_4413_and_a_flood_4429_each_after_its_error() {
    let gw = gateway(&["--max-frame", "1000", "--rate-limit", "5"]);
    let (mut big, _) = Peer::login(&gw, "big", json!({})).await;
    big.send_raw(Incoming::Frame(Bytes::from(vec![b' '; 1001])));
    assert_eq!(big.next().await["code"], 413);
    assert_eq!(big.closed().await, 4413);
    let (mut flood, _) = Peer::login(&gw, "flood", json!({})).await;
    for _ in 0..40 {
        flood.send(json!({"msgType": 8, "userIds": ["x"]}));
    }
    assert_eq!(flood.closed().await, 4429);
    let codes: Vec<Value> = flood.written().iter().map(|f| f["code"].clone()).collect();
    assert!(codes.contains(&json!(429)), "{codes:?}");
    // A peer that goes away ends its session without a close to send.
    let (mut gone, _) = Peer::login(&gw, "gone", json!({})).await;
    gone.tx = None;
    gone.task.await.unwrap();
    assert_eq!(gone.seen.lock().unwrap().close, None);
}

#[tokio::test(start_paused = true)]
async fn expiring_credentials_are_announced_then_close_4401_unless_refreshed() {
    let gw = gateway(&["--jwt-secret", "s3cret", "--heartbeat-sec", "600"]);
    let login = |secs| json!({"token": token("s3cret", "fay", secs)});
    let (mut kept, _) = Peer::login(&gw, "fay", login(300)).await;
    let (mut lapsed, _) = Peer::login(&gw, "fay", login(300)).await;
    let t0 = Instant::now();
    // Announced 60 s ahead (in virtual time; the wall clock stands still).
    // The token's `exp` is in whole seconds: up to one less than asked.
    for p in [&mut kept, &mut lapsed] {
        let notice = p.next().await;
        assert_eq!(notice["msgType"], 10, "{notice}");
        let at = t0.elapsed();
        assert!(
            at >= Duration::from_secs(239) && at <= Duration::from_secs(240),
            "{at:?}"
        );
    }
    kept.send(json!({"msgType": 10, "token": token("s3cret", "fay", 1000)}));
    let refreshed = kept.next().await;
    assert_eq!(refreshed["msgType"], 10, "{refreshed}");
    // The other is closed once its token lapsed, with the leeway.
    assert_eq!(lapsed.closed().await, 4401);
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_secs(302) && at <= Duration::from_secs(303),
        "{at:?}"
    );
    assert!(
        lapsed.written().iter().any(|f| f["code"] == 401),
        "error 401 before the close: {:?}",
        lapsed.written()
    );
    assert_eq!(
        kept.seen.lock().unwrap().close,
        None,
        "the refreshed one stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_closes_its_session_4008_at_once_and_the_room_goes_on() {
    let gw = gateway(&["--outbound-queue", "4", "--heartbeat-sec", "30"]);
    let (mut stuck, _) = Peer::login(&gw, "gil", json!({"roomId": "q"})).await;
    let (mut reader, _) = Peer::login(&gw, "hal", json!({"roomId": "q"})).await;
    let (talker, _) = Peer::login(&gw, "ivy", json!({"roomId": "q"})).await;
    stuck.stalled.store(true, Ordering::Release);
    let t0 = Instant::now();
    // One at a time, as a chat goes: the reader drains its queue between
    // them, the stuck session cannot.
    for i in 0..10 {
        talker.send(json!({"msgType": 3, "roomId": "q", "msgBody": {"n": i}, "clientMsgId": format!("q{i}")}));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stuck.closed().await, 4008);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "closed when the queue overflowed, not at the write deadline: {:?}",
        t0.elapsed()
    );
    let mut got = Vec::new();
    while got.len() < 10 {
        let f = reader.next().await;
        if f["msgType"] == 3 {
            got.push(f["msgBody"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<u64>>());
}

/// What an idle plain WebSocket holds is mostly tokio's task cell around
/// the session's future, and the cell grows in 128-byte steps: with the
/// driver at 672 bytes the future is 848 and the cell 1,024 (BENCHMARKS.md,
/// "Idle memory, a sixth step"). A field more in the driver, or in what it
/// holds inline, puts every idle connection a step up.
#[cfg(target_pointer_width = "64")]
#[test]
fn an_idle_websocket_session_keeps_to_its_task_cell_step() {
    let size = std::mem::size_of::<super::Driver<crate::transport::websocket_tcp::TcpWebSocket>>();
    assert!(
        size <= 672,
        "the session driver is {size} bytes: box what idle sessions do not use"
    );
}

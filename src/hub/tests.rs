//! The hub's routing: fan-out, slow consumers, direct sends, close requests.

use super::*;
use bytes::Bytes;

fn session(user: &str, cap: usize) -> (SessionHandle, queue::Receiver<OutFrame>) {
    let (tx, rx) = queue::bounded(cap);
    let h = SessionHandle {
        id: SessionId::new(),
        user: Id::parse(user).unwrap(),
        tx,
        closer: Arc::default(),
        direct: None,
    };
    (h, rx)
}

fn env(target: Target, exclude: Option<SessionId>) -> Envelope {
    Envelope {
        target,
        exclude,
        frame: OutFrame::new(Bytes::from_static(b"{}"), Delivery::Reliable, None),
        trace: None,
    }
}

#[test]
fn room_fanout_skips_the_sender_and_shares_bytes() {
    let hub = Hub::new();
    let room = Id::parse("r").unwrap();
    let (a, mut ra) = session("a", 4);
    let (b, mut rb) = session("b", 4);
    assert!(hub.join(&room, a.clone()));
    assert!(!hub.join(&room, b.clone()));
    let d = hub.deliver(&env(Target::Room(room.clone()), Some(a.id)));
    assert_eq!(
        d,
        Reach {
            queued: 1,
            dropped: 0
        }
    );
    assert!(ra.try_recv().is_none());
    assert_eq!(&rb.try_recv().unwrap().payload[..], b"{}");
    assert!(!hub.leave(&room, a.id));
    assert!(hub.leave(&room, b.id));
    assert!(hub.local_rooms().is_empty());
}

#[test]
fn full_queue_closes_the_slow_session_only() {
    let hub = Hub::new();
    let (slow, _keep) = session("u", 1);
    let (fast, mut rf) = session("u", 8);
    hub.register(slow.clone());
    hub.register(fast.clone());
    let e = env(Target::User(slow.user.clone()), None);
    assert_eq!(hub.deliver(&e).queued, 2);
    assert_eq!(
        hub.deliver(&e),
        Reach {
            queued: 1,
            dropped: 1
        }
    );
    assert_eq!(slow.closer.code(), CloseCode::SlowConsumer);
    assert_eq!(fast.closer.code(), CloseCode::Normal);
    assert_eq!(rf.try_recv().iter().count(), 1);
    assert_eq!(hub.session_count(), 2);
    let (last, _) = hub.unregister(slow.id, &slow.user, []);
    assert!(!last);
    let (last, _) = hub.unregister(fast.id, &fast.user, []);
    assert!(last);
    assert!(hub.online(std::slice::from_ref(&fast.user)).is_empty());
}

/// A transport's direct way that takes what fits in `max` bytes (ordered:
/// a byte stream's, which must not overtake queued frames).
#[derive(Debug, Default)]
struct Datagrams {
    max: usize,
    ordered: bool,
    sent: std::sync::Mutex<Vec<Bytes>>,
}

impl DirectSend for Datagrams {
    fn send_volatile(&self, payload: &Bytes) -> Sent {
        if payload.len() > self.max {
            return Sent::No;
        }
        self.sent.lock().unwrap().push(payload.clone());
        Sent::Yes
    }

    fn ordered(&self) -> bool {
        self.ordered
    }
}

/// A hub with one session in room `r` whose direct way is `direct`.
fn joined_with(direct: Datagrams) -> (Hub, Arc<Datagrams>, queue::Receiver<OutFrame>) {
    let hub = Hub::new();
    let direct = Arc::new(direct);
    let (mut h, rx) = session("u", 8);
    h.direct = Some(direct.clone());
    hub.join(&Id::parse("r").unwrap(), h);
    (hub, direct, rx)
}

/// A frame to room `r`.
fn frame(body: &'static [u8], how: Delivery) -> Envelope {
    Envelope {
        target: Target::Room(Id::parse("r").unwrap()),
        exclude: None,
        frame: OutFrame::new(Bytes::from_static(body), how, None),
        trace: None,
    }
}

#[test]
fn an_ordered_direct_way_never_overtakes_a_queued_frame() {
    let (hub, direct, mut rx) = joined_with(Datagrams {
        max: 64,
        ordered: true,
        ..Default::default()
    });
    hub.deliver(&frame(b"1", Delivery::Reliable));
    hub.deliver(&frame(b"2", Delivery::Volatile));
    assert!(direct.sent.lock().unwrap().is_empty(), "2 waits behind 1");
    assert_eq!(&rx.try_recv().unwrap().payload[..], b"1");
    assert_eq!(&rx.try_recv().unwrap().payload[..], b"2");
    // Taken by the session, not yet written: still not overtaken.
    hub.deliver(&frame(b"3", Delivery::Volatile));
    assert!(direct.sent.lock().unwrap().is_empty(), "3 waits behind 2");
    assert_eq!(&rx.try_recv().unwrap().payload[..], b"3");
    rx.written();
    hub.deliver(&frame(b"4", Delivery::Volatile));
    assert!(rx.try_recv().is_none());
    assert_eq!(*direct.sent.lock().unwrap(), vec![Bytes::from_static(b"4")]);
}

#[test]
fn volatile_frames_go_direct_when_they_fit_and_everything_else_is_queued() {
    let (hub, direct, mut rx) = joined_with(Datagrams {
        max: 4,
        ..Default::default()
    });
    for (body, how) in [
        (&b"{}"[..], Delivery::Volatile),
        (&b"{\"a\":1}"[..], Delivery::Volatile),
        (&b"{}"[..], Delivery::Reliable),
    ] {
        assert_eq!(hub.deliver(&frame(body, how)).queued, 1);
    }
    assert_eq!(
        *direct.sent.lock().unwrap(),
        vec![Bytes::from_static(b"{}")]
    );
    // The one too large for the direct way, then the reliable one.
    assert_eq!(&rx.try_recv().unwrap().payload[..], b"{\"a\":1}");
    assert_eq!(rx.try_recv().unwrap().how, Delivery::Reliable);
    assert!(rx.try_recv().is_none());
}

#[test]
fn a_close_request_wakes_the_session_and_the_first_code_wins() {
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let count = Arc::new(Count(Default::default()));
    let waker = std::task::Waker::from(count.clone());
    let closer = Closer::default();
    let mut cx = Context::from_waker(&waker);
    assert!(closer.poll_requested(&mut cx).is_pending());
    closer.close(CloseCode::SlowConsumer);
    closer.close(CloseCode::GoingAway);
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "woken once: the second found no waker"
    );
    assert_eq!(
        closer.poll_requested(&mut cx),
        Poll::Ready(CloseCode::SlowConsumer)
    );
}

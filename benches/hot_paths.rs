//! Micro-benchmarks of the hot paths: decoding a client frame, serializing a
//! delivered message once, fanning an envelope out in the hub, and appending
//! to the stores.
//!
//!     cargo bench --bench hot_paths

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use divan::Bencher;
use rtgate::hub::{Hub, SessionHandle};
use rtgate::model::{Channel, Delivery, Envelope, OutFrame, SessionId, Target};
use rtgate::protocol::{Delivered, Id, decode};
use rtgate::store::{
    AppendRequest, CommitSink, Committed, MemoryStore, Retention, SqliteStore, Store,
};

fn main() {
    divan::main();
}

const LEGACY: &str = r#"{"msgType":100,"sendUserId":8812,"bizType":1,"bizOptModule":1,"roomId":"123456","receivedUserId":"77","msgBody":{"operateType":1,"operateContent":"1"}}"#;

#[divan::bench]
fn decode_legacy_message() {
    let _ = divan::black_box(decode(divan::black_box(LEGACY.as_bytes())));
}

#[divan::bench]
fn decode_ping() {
    let _ = divan::black_box(decode(divan::black_box(b"ping")));
}

fn delivered() -> Delivered {
    Delivered {
        msg_type: 3,
        send_user_id: Id::parse("alice").unwrap(),
        received_user_id: None,
        room_id: Some(Id::parse("lobby").unwrap()),
        biz_type: Some(1),
        biz_opt_module: None,
        msg_body: Some(
            serde_json::value::RawValue::from_string(r#"{"text":"hello there"}"#.into()).unwrap(),
        ),
        msg_id: "01a2155b-9cd5-73c5-ad42-8f9192edfe4e".into(),
        seq: Some(42),
        ts: 1_795_654_670_061,
        volatile: false,
        latest: None,
        chat: None,
    }
}

#[divan::bench]
fn serialize_delivered(b: Bencher) {
    let m = delivered();
    b.bench(|| divan::black_box(m.to_bytes()));
}

/// One envelope to a room of `n` local sessions (the per-broadcast cost
/// of the hub: shared bytes, one `try_send` per member).
#[divan::bench(args = [10, 100, 1000])]
fn hub_room_fanout(b: Bencher, n: usize) {
    let hub = Hub::new();
    let room = Id::parse("r").unwrap();
    let mut receivers = Vec::new();
    for i in 0..n {
        let (tx, rx) = rtgate::hub::queue::bounded(1 << 16);
        let h = SessionHandle {
            id: SessionId::new(),
            user: Id::parse(&format!("u{i}")).unwrap(),
            tx,
            closer: Arc::default(),
            direct: None,
        };
        hub.join(&room, h);
        receivers.push(rx);
    }
    let env = Envelope {
        target: Target::Room(room),
        exclude: None,
        frame: OutFrame::new(
            Bytes::from_static(br#"{"msgType":3}"#),
            Delivery::Reliable,
            None,
        ),
        trace: None,
    };
    b.bench_local(|| {
        hub.deliver(&env);
        for rx in &mut receivers {
            while rx.try_recv().is_some() {}
        }
    });
}

struct Discard;

impl CommitSink for Discard {
    fn committed(&self, c: Committed) {
        divan::black_box(c);
    }
}

fn request(i: u64) -> AppendRequest {
    let mut m = delivered();
    m.seq = None;
    m.msg_id = format!("m{i}");
    AppendRequest {
        channel: Channel::Room(Id::parse("lobby").unwrap()),
        message: m,
        dedupe: None,
        origin: None,
        trace: None,
    }
}

#[divan::bench]
fn memory_store_append(b: Bencher) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(
        Arc::new(Discard),
        Retention::default(),
        Duration::from_secs(600),
    );
    let mut i = 0;
    b.bench_local(|| {
        i += 1;
        rt.block_on(store.append(request(i))).unwrap()
    });
}

/// 256 appends in flight, so the writer commits them as one group: the
/// figure is per message, fsync included.
#[divan::bench(sample_count = 20)]
fn sqlite_store_append_group_of_256(b: Bencher) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path(),
        Arc::new(Discard),
        Retention::default(),
        Duration::from_secs(600),
    )
    .unwrap();
    let mut i = 0;
    b.counter(divan::counter::ItemsCount::new(256usize))
        .bench_local(|| {
            let futs: Vec<_> = (0..256)
                .map(|_| {
                    i += 1;
                    store.append(request(i))
                })
                .collect();
            rt.block_on(async {
                for f in futs {
                    f.await.unwrap();
                }
            })
        });
}

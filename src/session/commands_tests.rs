//! Commands run against a real hub, memory store and local broker, with no
//! socket: what each answers, what it changes, and its errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::{Identity, RoomGrant};
use crate::broker::{Broker, LocalBroker};
use crate::config::{Config, Options};
use crate::hub::{Hub, SessionHandle};
use crate::model::SessionId;
use crate::protocol::message::{ERROR, HEARTBEAT, JOIN, LEAVE, PRESENCE};
use crate::protocol::{Destination, Publish};
use crate::routing::Dispatcher;
use crate::store::{MemoryStore, Retention};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

pub(in crate::session) fn gateway_with(config: Config) -> Gateway {
    let hub = Hub::new();
    let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(hub.clone(), "test".into()));
    let sink = Arc::new(Dispatcher::new(broker.clone()));
    let store = Arc::new(MemoryStore::new(
        sink,
        Retention::default(),
        Duration::from_secs(60),
    ));
    let push = crate::push::Pusher::new(
        &config.push,
        crate::push::Parts {
            store: store.clone(),
            broker: broker.clone(),
            hub: hub.clone(),
            dev_data: None,
            events: false,
            shutdown: CancellationToken::new(),
        },
    )
    .unwrap();
    Gateway::new(
        config,
        "node-test".into(),
        hub,
        store,
        broker,
        push,
        CancellationToken::new(),
    )
}

fn gateway() -> Gateway {
    gateway_with(Config::default())
}

/// A logged-in session of `user`, registered in the hub as login does.
fn session(gw: &Gateway, user: &str, rooms: RoomGrant) -> LoggedIn {
    let (tx, rx) = crate::hub::queue::bounded(16);
    let handle = SessionHandle {
        id: SessionId::new(),
        user: id(user),
        tx,
        closer: Arc::default(),
        direct: None,
    };
    gw.hub().register(handle.clone());
    let identity = Identity {
        user: id(user),
        rooms,
        expires: None,
        info: None,
    };
    LoggedIn::new(identity, handle, rx)
}

fn only(rooms: &[&str]) -> RoomGrant {
    RoomGrant::Only(Box::new(rooms.iter().map(|r| id(r)).collect()))
}

/// The single reply of a command that answers with one frame.
fn one(e: Effects) -> Reply {
    assert!(e.acks.is_empty(), "no ack expected");
    assert_eq!(e.replies.len(), 1, "one reply expected");
    e.replies.into_iter().next().unwrap()
}

fn publish_to_room(room: &str, cmid: &str) -> Command {
    Command::Publish(Publish {
        msg_type: 3,
        to: Destination::Room(id(room)),
        biz_type: Some(1),
        biz_opt_module: None,
        body: Some(RawValue::from_string(r#"{"t":"hi"}"#.into()).unwrap()),
        client_msg_id: Some(cmid.into()),
        volatile: false,
        latest: None,
    })
}

#[tokio::test]
async fn heartbeat_and_a_second_login() {
    let gw = gateway();
    let mut s = session(&gw, "alice", RoomGrant::All);
    let r = one(handle(&mut s, &gw, Command::Heartbeat).await);
    assert_eq!(r.msg_type, HEARTBEAT);
    assert!(r.ts.unwrap() > 0);
    let r = one(handle(&mut s, &gw, Command::Login(Default::default())).await);
    assert_eq!((r.msg_type, r.code), (ERROR, Some(400)));
}

#[tokio::test]
async fn join_answers_the_rooms_seq_and_registers_the_member() {
    let gw = gateway();
    let mut s = session(&gw, "alice", RoomGrant::All);
    let r = one(handle(&mut s, &gw, Command::join(id("r1"))).await);
    assert_eq!((r.msg_type, r.seq), (JOIN, Some(0)));
    assert_eq!(r.room_id, Some(id("r1")));
    assert!(s.rooms.contains(&id("r1")));
    assert_eq!(gw.hub().room_users(&id("r1")), vec![id("alice")]);
    // Joining again changes nothing and answers again.
    let r = one(handle(&mut s, &gw, Command::join(id("r1"))).await);
    assert_eq!(r.msg_type, JOIN);
    assert_eq!(s.rooms.len(), 1);
}

#[tokio::test]
async fn join_outside_the_token_is_403_and_beyond_the_limit_409() {
    let cfg = Options::from_args(["--max-rooms", "1"])
        .unwrap()
        .resolve()
        .unwrap();
    let gw = gateway_with(cfg);
    let mut s = session(&gw, "alice", only(&["a", "b"]));
    let r = one(handle(&mut s, &gw, Command::join(id("x"))).await);
    assert_eq!(r.code, Some(403));
    assert!(r.reason.unwrap().contains("room x is not in your token"));
    assert_eq!(
        one(handle(&mut s, &gw, Command::join(id("a"))).await).msg_type,
        JOIN
    );
    let r = one(handle(&mut s, &gw, Command::join(id("b"))).await);
    assert_eq!(r.code, Some(409));
    assert!(gw.hub().room_users(&id("b")).is_empty());
}

#[tokio::test]
async fn leave_answers_in_kind_and_drops_the_membership() {
    let gw = gateway();
    let mut s = session(&gw, "alice", RoomGrant::All);
    handle(&mut s, &gw, Command::join(id("r1"))).await;
    let r = one(handle(&mut s, &gw, Command::Leave(id("r1"))).await);
    assert_eq!((r.msg_type, r.room_id), (LEAVE, Some(id("r1"))));
    assert_eq!(s.rooms.len(), 0);
    assert!(gw.hub().room_users(&id("r1")).is_empty());
    // Leaving a room one is not in is answered the same way.
    assert_eq!(
        one(handle(&mut s, &gw, Command::Leave(id("r1"))).await).msg_type,
        LEAVE
    );
}

#[tokio::test]
async fn publishing_needs_membership_and_is_acked_after_the_store() {
    let gw = gateway();
    let mut alice = session(&gw, "alice", RoomGrant::All);
    let mut bob = session(&gw, "bob", RoomGrant::All);
    let r = one(handle(&mut alice, &gw, publish_to_room("r1", "c1")).await);
    assert_eq!(r.code, Some(403));
    assert_eq!(r.client_msg_id.as_deref(), Some("c1"));

    handle(&mut alice, &gw, Command::join(id("r1"))).await;
    handle(&mut bob, &gw, Command::join(id("r1"))).await;
    let e = handle(&mut alice, &gw, publish_to_room("r1", "c2")).await;
    assert!(e.replies.is_empty());
    let (cmid, acked) = acked(e).await;
    assert_eq!(cmid.as_deref(), Some("c2"));
    let acked = acked.unwrap().expect("a stored message");
    assert_eq!(acked.seq, 1);
    // The other member got it, with its seq; the sender's session did not
    // (the rooms' presence events are in the queues too, for sessions that
    // want them).
    let next = |s: &mut LoggedIn| loop {
        match s.rx.try_recv() {
            Some(f) if f.how == crate::model::Delivery::Presence => continue,
            other => return other,
        }
    };
    let frame = next(&mut bob).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
    assert_eq!(
        (v["seq"].as_u64(), v["sendUserId"].as_str()),
        (Some(1), Some("alice"))
    );
    assert!(next(&mut alice).is_none());
}

#[tokio::test]
async fn history_reads_the_room_or_the_inbox_in_seq_order() {
    let gw = gateway();
    let mut s = session(&gw, "alice", only(&["r1"]));
    handle(&mut s, &gw, Command::join(id("r1"))).await;
    for c in ["c1", "c2", "c3"] {
        let e = handle(&mut s, &gw, publish_to_room("r1", c)).await;
        acked(e).await.1.unwrap();
    }
    let history = |room: Option<&str>, since| Command::History {
        room: room.map(id),
        since,
        limit: 100,
        latest_view: false,
    };
    let r = one(handle(&mut s, &gw, history(Some("r1"), 1)).await);
    assert_eq!(r.seq, Some(3));
    let seqs: Vec<u64> = r
        .messages
        .unwrap()
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(m.get()).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let r = one(handle(&mut s, &gw, history(None, 0)).await);
    assert_eq!((r.seq, r.messages.unwrap().len()), (Some(0), 0));
    let r = one(handle(&mut s, &gw, history(Some("secret"), 0)).await);
    assert_eq!(r.code, Some(403));
}

#[tokio::test]
async fn presence_by_room_and_by_users() {
    let gw = gateway();
    let mut alice = session(&gw, "alice", only(&["r1"]));
    let mut bob = session(&gw, "bob", RoomGrant::All);
    handle(&mut alice, &gw, Command::join(id("r1"))).await;
    handle(&mut bob, &gw, Command::join(id("r1"))).await;
    let r = one(handle(&mut alice, &gw, Command::PresenceRoom(id("r1"))).await);
    assert_eq!(r.msg_type, PRESENCE);
    assert_eq!(r.user_ids, Some(vec![id("alice"), id("bob")]));
    let r = one(handle(&mut alice, &gw, Command::PresenceRoom(id("r2"))).await);
    assert_eq!(r.code, Some(403));
    let ask = Command::PresenceUsers(vec![id("bob"), id("carol")]);
    let r = one(handle(&mut alice, &gw, ask).await);
    assert_eq!((r.room_id, r.user_ids), (None, Some(vec![id("bob")])));
}

#[tokio::test]
async fn the_inbox_cursor_is_stored_without_an_answer() {
    let gw = gateway();
    let mut s = session(&gw, "alice", RoomGrant::All);
    let mut bob = session(&gw, "bob", RoomGrant::All);
    for i in 0..5 {
        let dm = Command::Publish(Publish {
            msg_type: 3,
            to: Destination::User {
                user: id("alice"),
                context: None,
            },
            biz_type: None,
            biz_opt_module: None,
            body: None,
            client_msg_id: Some(format!("d{i}")),
            volatile: false,
            latest: None,
        });
        acked(handle(&mut bob, &gw, dm).await).await.1.unwrap();
    }
    let e = handle(&mut s, &gw, Command::Cursor { seq: 5 }).await;
    assert!(e.replies.is_empty() && e.acks.is_empty());
    assert_eq!(gw.store().cursor(&id("alice")).await.unwrap(), 5);
}

/// The one ack a send left running, awaited.
async fn acked(
    e: Effects,
) -> (
    Option<String>,
    Result<Option<crate::store::Appended>, ProtoError>,
) {
    let [ack] = <[_; 1]>::try_from(e.acks).ok().expect("one ack");
    match ack.await {
        Done::Ack(cmid, result) => (cmid, result),
        Done::Verdict(_) => panic!("a verdict, not an ack"),
    }
}

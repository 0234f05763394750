//! Read positions: "this user has read this channel up to seq N". Marks
//! are coalesced per (channel, user) and written in one batch every
//! [`FLUSH`] (so a room whose thousand members all read each message costs
//! one batched write per flush, not a thousand writes per message); a
//! room's members are told who read how far with notices that are not
//! stored, at most [`NOTICES_PER_FLUSH`] per room per flush. Unread counts
//! are computed from the positions and the logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::{Chat, notice};
use crate::broker::Broker;
use crate::hub::Hub;
use crate::model::{Channel, SessionId, plan};
use crate::protocol::{ChatFields, Destination, Id, ProtoError};
use crate::store::{ReadMark, Store};

/// How often coalesced read positions are written.
pub(crate) const FLUSH: Duration = Duration::from_millis(250);
/// Most read notices one room gets per flush; the positions past it are
/// stored and answered by msgType 13, not announced.
pub(crate) const NOTICES_PER_FLUSH: usize = 20;
/// Rooms with more member sessions than this on the reader's node get no
/// read notices: there every member's progress, sent to every member, would
/// cost more than the messages (measured in BENCHMARKS.md); their members
/// ask with msgType 13 when they want to know.
pub(crate) const NOTICE_MAX_MEMBERS: usize = 100;
/// Marks waiting before new ones are dropped (they are positions: a later
/// mark carries the same news).
const QUEUE: usize = 65_536;
/// Positions announced, remembered so a repeated mark is not announced
/// again; cleared when it grows past this.
const ANNOUNCED: usize = 100_000;

/// Marks on their way to the writer.
pub(super) struct Reads {
    tx: mpsc::Sender<(ReadMark, Option<SessionId>, bool)>,
}

impl Reads {
    pub(super) fn start(store: Arc<dyn Store>, broker: Arc<dyn Broker>, hub: Hub) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(run(store, broker, hub, rx))),
            Err(_) => tracing::warn!("no runtime: read positions are not written"),
        }
        Self { tx }
    }

    /// Queues a mark; `announce` sends the room's members a notice once it
    /// is written (not to `origin`, the reader's session).
    pub(super) fn mark(&self, mark: ReadMark, announce: bool, origin: Option<SessionId>) {
        crate::telemetry::read_mark();
        if self.tx.try_send((mark, origin, announce)).is_err() {
            crate::telemetry::store_error();
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    hub: Hub,
    mut rx: mpsc::Receiver<(ReadMark, Option<SessionId>, bool)>,
) {
    let mut announced: HashMap<(Channel, Id), u64> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    while open {
        tick.tick().await;
        let mut batch: HashMap<(Channel, Id), (u64, Option<SessionId>, bool)> = HashMap::new();
        loop {
            match rx.try_recv() {
                Ok((m, origin, notice)) => {
                    let e = batch.entry((m.channel, m.user)).or_insert((0, None, false));
                    e.0 = e.0.max(m.seq);
                    if notice {
                        e.1 = origin;
                        e.2 = true;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let entries: Vec<_> = batch.into_iter().collect();
        let marks = entries
            .iter()
            .map(|((channel, user), (seq, _, _))| ReadMark {
                channel: channel.clone(),
                user: user.clone(),
                seq: *seq,
            })
            .collect();
        crate::telemetry::read_batch();
        let positions = match store.set_reads(marks).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, n = entries.len(), "read positions were not written");
                crate::telemetry::store_error();
                continue;
            }
        };
        if announced.len() > ANNOUNCED {
            announced.clear();
        }
        let mut per_room: HashMap<Id, usize> = HashMap::new();
        for (((channel, user), (_, origin, notice)), pos) in entries.into_iter().zip(positions) {
            let Channel::Room(room) = &channel else {
                continue;
            };
            let key = (channel.clone(), user.clone());
            if !notice || pos == 0 || announced.get(&key).is_some_and(|a| *a >= pos) {
                continue;
            }
            let sent = per_room.entry(room.clone()).or_default();
            if *sent >= NOTICES_PER_FLUSH || hub.room_size(room) > NOTICE_MAX_MEMBERS {
                continue;
            }
            *sent += 1;
            announced.insert(key, pos);
            let mut n = notice_of(&user, room);
            n.seq = Some(pos);
            let payload = n.to_bytes();
            // Not stored: the payload's seq is the reader's position; the
            // fan-out plans it as the volatile frame it is.
            n.seq = None;
            for env in plan(&n, payload, &channel, origin, None) {
                broker.publish(env);
            }
        }
    }
}

/// A room read notice: `{"msgType":12,"kind":"read","roomId","by","seq"}`.
fn notice_of(user: &Id, room: &Id) -> crate::protocol::Delivered {
    notice(
        user,
        &Destination::Room(room.clone()),
        crate::protocol::message::RECEIPT,
        ChatFields {
            kind: Some("read".into()),
            by: Some(user.clone()),
            ..ChatFields::default()
        },
    )
}

/// Unread counts: the inbox's, and each room's.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Unread {
    /// Messages in the inbox after the inbox read position.
    pub(crate) inbox: u64,
    /// Per room.
    pub(crate) rooms: BTreeMap<Id, u64>,
}

pub(super) async fn unread(
    store: &dyn Store,
    user: &Id,
    rooms: impl IntoIterator<Item = Id>,
    every_read_room: bool,
) -> Result<Unread, ProtoError> {
    let positions: HashMap<Channel, u64> = store.read_positions(user).await?.into_iter().collect();
    let mut wanted: HashSet<Id> = rooms.into_iter().collect();
    if every_read_room {
        wanted.extend(positions.keys().filter_map(|c| match c {
            Channel::Room(r) => Some(r.clone()),
            Channel::Inbox(_) => None,
        }));
    }
    let inbox = Channel::Inbox(user.clone());
    let at = |c: &Channel| positions.get(c).copied().unwrap_or(0);
    let rooms: Vec<Id> = wanted.into_iter().collect();
    let mut asked: Vec<(Channel, u64)> = vec![(inbox.clone(), at(&inbox))];
    asked.extend(rooms.iter().map(|r| {
        let c = Channel::Room(r.clone());
        let after = at(&c);
        (c, after)
    }));
    let counts = store.unread_many(asked).await?;
    let mut out = Unread {
        inbox: counts.first().copied().unwrap_or(0),
        rooms: BTreeMap::new(),
    };
    for (room, n) in rooms.into_iter().zip(counts.into_iter().skip(1)) {
        out.rooms.insert(room, n);
    }
    Ok(out)
}

impl Chat {
    /// "`reader` has read `room` up to `seq`": stored within a flush, and
    /// announced to the room's members (not to `origin`).
    pub(crate) fn read_room(&self, reader: &Id, origin: Option<SessionId>, room: &Id, seq: u64) {
        let mark = ReadMark {
            channel: Channel::Room(room.clone()),
            user: reader.clone(),
            seq,
        };
        self.reads.mark(mark, true, origin);
    }

    /// A member's own message in a room: it has read the room up to there
    /// (so its own messages never count as unread to it). Not announced.
    pub(crate) fn sent_to_room(&self, sender: &Id, room: &Id, seq: u64) {
        let mark = ReadMark {
            channel: Channel::Room(room.clone()),
            user: sender.clone(),
            seq,
        };
        self.reads.mark(mark, false, None);
    }
}

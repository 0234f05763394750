//! An in-memory [`Store`]: the same contract as the durable stores, nothing
//! survives a restart. Used by tests and by `--store memory`. Its chat side
//! ([`super::ChatStore`]) is in `chat.rs`.

mod chat;
mod push;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use serde_json::value::RawValue;

use super::{
    AppendRequest, Appended, CommitSink, Committed, DedupeKey, OutboxDepth, OutboxEntry,
    OutboxLimits, Page, Retention, Store, StoreError,
};
use crate::model::Channel;
use crate::protocol::Id;
use crate::telemetry;

/// An in-memory store. Appends commit synchronously under one lock, so the
/// commit sink sees each channel in seq order.
pub struct MemoryStore {
    /// A std mutex: every critical section is short and never awaits.
    state: Arc<Mutex<State>>,
    sink: Arc<dyn CommitSink>,
    retention: Retention,
    dedupe_window: Duration,
}

#[derive(Default)]
struct State {
    logs: HashMap<Channel, Log>,
    dedupe: HashMap<(Channel, DedupeKey), (Appended, Instant)>,
    /// Dedupe keys in insertion order, for expiry.
    dedupe_order: VecDeque<(Instant, (Channel, DedupeKey))>,
    cursors: HashMap<Id, u64>,
    /// Where each retained message is, by msgId.
    ids: HashMap<String, (Channel, u64)>,
    /// Read positions per channel, by user.
    reads: HashMap<Channel, std::collections::BTreeMap<Id, u64>>,
    /// The channels each user has a read position in.
    read_by_user: HashMap<Id, std::collections::BTreeSet<Channel>>,
    /// Push registrations, by user (oldest first).
    push: HashMap<Id, Vec<crate::store::push::Registration>>,
    /// Push jobs by key: when due, and what.
    push_jobs: HashMap<String, (u64, String)>,
    /// The last push job's key.
    push_next: u64,
    /// Whether stored messages leave events.
    events: bool,
    /// Events not yet acked, oldest first.
    outbox: VecDeque<Event>,
    /// Bytes of their bodies.
    outbox_bytes: u64,
    /// The outbox's bounds, once set.
    outbox_limits: Option<OutboxLimits>,
    /// The next event's number.
    next_event: u64,
}

/// One event in the outbox.
struct Event {
    n: u64,
    body: String,
    claimed: bool,
    at: Instant,
}

impl State {
    fn push_event(&mut self, body: String) {
        self.next_event += 1;
        self.outbox_bytes += body.len() as u64;
        self.outbox.push_back(Event {
            n: self.next_event,
            body,
            claimed: false,
            at: Instant::now(),
        });
        self.trim_outbox();
    }

    /// Drops the oldest events past the outbox's bounds.
    fn trim_outbox(&mut self) {
        let Some(limits) = self.outbox_limits else {
            return;
        };
        let (mut age, mut bytes) = (0, 0);
        while let Some(e) = self.outbox.front() {
            let old = e.at.elapsed() > limits.max_age;
            if !old && self.outbox_bytes <= limits.max_bytes {
                break;
            }
            if old {
                age += 1;
            } else {
                bytes += 1;
            }
            self.outbox_bytes -= e.body.len() as u64;
            self.outbox.pop_front();
        }
        telemetry::events_dropped("age", age);
        telemetry::events_dropped("bytes", bytes);
    }
}

impl State {
    /// The latest seq of a user's inbox (0 when empty).
    fn inbox_latest(&self, user: &Id) -> u64 {
        self.logs
            .get(&Channel::Inbox(user.clone()))
            .map_or(0, |l| l.last)
    }
}

#[derive(Default)]
struct Log {
    /// Seq of the last appended message (0: none yet).
    last: u64,
    /// Retained messages, oldest first.
    entries: VecDeque<Entry>,
}

/// One retained message.
struct Entry {
    seq: u64,
    at: Instant,
    payload: Bytes,
    msg_id: String,
    /// Whether it counts as unread ([`super::counts_as_unread`]).
    counted: bool,
}

impl MemoryStore {
    /// A store that hands committed messages to `sink`.
    pub fn new(sink: Arc<dyn CommitSink>, retention: Retention, dedupe_window: Duration) -> Self {
        Self {
            state: Arc::default(),
            sink,
            retention,
            dedupe_window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn append(&self, mut req: AppendRequest) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let now = Instant::now();
        let mut st = self.lock();
        while let Some((at, _)) = st.dedupe_order.front() {
            if now.duration_since(*at) < self.dedupe_window {
                break;
            }
            let (_, key) = st.dedupe_order.pop_front().expect("front exists");
            st.dedupe.remove(&key);
        }
        let dedupe = req.dedupe.take().map(|k| (req.channel.clone(), k));
        if let Some((ack, _)) = dedupe.as_ref().and_then(|k| st.dedupe.get(k)) {
            return ready(Ok(Appended {
                duplicate: true,
                ..ack.clone()
            }))
            .boxed();
        }
        let log = st.logs.entry(req.channel.clone()).or_default();
        log.last += 1;
        let seq = log.last;
        req.message.seq = Some(seq);
        let payload = req.message.to_bytes();
        log.entries.push_back(Entry {
            seq,
            at: now,
            payload: payload.clone(),
            msg_id: req.message.msg_id.clone(),
            counted: super::counts_as_unread(req.message.msg_type),
        });
        let mut gone = Vec::new();
        while log.entries.len() as u64 > self.retention.max_count
            || log
                .entries
                .front()
                .is_some_and(|e| now.duration_since(e.at) > self.retention.max_age)
        {
            gone.extend(log.entries.pop_front().map(|e| e.msg_id));
        }
        for id in gone {
            st.ids.remove(&id);
        }
        st.ids
            .insert(req.message.msg_id.clone(), (req.channel.clone(), seq));
        let ack = Appended {
            msg_id: req.message.msg_id.clone(),
            seq,
            ts: req.message.ts,
            duplicate: false,
        };
        if let Some(key) = dedupe {
            st.dedupe.insert(key.clone(), (ack.clone(), now));
            st.dedupe_order.push_back((now, key));
        }
        if st.events
            && let Some(e) = crate::model::event::message_stored(&payload)
        {
            st.push_event(e);
        }
        self.sink.committed(Committed {
            channel: req.channel,
            message: req.message,
            payload,
            origin: req.origin,
            trace: req.trace,
        });
        ready(Ok(ack)).boxed()
    }

    fn read(
        &self,
        channel: &Channel,
        since: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Page, StoreError>> {
        let st = self.lock();
        let Some(log) = st.logs.get(channel) else {
            return ready(Ok(Page {
                last: since,
                ..Page::default()
            }))
            .boxed();
        };
        let first_kept = log.entries.front().map_or(log.last + 1, |e| e.seq);
        let mut page = Page {
            latest: log.last,
            last: since,
            gap: since + 1 < first_kept && since < log.last,
            ..Page::default()
        };
        for Entry { seq, payload, .. } in log.entries.iter().filter(|e| e.seq > since).take(limit) {
            let text = std::str::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()));
            let raw = text.and_then(|t| {
                RawValue::from_string(t.to_owned()).map_err(|e| StoreError::Corrupt(e.to_string()))
            });
            match raw {
                Ok(raw) => page.messages.push(raw),
                Err(e) => return ready(Err(e)).boxed(),
            }
            page.last = *seq;
        }
        ready(Ok(page)).boxed()
    }

    fn latest(&self, channel: &Channel) -> BoxFuture<'static, Result<u64, StoreError>> {
        ready(Ok(self.lock().logs.get(channel).map_or(0, |l| l.last))).boxed()
    }

    fn cursor(&self, user: &Id) -> BoxFuture<'static, Result<u64, StoreError>> {
        let st = self.lock();
        let c = st.cursors.get(user).copied().unwrap_or(0);
        ready(Ok(c.min(st.inbox_latest(user)))).boxed()
    }

    fn set_cursor(&self, user: &Id, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        // Never beyond what the inbox holds: a later message must not hide
        // behind a cursor that ran ahead.
        let seq = seq.min(st.inbox_latest(user));
        let c = st.cursors.entry(user.clone()).or_default();
        *c = (*c).max(seq);
        ready(Ok(())).boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(Ok(())).boxed()
    }

    fn record_stored_events(&self) {
        self.lock().events = true;
    }

    fn push_events(&self, events: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        for e in events {
            st.push_event(e);
        }
        ready(Ok(())).boxed()
    }

    fn claim_events(
        &self,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<OutboxEntry>, StoreError>> {
        let mut st = self.lock();
        st.trim_outbox();
        let claimed = st
            .outbox
            .iter_mut()
            .filter(|e| !e.claimed)
            .take(limit)
            .map(|e| {
                e.claimed = true;
                OutboxEntry {
                    key: e.n.to_string(),
                    body: e.body.clone(),
                }
            })
            .collect();
        ready(Ok(claimed)).boxed()
    }

    fn ack_events(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        let mut freed = 0;
        st.outbox.retain(|e| {
            let done = keys.contains(&e.n.to_string());
            if done {
                freed += e.body.len() as u64;
            }
            !done
        });
        st.outbox_bytes -= freed;
        ready(Ok(())).boxed()
    }

    fn limit_outbox(&self, limits: OutboxLimits) {
        let mut st = self.lock();
        st.outbox_limits = Some(limits);
        st.trim_outbox();
    }

    fn outbox_depth(&self) -> BoxFuture<'static, Result<OutboxDepth, StoreError>> {
        let st = self.lock();
        let depth = OutboxDepth {
            events: st.outbox.len() as u64,
            bytes: st.outbox_bytes,
        };
        ready(Ok(depth)).boxed()
    }
}

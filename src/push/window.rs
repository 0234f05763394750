//! One user's push window: the stored direct messages to them since the
//! window opened, merged so a burst makes one push, and what is left of
//! them once the ones that reached a session are taken out.

use serde_json::json;

use super::Notice;
use crate::model::watch::StoredDirect;
use crate::protocol::Id;

/// Most messages a window remembers (more are counted, not listed).
const MAX_LISTED: usize = 1000;
/// Most msgIds an `inbox.undelivered` event lists (the newest).
const MAX_EVENT_IDS: usize = 100;

/// The messages of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// (seq, msgId), oldest first.
    msgs: Vec<(u64, String)>,
    /// Messages past [`MAX_LISTED`].
    unlisted: u64,
    from: Id,
    room: Option<Id>,
    preview: Option<String>,
    /// How often another node held the user's window when this one ended.
    pub(crate) deferrals: u32,
    /// Nothing can reach the user: messages are not kept.
    pub(crate) inert: bool,
}

impl Window {
    /// A window opened by `m`.
    pub(crate) fn new(m: StoredDirect) -> Self {
        let mut w = Self {
            msgs: Vec::new(),
            unlisted: 0,
            from: m.from.clone(),
            room: None,
            preview: None,
            deferrals: 0,
            inert: false,
        };
        w.add(m);
        w
    }

    /// One more message; the newest names the sender and preview.
    pub(crate) fn add(&mut self, m: StoredDirect) {
        if self.inert {
            return;
        }
        if self.msgs.len() < MAX_LISTED {
            self.msgs.push((m.seq, m.msg_id));
        } else {
            self.unlisted += 1;
        }
        self.from = m.from;
        self.room = m.room;
        self.preview = m.preview;
    }

    /// An older window's messages (one that was deferred); this one's
    /// sender and preview stay, being newer.
    pub(crate) fn merge(&mut self, older: Window) {
        let mut msgs = older.msgs;
        msgs.append(&mut self.msgs);
        msgs.sort();
        msgs.dedup();
        let over = msgs.len().saturating_sub(MAX_LISTED);
        msgs.drain(..over);
        self.msgs = msgs;
        self.unlisted += older.unlisted + over as u64;
        self.deferrals = self.deferrals.max(older.deferrals);
    }

    /// The messages not reached by a session (seq above `reached`), or
    /// none when every one was.
    pub(crate) fn undelivered(mut self, reached: u64) -> Option<Window> {
        self.msgs.retain(|(seq, _)| *seq > reached);
        (!self.msgs.is_empty()).then_some(self)
    }

    /// The inbox position the window's messages come after.
    pub(crate) fn after(&self) -> u64 {
        self.msgs
            .first()
            .map_or(0, |(seq, _)| seq.saturating_sub(1))
    }

    /// How many messages.
    pub(crate) fn count(&self) -> u64 {
        self.msgs.len() as u64 + self.unlisted
    }

    /// The push it makes.
    pub(crate) fn notice(&self) -> Notice {
        Notice {
            msg_id: self
                .msgs
                .last()
                .map(|(_, id)| id.clone())
                .unwrap_or_default(),
            from: self.from.clone(),
            room: self.room.clone(),
            count: self.count(),
            preview: self.preview.clone(),
        }
    }

    /// The `inbox.undelivered` event's data.
    pub(crate) fn event_data(&self, user: &Id) -> serde_json::Value {
        let skip = self.msgs.len().saturating_sub(MAX_EVENT_IDS);
        let ids: Vec<&str> = self.msgs[skip..]
            .iter()
            .map(|(_, id)| id.as_str())
            .collect();
        let mut data = json!({
            "userId": user.as_str(),
            "count": self.count(),
            "msgIds": ids,
            "from": self.from.as_str(),
        });
        if let Some(r) = &self.room {
            data["roomId"] = json!(r.as_str());
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, from: &str) -> StoredDirect {
        StoredDirect {
            to: Id::parse("u").unwrap(),
            from: Id::parse(from).unwrap(),
            room: None,
            msg_id: format!("m{seq}"),
            seq,
            preview: Some(format!("text {seq}")),
        }
    }

    #[test]
    fn a_burst_is_one_notice_naming_the_newest_and_counting_all() {
        let mut w = Window::new(stored(1, "a"));
        for seq in 2..=100 {
            w.add(stored(seq, if seq == 100 { "b" } else { "a" }));
        }
        let n = w.notice();
        assert_eq!((n.count, n.msg_id.as_str()), (100, "m100"));
        assert_eq!(n.from.as_str(), "b");
        assert_eq!(n.preview.as_deref(), Some("text 100"));
        let ev = w.event_data(&Id::parse("u").unwrap());
        assert_eq!(ev["msgIds"].as_array().unwrap().len(), 100);
        assert_eq!(ev["count"], 100);
    }

    #[test]
    fn messages_that_reached_a_session_are_taken_out() {
        let mut w = Window::new(stored(4, "a"));
        w.add(stored(5, "a"));
        w.add(stored(6, "a"));
        assert_eq!(w.clone().undelivered(6), None);
        let left = w.clone().undelivered(4).unwrap();
        assert_eq!(left.count(), 2);
        assert_eq!(left.notice().msg_id, "m6");
        assert_eq!(w.undelivered(0).unwrap().count(), 3);
    }

    #[test]
    fn a_deferred_window_merges_in_seq_order() {
        let mut older = Window::new(stored(1, "a"));
        older.deferrals = 1;
        let mut newer = Window::new(stored(2, "b"));
        newer.merge(older);
        assert_eq!(newer.count(), 2);
        assert_eq!(newer.notice().from.as_str(), "b");
        assert_eq!(newer.notice().msg_id, "m2");
        assert_eq!(newer.deferrals, 1);
        assert_eq!(newer.undelivered(1).unwrap().count(), 1);
    }
}

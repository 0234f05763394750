//! The small line protocol shared by the example chat clients.
//!
//! A line typed on stdin becomes one frame:
//!   `@bob hello`   direct message to bob
//!   `#lobby hi`    message to room lobby
//!   `/join lobby`  join a room (`/leave` likewise)
//!   `{...}`        sent as it is (any protocol frame)
//! Every frame received is printed on stdout as one line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

/// Turns one typed line into a frame, or `None` for a blank line.
pub(crate) fn frame_for(line: &str, seq: u64) -> Option<Value> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line.starts_with('{') {
        return serde_json::from_str(line).ok();
    }
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    let cmid = format!("cli-{seq}");
    Some(match head.chars().next() {
        Some('@') => {
            json!({"msgType": 3, "receivedUserId": &head[1..], "msgBody": {"text": rest}, "clientMsgId": cmid})
        }
        Some('#') => {
            json!({"msgType": 3, "roomId": &head[1..], "msgBody": {"text": rest}, "clientMsgId": cmid})
        }
        Some('/') if head == "/join" => json!({"msgType": 5, "roomId": rest}),
        Some('/') if head == "/leave" => json!({"msgType": 6, "roomId": rest}),
        _ => return None,
    })
}

/// The login frame for `user`.
pub(crate) fn login(user: &str) -> Value {
    let mut login = json!({"msgType": 2, "sendUserId": user});
    // A server with --jwt-secret wants a token (and sendUserId its `sub`).
    if let Ok(token) = std::env::var("RTGATE_TOKEN") {
        login["token"] = json!(token);
    }
    login
}

/// Reconnect delays, the rule of `clients/js`'s `Backoff`: uniform in
/// [0, min(15 s, 500 ms × 2^attempt)], at least 50 ms, so a fleet that lost
/// its node at once comes back spread out instead of in lockstep.
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { attempt: 0 }
    }

    /// The wait before the next attempt.
    pub(crate) fn next(&mut self) -> Duration {
        let ceiling = (500u64 << self.attempt.min(5)).min(15_000);
        self.attempt += 1;
        Duration::from_millis(fastrand::u64(..=ceiling).max(50))
    }

    /// After a good login.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How far the client has read (its inbox seq, each joined room's seq) and
/// the rooms it is in, so a login after a reconnect rejoins them and
/// replays only what it missed.
#[derive(Default)]
pub(crate) struct Positions {
    inbox: Option<u64>,
    rooms: BTreeMap<String, u64>,
    joined: BTreeSet<String>,
}

impl Positions {
    /// Follows a frame from the server: a login reply gives the inbox's
    /// position when none is known yet, a join answer the room's, a
    /// delivered message moves its channel's.
    pub(crate) fn observe(&mut self, f: &Value) {
        let seq = f["seq"].as_u64();
        match f["msgType"].as_i64() {
            Some(2) if self.inbox.is_none() => self.inbox = f["inboxSeq"].as_u64(),
            Some(5) => {
                if let Some(room) = f["roomId"].as_str() {
                    self.joined.insert(room.to_owned());
                    if let (false, Some(seq)) = (self.rooms.contains_key(room), seq) {
                        self.rooms.insert(room.to_owned(), seq);
                    }
                }
            }
            Some(6) => {
                if let Some(room) = f["roomId"].as_str() {
                    self.joined.remove(room);
                    self.rooms.remove(room);
                }
            }
            Some(3 | 100..) => match (seq, f["roomId"].as_str()) {
                (Some(seq), _) if !f["receivedUserId"].is_null() => {
                    self.inbox = Some(self.inbox.map_or(seq, |at| at.max(seq)));
                }
                (Some(seq), Some(room)) if self.joined.contains(room) => {
                    let at = self.rooms.entry(room.to_owned()).or_insert(seq);
                    *at = (*at).max(seq);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The position of the channel `f` belongs to (its last seq), if known.
    #[allow(dead_code)] // wt_client's: ws_client gets no copies
    fn position_of(&self, f: &Value) -> Option<u64> {
        if !f["receivedUserId"].is_null() {
            return self.inbox;
        }
        let room = f["roomId"].as_str()?;
        self.joined
            .contains(room)
            .then(|| self.rooms.get(room).copied())?
    }

    /// The login frame for `user`: the rooms it was in, and `since`.
    pub(crate) fn login(&self, user: &str) -> Value {
        let mut l = login(user);
        if !self.joined.is_empty() {
            l["rooms"] = json!(self.joined);
        }
        if self.inbox.is_some() || !self.rooms.is_empty() {
            l["since"] = json!({"rooms": self.rooms});
            if let Some(inbox) = self.inbox {
                l["since"]["inbox"] = json!(inbox);
            }
        }
        l
    }
}

/// Whether a close code means the server will not take this login again
/// (bad credentials, another user's token): retrying cannot help.
pub(crate) fn refused(code: u16) -> bool {
    matches!(code, 4401 | 4403)
}

/// How one connection ended.
pub(crate) enum End {
    /// For good: stdin ended, or the login was refused.
    Done,
    /// Lost: try again.
    Lost(String),
}

/// What a chat client keeps from one connection to the next: stdin, where
/// it has read to, its back-off, the number of lines typed.
pub(crate) struct Chat {
    pub(crate) lines: Lines<BufReader<Stdin>>,
    positions: Positions,
    backoff: Backoff,
    typed: u64,
    /// Stored messages already printed (by msgId, the newest few thousand):
    /// the second copy of one (stream and datagram) is dropped.
    #[allow(dead_code)] // wt_client's: ws_client gets no copies
    seen: std::collections::VecDeque<String>,
    /// Datagram copies that outran a predecessor, waiting for it or for
    /// their own stream copy.
    #[allow(dead_code)] // wt_client's: ws_client gets no copies
    early: Vec<(String, String)>,
}

impl Chat {
    pub(crate) fn new() -> Self {
        Self {
            lines: BufReader::new(tokio::io::stdin()).lines(),
            positions: Positions::default(),
            backoff: Backoff::new(),
            typed: 0,
            seen: Default::default(),
            early: Vec::new(),
        }
    }

    /// A frame that came by `datagram` or on a stream, with redundant
    /// copies (`"redundancy"`): the first copy of a stored message is
    /// printed, in seq order per channel; a datagram copy ahead of its
    /// channel waits for its predecessor, or for its own stream copy (the
    /// stream is in order: what came before it has come).
    #[allow(dead_code)] // wt_client's: ws_client gets no copies
    pub(crate) fn received_copy(&mut self, text: &str, datagram: bool) {
        let Ok(f) = serde_json::from_str::<Value>(text) else {
            return self.received(text);
        };
        let (Some(id), Some(seq)) = (f["msgId"].as_str(), f["seq"].as_u64()) else {
            return self.received(text);
        };
        if self.seen.iter().any(|s| s == id) {
            return;
        }
        if let Some(i) = self.early.iter().position(|(e, _)| e == id) {
            if datagram {
                return;
            }
            let (_, held) = self.early.remove(i);
            self.print_once(id, &held);
        } else if datagram
            && self
                .positions
                .position_of(&f)
                .is_some_and(|at| seq > at + 1)
        {
            self.early.push((id.to_owned(), text.to_owned()));
            return;
        } else {
            self.print_once(id, text);
        }
        // Held copies that are next now.
        while let Some(i) = self.early.iter().position(|(_, t)| {
            serde_json::from_str::<Value>(t).is_ok_and(|f| {
                let at = self.positions.position_of(&f);
                f["seq"]
                    .as_u64()
                    .is_some_and(|s| at.is_none_or(|at| s <= at + 1))
            })
        }) {
            let (id, held) = self.early.remove(i);
            self.print_once(&id, &held);
        }
    }

    #[allow(dead_code)] // wt_client's: ws_client gets no copies
    fn print_once(&mut self, id: &str, text: &str) {
        self.seen.push_back(id.to_owned());
        if self.seen.len() > 5_000 {
            self.seen.pop_front();
        }
        self.received(text);
    }

    /// The login frame for `user`, resuming where the last connection was.
    pub(crate) fn login(&self, user: &str) -> Value {
        self.positions.login(user)
    }

    /// Prints a frame from the server and follows it.
    pub(crate) fn received(&mut self, text: &str) {
        println!("{text}");
        if let Ok(f) = serde_json::from_str::<Value>(text) {
            if f["msgType"] == 2 {
                self.backoff.reset();
            }
            self.positions.observe(&f);
        }
    }

    /// The frame for a line typed on stdin, or `None` for a blank one.
    pub(crate) fn typed(&mut self, line: &str) -> Option<Value> {
        self.typed += 1;
        frame_for(line, self.typed)
    }

    /// After a connection: false when it ended for good, else true once
    /// the back-off has passed.
    pub(crate) async fn again(&mut self, end: End) -> bool {
        let End::Lost(why) = end else { return false };
        let wait = self.backoff.next();
        eprintln!("{why}; reconnecting in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
        true
    }
}

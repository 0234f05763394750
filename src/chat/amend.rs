//! Amendments (msgType 14 and `POST /api/amend`): edits, deletes and
//! reactions, each stored as a new entry of the target's channel (its own
//! `seq`, `"amends":<target msgId>`), so it is acked, delivered, replayed
//! and retained like a message (retention removes the older target
//! first). Only the sender edits or deletes its message; a moderator (the
//! server API without a user) may delete any. A delete also removes the
//! body from the store: from the target and from its earlier edits.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Chat, Stored};
use crate::model::{Channel, Delivery, Envelope, OutFrame, SessionId, Target as To, now_ms};
use crate::protocol::chat::MAX_REACTIONS;
use crate::protocol::{AmendOp, ChatFields, Delivered, Id, ProtoError, is_business};
use crate::store::{AppendRequest, Appended, DedupeKey};

/// Entries after a target read to find its amendments (reaction limit,
/// the edits a delete redacts): ten pages.
pub(crate) const SCAN_PAGES: usize = 10;

/// A message about to be amended.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its channel.
    pub(crate) channel: Channel,
    /// Its seq there.
    pub(crate) seq: u64,
    /// What it says.
    pub(crate) message: Stored,
    /// As stored.
    payload: Bytes,
}

/// Who amends.
#[derive(Debug, Clone)]
pub(crate) enum Actor {
    /// A user (a session's, or the server API's on its behalf).
    User(Id),
    /// The server API without a user: deletes any message.
    Moderator,
}

impl Actor {
    fn id(&self) -> Id {
        match self {
            Self::User(u) => u.clone(),
            Self::Moderator => Id::parse("system").expect("a valid id"),
        }
    }
}

impl Target {
    /// The room it was sent to, if any (not a direct message's context).
    pub(crate) fn room(&self) -> Option<&Id> {
        match &self.channel {
            Channel::Room(r) => Some(r),
            Channel::Inbox(_) => None,
        }
    }

    fn deleted(&self) -> bool {
        serde_json::from_slice::<Map<String, Value>>(&self.payload)
            .is_ok_and(|m| m.contains_key("deleted"))
    }

    /// Whether `actor` may do `op` to this message. In a room, reading it
    /// is checked by the caller (it needs the session's rights).
    pub(crate) fn allows(&self, actor: &Actor, op: &AmendOp) -> Result<(), ProtoError> {
        let sender = &self.message.send_user_id;
        let ok = match (actor, op) {
            (Actor::Moderator, AmendOp::Delete) => true,
            (Actor::Moderator, _) => false,
            (Actor::User(u), AmendOp::Edit(_) | AmendOp::Delete) => u == sender,
            (Actor::User(u), AmendOp::React(_) | AmendOp::Unreact(_)) => match &self.channel {
                Channel::Inbox(owner) => u == owner || u == sender,
                Channel::Room(_) => true,
            },
        };
        match ok {
            true => Ok(()),
            false => Err(ProtoError::Forbidden(match op {
                AmendOp::Edit(_) | AmendOp::Delete => {
                    "only its sender edits or deletes a message".into()
                }
                _ => "you cannot read this message".into(),
            })),
        }
    }
}

impl Chat {
    /// The message a receipt or an amendment names: 404 when unknown or
    /// gone, 400 when it is not a message (a receipt, an amendment).
    pub(crate) async fn target(&self, msg_id: &str) -> Result<Target, ProtoError> {
        let found = self.store.locate(vec![msg_id.to_owned()]).await?;
        let Some(l) = found.into_iter().next() else {
            return Err(ProtoError::NotFound(format!("no message {msg_id}")));
        };
        let message = Stored::parse(&l.payload)?;
        if !is_business(message.msg_type) {
            return Err(ProtoError::bad("only messages are amended"));
        }
        Ok(Target {
            channel: l.channel,
            seq: l.seq,
            message,
            payload: l.payload,
        })
    }

    /// The amendments of a target stored after it (within ten pages).
    async fn amendments_of(
        &self,
        t: &Target,
    ) -> Result<Vec<(u64, Map<String, Value>)>, ProtoError> {
        let mut out = Vec::new();
        let mut since = t.seq;
        for _ in 0..SCAN_PAGES {
            let page = self.store.read(&t.channel, since, 100).await?;
            for raw in &page.messages {
                let Ok(m) = serde_json::from_str::<Map<String, Value>>(raw.get()) else {
                    continue;
                };
                let mine = m.get("amends").and_then(Value::as_str) == Some(&t.message.msg_id);
                if let (true, Some(seq)) = (mine, m.get("seq").and_then(Value::as_u64)) {
                    out.push((seq, m));
                }
            }
            if page.last == since || page.last >= page.latest {
                break;
            }
            since = page.last;
        }
        Ok(out)
    }

    /// Stores an amendment of `t` (already allowed) and answers its ack.
    pub(crate) async fn amend(
        &self,
        actor: &Actor,
        origin: Option<SessionId>,
        t: Target,
        op: AmendOp,
        client_msg_id: Option<String>,
    ) -> Result<Appended, ProtoError> {
        if t.deleted() && !matches!(op, AmendOp::Delete) {
            return Err(ProtoError::Conflict("the message was deleted".into()));
        }
        if let AmendOp::React(r) = &op {
            let mut kinds: Vec<String> = Vec::new();
            for (_, m) in self.amendments_of(&t).await? {
                if let Some(k) = m.get("reaction").and_then(Value::as_str)
                    && !kinds.iter().any(|x| x == k)
                {
                    kinds.push(k.to_owned());
                }
            }
            if kinds.len() >= MAX_REACTIONS && !kinds.contains(r) {
                return Err(ProtoError::Conflict(format!(
                    "a message has at most {MAX_REACTIONS} distinct reactions"
                )));
            }
        }
        let by = actor.id();
        let (body, reaction) = match &op {
            AmendOp::Edit(b) => (Some(b.clone()), None),
            AmendOp::React(r) | AmendOp::Unreact(r) => (None, Some(r.clone())),
            AmendOp::Delete => (None, None),
        };
        let message = Delivered {
            msg_type: crate::protocol::message::AMEND,
            send_user_id: by.clone(),
            received_user_id: t.message.received_user_id.clone(),
            room_id: t.message.room_id.clone(),
            biz_type: None,
            biz_opt_module: None,
            msg_body: body,
            msg_id: uuid::Uuid::now_v7().to_string(),
            seq: None,
            ts: now_ms(),
            volatile: false,
            latest: None,
            chat: Some(Box::new(ChatFields {
                amends: Some(t.message.msg_id.clone()),
                op: Some(op.as_str().into()),
                reaction,
                ..ChatFields::default()
            })),
        };
        let copy = message.clone();
        let dedupe = client_msg_id.map(|c| DedupeKey {
            user: by.clone(),
            client_msg_id: c,
        });
        let ack = self
            .store
            .append(AppendRequest {
                channel: t.channel.clone(),
                message,
                dedupe,
                origin,
                trace: None,
            })
            .await?;
        if ack.duplicate {
            return Ok(ack);
        }
        // A direct message lives in its recipient's inbox: its sender sees
        // what others did to it live (the fan-out reaches the inbox's
        // owner and the amender's other sessions).
        let sender = &t.message.send_user_id;
        if let Channel::Inbox(owner) = &t.channel
            && sender != owner
            && *sender != by
        {
            self.broker.publish(Envelope {
                target: To::User(sender.clone()),
                exclude: origin,
                frame: OutFrame::new(copy.to_bytes(), Delivery::Reliable, None),
                trace: None,
            });
        }
        if matches!(op, AmendOp::Delete) {
            self.redact(&t).await?;
        }
        Ok(ack)
    }

    /// Removes a deleted message's body from the store: from the message
    /// (which keeps its place, with `"deleted":true`) and its edits.
    async fn redact(&self, t: &Target) -> Result<(), ProtoError> {
        let mut m: Map<String, Value> = serde_json::from_slice(&t.payload)
            .map_err(|e| ProtoError::Unavailable(format!("a stored message: {e}")))?;
        m.remove("msgBody");
        m.insert("deleted".into(), Value::Bool(true));
        let payload = Bytes::from(serde_json::to_vec(&m).expect("a map serializes"));
        self.store.redact(&t.channel, t.seq, payload).await?;
        for (seq, mut edit) in self.amendments_of(t).await? {
            if edit.remove("msgBody").is_some() {
                let payload = Bytes::from(serde_json::to_vec(&edit).expect("a map serializes"));
                self.store.redact(&t.channel, seq, payload).await?;
            }
        }
        Ok(())
    }
}

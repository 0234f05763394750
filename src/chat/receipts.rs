//! Delivered and read receipts of direct messages: the reader names
//! messages of its inbox; each original sender gets one receipt notice
//! (msgType 12) stored in its own inbox, so every device of it sees it and
//! an offline sender gets it on replay. Receipts from one reader to one
//! sender within a second are merged into one notice (up to 100 ids).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Chat, Stored};
use crate::model::{Channel, SessionId, now_ms};
use crate::protocol::chat::MAX_RECEIPT_IDS;
use crate::protocol::{ChatFields, Delivered, Id, ProtoError, ReceiptKind, is_business};
use crate::store::{AppendRequest, ReadMark, Store};

/// How long receipts from one reader to one sender are merged.
pub(crate) const MERGE: Duration = Duration::from_secs(1);
/// Receipts waiting to be merged before new ones are refused (503).
const QUEUE: usize = 65_536;
/// Times a receipt notice the store refused is tried again.
const ATTEMPTS: u32 = 5;

/// Receipts on their way to the merger.
pub(super) struct Merger {
    tx: mpsc::Sender<Pending>,
}

/// Receipts from one reader to one sender.
struct Pending {
    to: Id,
    by: Id,
    kind: ReceiptKind,
    msg_ids: Vec<String>,
    attempts: u32,
}

type Key = (Id, Id, &'static str);

impl Merger {
    pub(super) fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let again = tx.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(run(store, rx, again))),
            Err(_) => tracing::warn!("no runtime: receipts are not merged"),
        }
        Self { tx }
    }
}

/// Merges receipts per (sender, reader, kind) for [`MERGE`], then stores
/// each as one notice in the sender's inbox.
async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>, again: mpsc::Sender<Pending>) {
    let mut open: HashMap<Key, (Pending, Instant)> = HashMap::new();
    loop {
        let due = open.values().map(|(_, at)| *at).min();
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { break };
                let key = (p.to.clone(), p.by.clone(), p.kind.as_str());
                let full = {
                    let (merged, _) = open
                        .entry(key.clone())
                        .or_insert_with(|| (Pending { msg_ids: Vec::new(), ..p.clone_empty() }, Instant::now() + MERGE));
                    merged.attempts = merged.attempts.max(p.attempts);
                    for id in p.msg_ids {
                        if !merged.msg_ids.contains(&id) {
                            merged.msg_ids.push(id);
                        }
                    }
                    merged.msg_ids.len() >= MAX_RECEIPT_IDS
                };
                if full && let Some((p, _)) = open.remove(&key) {
                    store_notice(&store, p, &again);
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let ready: Vec<Key> = open.iter().filter(|(_, (_, at))| *at <= now).map(|(k, _)| k.clone()).collect();
                for k in ready {
                    if let Some((p, _)) = open.remove(&k) {
                        store_notice(&store, p, &again);
                    }
                }
            }
        }
    }
    for (_, (p, _)) in open.drain() {
        store_notice(&store, p, &again);
    }
}

impl Pending {
    fn clone_empty(&self) -> Self {
        Self {
            to: self.to.clone(),
            by: self.by.clone(),
            kind: self.kind,
            msg_ids: Vec::new(),
            attempts: self.attempts,
        }
    }
}

/// Stores one receipt notice (in chunks of 100 ids) in the sender's inbox;
/// one the store refused goes back to the merger, a few times.
fn store_notice(store: &Arc<dyn Store>, p: Pending, again: &mpsc::Sender<Pending>) {
    for ids in p.msg_ids.chunks(MAX_RECEIPT_IDS) {
        let message = Delivered {
            msg_type: crate::protocol::message::RECEIPT,
            send_user_id: p.by.clone(),
            received_user_id: Some(p.to.clone()),
            room_id: None,
            biz_type: None,
            biz_opt_module: None,
            msg_body: None,
            msg_id: uuid::Uuid::now_v7().to_string(),
            seq: None,
            ts: now_ms(),
            volatile: false,
            latest: None,
            chat: Some(Box::new(ChatFields {
                kind: Some(p.kind.as_str().into()),
                by: Some(p.by.clone()),
                msg_ids: Some(ids.to_vec()),
                ..ChatFields::default()
            })),
        };
        crate::telemetry::receipt_notice();
        let stored = store.append(AppendRequest {
            channel: Channel::Inbox(p.to.clone()),
            message,
            dedupe: None,
            origin: None,
            trace: None,
        });
        let retry = Pending {
            msg_ids: ids.to_vec(),
            attempts: p.attempts + 1,
            ..p.clone_empty()
        };
        let again = again.clone();
        tokio::spawn(async move {
            if let Err(e) = stored.await {
                crate::telemetry::store_error();
                if retry.attempts < ATTEMPTS {
                    tokio::time::sleep(MERGE).await;
                    let _ = again.try_send(retry);
                } else {
                    tracing::warn!(error = %e, to = %retry.to, "a receipt notice was not stored");
                }
            }
        });
    }
}

impl Chat {
    /// Receipts of `reader` for direct messages in its inbox. Those of
    /// other users' messages go to their senders (merged); a read receipt
    /// also moves the reader's inbox read position. Ids that are not
    /// messages in the reader's inbox are an error 404 (the rest count).
    pub(crate) async fn receipt(
        &self,
        reader: &Id,
        _origin: SessionId,
        kind: ReceiptKind,
        msg_ids: Vec<String>,
    ) -> Result<(), ProtoError> {
        let asked = msg_ids.len();
        let inbox = Channel::Inbox(reader.clone());
        let found = self.store.locate(msg_ids).await?;
        let mut to: HashMap<Id, Vec<String>> = HashMap::new();
        let (mut known, mut last) = (0, 0);
        for l in found {
            if l.channel != inbox {
                continue;
            }
            let m = Stored::parse(&l.payload)?;
            if !is_business(m.msg_type) {
                continue;
            }
            known += 1;
            last = last.max(l.seq);
            if m.send_user_id != *reader {
                to.entry(m.send_user_id).or_default().push(l.msg_id);
            }
        }
        if kind == ReceiptKind::Read && last > 0 {
            let mark = ReadMark {
                channel: inbox,
                user: reader.clone(),
                seq: last,
            };
            self.reads.mark(mark, false, None);
        }
        for (to, msg_ids) in to {
            let p = Pending {
                to,
                by: reader.clone(),
                kind,
                msg_ids,
                attempts: 0,
            };
            if self.receipts.tx.try_send(p).is_err() {
                return Err(ProtoError::Unavailable(
                    "too many receipts waiting; retry".into(),
                ));
            }
        }
        match asked - known {
            0 => Ok(()),
            n => Err(ProtoError::NotFound(format!(
                "{n} of {asked} msgIds are not messages in your inbox"
            ))),
        }
    }
}

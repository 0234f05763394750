//! Push jobs kept in the store, so a node that dies loses no push: each
//! window is also a job (the user and the inbox position it starts after),
//! due a while after the window ends, which the window's node finishes
//! when it has handled it; a push a service asked to wait for is a job due
//! when it may be tried again. Every node claims the jobs that are due,
//! so another node (or the same one after a restart) finishes what a dead
//! one left.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::window::Window;
use super::{Inner, Notice};
use crate::model::watch::{StoredDirect, preview};
use crate::model::{Channel, now_ms};
use crate::protocol::{Delivered, Id};
use crate::store::counts_as_unread;

/// How long after a window should have ended its job is taken over.
pub(super) const TAKE_OVER_AFTER: Duration = Duration::from_secs(10);
/// How often a node looks for due jobs.
const EVERY: Duration = Duration::from_secs(1);
/// How long a claimed job is this node's before another may take it.
const LEASE: Duration = Duration::from_secs(60);
/// Jobs claimed at once.
const BATCH: usize = 100;
/// Most messages a taken-over window reads back.
const READ_BACK: usize = 1000;

/// What a job says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Job {
    /// A user's window: the direct messages stored after `after`.
    Window { user: Id, after: u64 },
    /// One push to try again.
    Retry {
        user: Id,
        reg: String,
        notice: serde_json::Value,
        attempt: u32,
    },
}

impl Job {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Claims and runs due jobs until shutdown.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let jobs = match inner.store.claim_pushes(now_ms(), LEASE, BATCH).await {
            Ok(j) => j,
            Err(e) => {
                debug!(error = %e, "push jobs could not be claimed");
                continue;
            }
        };
        for j in jobs {
            let inner = inner.clone();
            tokio::spawn(async move {
                match serde_json::from_str::<Job>(&j.body) {
                    Ok(job) => handle(&inner, job).await,
                    Err(e) => warn!(error = %e, "an unreadable push job was dropped"),
                }
                if let Err(e) = inner.store.finish_pushes(vec![j.key]).await {
                    warn!(error = %e, "a done push job could not be removed");
                }
            });
        }
    }
}

async fn handle(inner: &Arc<Inner>, job: Job) {
    match job {
        Job::Window { user, after } => {
            if let Some(w) = read_back(inner, &user, after).await {
                super::lifecycle::decide(inner.clone(), user, w).await;
            }
        }
        Job::Retry {
            user,
            reg,
            notice,
            attempt,
        } => {
            let Some(notice) = Notice::from_payload(&notice) else {
                return;
            };
            let regs = match inner.store.registrations(&user).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(%user, error = %e, "push registrations could not be read");
                    return;
                }
            };
            // A registration removed meanwhile is not pushed.
            if let Some(r) = regs.into_iter().find(|r| r.id == reg) {
                super::deliver::deliver(inner.clone(), user, r, notice, attempt).await;
            }
        }
    }
}

/// The window a dead node left: the direct messages to `user` stored after
/// `after`, read back from its inbox.
async fn read_back(inner: &Inner, user: &Id, after: u64) -> Option<Window> {
    let page = match inner
        .store
        .read(&Channel::Inbox(user.clone()), after, READ_BACK)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            warn!(%user, error = %e, "a push window could not be read back");
            return None;
        }
    };
    let mut w: Option<Window> = None;
    for raw in page.messages {
        let Ok(m) = serde_json::from_str::<Delivered>(raw.get()) else {
            continue;
        };
        if !counts_as_unread(m.msg_type) || m.send_user_id == *user {
            continue;
        }
        let stored = StoredDirect {
            to: user.clone(),
            from: m.send_user_id,
            room: m.room_id,
            msg_id: m.msg_id,
            seq: m.seq.unwrap_or(0),
            preview: match inner.preview {
                true => preview(m.msg_body.as_deref(), super::PREVIEW_CHARS),
                false => None,
            },
        };
        match &mut w {
            Some(w) => w.add(stored),
            None => w = Some(Window::new(stored)),
        }
    }
    w
}

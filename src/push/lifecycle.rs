//! A push window's life: opened by a user's first stored direct message
//! (its job written before that message is acknowledged), joined by the
//! messages after it, waited out, and ended: what reached no session of
//! the user is reported and pushed, or the window is deferred to the node
//! that holds the user's claim.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::warn;

use super::window::Window;
use super::{Inner, MAX_DEFERRALS, deliver, jobs};
use crate::model::now_ms;
use crate::protocol::Id;
use crate::telemetry;

/// Opens `user`'s window, or extends the one open. A window it opens
/// has its job written and is then waited out by a task of its own;
/// what it answers is done once the job is written (a message's ack
/// waits for it, so a node that dies after the ack loses no window).
pub(super) fn open(inner: &Arc<Inner>, user: Id, w: Window) -> Option<BoxFuture<'static, ()>> {
    let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(open) = pending.get_mut(&user) {
        open.merge(w);
        return inner.written(&user);
    }
    // The window is a job in the store too, due a while after it
    // ends: finished when it ends, or taken over by any node when this
    // one dies first.
    let job = jobs::Job::Window {
        user: user.clone(),
        after: w.after(),
    };
    let due = now_ms() + (inner.delay + jobs::TAKE_OVER_AFTER).as_millis() as u64;
    pending.insert(user.clone(), w);
    let (done, written) = oneshot::channel();
    let written = written.shared();
    inner
        .writing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.clone(), written.clone());
    drop(pending);
    let inner = inner.clone();
    tokio::spawn(async move {
        // A user no push can reach, with no event hook to tell: the
        // window stays (the messages of its time join it at the cost
        // of a push onto a list) and ends with nothing to do.
        let reachable = inner.events
            || !matches!(inner.store.registrations(&user).await, Ok(r) if r.is_empty());
        let kept = match reachable {
            true => Some(inner.store.schedule_push(due, job.to_json()).await),
            false => {
                if let Some(w) = inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&user)
                {
                    w.inert = true;
                }
                None
            }
        };
        if let Some(Err(e)) = &kept {
            warn!(%user, error = %e, "a push window could not be stored; kept in memory only");
        }
        inner
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
        let _ = done.send(());
        wait_out(inner, user, reachable, kept.and_then(Result::ok)).await;
    });
    Some(written.map(drop).boxed())
}

impl Inner {
    /// Done once the job of `user`'s open window is written; `None` when
    /// it already is.
    pub(super) fn written(&self, user: &Id) -> Option<BoxFuture<'static, ()>> {
        let writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        writing.get(user).map(|w| w.clone().map(drop).boxed())
    }
}

/// Waits out `user`'s window, then ends it and removes its job (`kept`).
async fn wait_out(inner: Arc<Inner>, user: Id, reachable: bool, kept: Option<String>) {
    tokio::select! {
        _ = tokio::time::sleep(inner.delay) => {}
        _ = inner.shutdown.cancelled() => return,
    }
    if !reachable {
        inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
        return;
    }
    end(inner.clone(), user).await;
    if let Some(key) = kept
        && let Err(e) = inner.store.finish_pushes(vec![key]).await
    {
        warn!(error = %e, "a done push window could not be removed");
    }
}

/// A window ended.
async fn end(inner: Arc<Inner>, user: Id) {
    let w = inner
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&user);
    if let Some(w) = w {
        decide(inner, user, w).await;
    }
}

/// What of a window reached no session is reported and pushed.
pub(super) async fn decide(inner: Arc<Inner>, user: Id, w: Window) {
    let reached = match inner.broker.reached(vec![user.clone()]).await {
        Ok(r) => r.first().copied().unwrap_or(0),
        Err(e) => {
            // Better a push too many than none.
            warn!(%user, error = %e, "cannot tell what reached the user's sessions; pushing");
            0
        }
    };
    let Some(mut w) = w.undelivered(reached) else {
        telemetry::push_check("received");
        return;
    };
    match inner.broker.claim_push(&user, inner.delay).await {
        Ok(false) if w.deferrals < MAX_DEFERRALS => {
            telemetry::push_check("deferred");
            w.deferrals += 1;
            if let Some(kept) = open(&inner, user, w) {
                kept.await;
            }
            return;
        }
        Ok(_) => {}
        Err(e) => warn!(%user, error = %e, "cannot claim the user's push window; pushing"),
    }
    telemetry::push_check("undelivered");
    if inner.events {
        let event = crate::model::event::inbox_undelivered(w.event_data(&user));
        if let Err(e) = inner.store.push_events(vec![event]).await {
            warn!(%user, error = %e, "inbox.undelivered could not be put in the outbox");
            telemetry::event_lost();
        }
    }
    let regs = match inner.store.registrations(&user).await {
        Ok(r) => r,
        Err(e) => {
            warn!(%user, error = %e, "push registrations could not be read");
            return;
        }
    };
    let notice = w.notice();
    for reg in regs {
        tokio::spawn(deliver::deliver(
            inner.clone(),
            user.clone(),
            reg,
            notice.clone(),
            0,
        ));
    }
}

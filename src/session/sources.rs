//! What the session's loop waits on besides the transport and its own
//! timers: its outbound queue, its stores in flight, and the instants at
//! which expiring credentials are announced and end.

use std::future::pending;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::commands::AckFuture;
use super::state::LoggedIn;
use crate::model::{OutFrame, now_ms};
use crate::protocol::ProtoError;
use crate::store::Appended;

/// How long before its credentials expire a session is told (at most; a
/// short-lived token is announced halfway through its life).
const EXPIRY_NOTICE: Duration = Duration::from_secs(60);

/// The instant a Unix time (seconds) falls on.
pub(super) fn instant_of(unix_secs: u64) -> Instant {
    let left = (unix_secs * 1000).saturating_sub(now_ms());
    Instant::now() + Duration::from_millis(left)
}

/// When to announce credentials that expire at `exp`.
pub(super) fn notice_at(exp: u64) -> Instant {
    let left = Duration::from_millis((exp * 1000).saturating_sub(now_ms()));
    instant_of(exp) - EXPIRY_NOTICE.min(left / 2)
}

/// The next finished store, `None` when none is in flight.
pub(super) async fn next_ack(
    acks: &mut Option<FuturesUnordered<AckFuture>>,
) -> Option<(Option<String>, Result<Appended, ProtoError>)> {
    match acks {
        Some(a) => a.next().await,
        None => None,
    }
}

/// Whether a store is in flight.
pub(super) fn has_acks(acks: &Option<FuturesUnordered<AckFuture>>) -> bool {
    acks.as_ref().is_some_and(|a| !a.is_empty())
}

/// The next frame queued for a logged-in session; never, before login.
pub(super) async fn next_out(active: &mut Option<LoggedIn>) -> Option<OutFrame> {
    match active {
        Some(a) => Some(a.rx.recv().await),
        None => pending().await,
    }
}

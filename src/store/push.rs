//! Push registrations (msgType 16): the addresses at which a user's
//! devices take a push while they have no connection (a browser's Web Push
//! subscription, an APNs device token, an FCM registration token). At most
//! [`MAX_REGISTRATIONS`] per user; a new one past that replaces the oldest.
//! The store also keeps push jobs (a user's window to check, a push to try
//! again) until a node has done them, so a node that dies does not lose
//! them: any node claims the ones that are due. Every [`super::Store`]
//! implements [`PushStore`]; the conformance suite runs it over all three.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::StoreError;
use crate::protocol::Id;

/// Most registrations one user keeps.
pub const MAX_REGISTRATIONS: usize = 10;

/// One device's push address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Names it among the user's registrations (the same device
    /// registering again replaces its entry).
    pub id: String,
    /// The address as JSON, as the push module reads it.
    pub data: String,
    /// When it was registered (ms since the epoch).
    pub created: u64,
}

/// A push job waiting in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    /// The store's handle on it, for [`PushStore::finish_pushes`].
    pub key: String,
    /// When it is due (ms since the epoch).
    pub due: u64,
    /// What to do, as JSON (the push module reads it).
    pub body: String,
}

/// The push side of a store.
pub trait PushStore {
    /// Keeps `reg` for `user`, replacing one with the same id; past
    /// [`MAX_REGISTRATIONS`] the oldest others are removed.
    fn add_registration(
        &self,
        user: &Id,
        reg: Registration,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Removes a registration; answers whether it was there.
    fn remove_registration(
        &self,
        user: &Id,
        id: String,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// A user's registrations, oldest first.
    fn registrations(&self, user: &Id)
    -> BoxFuture<'static, Result<Vec<Registration>, StoreError>>;

    /// Keeps a job until it is finished; due at `due` (ms since the
    /// epoch). Answers its key.
    fn schedule_push(
        &self,
        due: u64,
        body: String,
    ) -> BoxFuture<'static, Result<String, StoreError>>;

    /// Up to `limit` jobs due at `now`, oldest due first, each claimed for
    /// `lease`: a job not finished by then is due again (its node died).
    fn claim_pushes(
        &self,
        now: u64,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<PushJob>, StoreError>>;

    /// Removes finished jobs.
    fn finish_pushes(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// `regs` with `reg` put in (replacing its id), oldest first, cut to
/// [`MAX_REGISTRATIONS`] by dropping the oldest: the rule every store keeps.
pub(crate) fn admit(regs: &mut Vec<Registration>, reg: Registration) {
    regs.retain(|r| r.id != reg.id);
    regs.push(reg);
    regs.sort_by_key(|r| r.created);
    let over = regs.len().saturating_sub(MAX_REGISTRATIONS);
    regs.drain(..over);
}

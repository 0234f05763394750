//! Push registrations (msgType 16): the addresses at which a user's
//! devices take a push while they have no connection (a browser's Web Push
//! subscription, an APNs device token, an FCM registration token). At most
//! [`MAX_REGISTRATIONS`] per user; a new one past that replaces the oldest.
//! Every [`super::Store`] implements [`PushStore`]; the conformance suite
//! runs it over all three.

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

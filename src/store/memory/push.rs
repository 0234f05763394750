//! [`PushStore`] in memory: a list per user.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use super::MemoryStore;
use crate::protocol::Id;
use crate::store::StoreError;
use crate::store::push::{PushStore, Registration, admit};

impl PushStore for MemoryStore {
    fn add_registration(
        &self,
        user: &Id,
        reg: Registration,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        admit(self.lock().push.entry(user.clone()).or_default(), reg);
        ready(Ok(())).boxed()
    }

    fn remove_registration(
        &self,
        user: &Id,
        id: String,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut st = self.lock();
        let Some(regs) = st.push.get_mut(user) else {
            return ready(Ok(false)).boxed();
        };
        let before = regs.len();
        regs.retain(|r| r.id != id);
        let removed = regs.len() < before;
        if regs.is_empty() {
            st.push.remove(user);
        }
        ready(Ok(removed)).boxed()
    }

    fn registrations(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<Registration>, StoreError>> {
        let regs = self.lock().push.get(user).cloned().unwrap_or_default();
        ready(Ok(regs)).boxed()
    }
}

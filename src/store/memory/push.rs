//! [`PushStore`] in memory: a list per user.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use super::MemoryStore;
use crate::protocol::Id;
use crate::store::StoreError;
use crate::store::push::{PushJob, PushStore, Registration, admit};

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

    fn schedule_push(
        &self,
        due: u64,
        body: String,
    ) -> BoxFuture<'static, Result<String, StoreError>> {
        let mut st = self.lock();
        st.push_next += 1;
        let key = st.push_next.to_string();
        st.push_jobs.insert(key.clone(), (due, body));
        ready(Ok(key)).boxed()
    }

    fn claim_pushes(
        &self,
        now: u64,
        lease: std::time::Duration,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<PushJob>, StoreError>> {
        let mut st = self.lock();
        let mut due: Vec<PushJob> = st
            .push_jobs
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(key, (d, body))| PushJob {
                key: key.clone(),
                due: *d,
                body: body.clone(),
            })
            .collect();
        due.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.key.cmp(&b.key)));
        due.truncate(limit);
        for j in &due {
            if let Some(entry) = st.push_jobs.get_mut(&j.key) {
                entry.0 = now + lease.as_millis() as u64;
            }
        }
        ready(Ok(due)).boxed()
    }

    fn finish_pushes(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        for k in keys {
            st.push_jobs.remove(&k);
        }
        ready(Ok(())).boxed()
    }
}

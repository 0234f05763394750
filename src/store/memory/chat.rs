//! [`ChatStore`] in memory: lookups in the retained logs, read positions
//! in maps, unread counts by a scan (the memory store holds tests' and a
//! single node's small logs).

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use super::MemoryStore;
use crate::model::Channel;
use crate::protocol::Id;
use crate::store::StoreError;
use crate::store::chat::{ChatStore, Located, MAX_READS_PAGE, ReadMark, ReadsPage};

impl ChatStore for MemoryStore {
    fn locate(&self, msg_ids: Vec<String>) -> BoxFuture<'static, Result<Vec<Located>, StoreError>> {
        let st = self.lock();
        let found = msg_ids
            .into_iter()
            .filter_map(|id| {
                let (channel, seq) = st.ids.get(&id)?.clone();
                let log = st.logs.get(&channel)?;
                let first = log.entries.front()?.seq;
                let e = log.entries.get(seq.checked_sub(first)? as usize)?;
                Some(Located {
                    msg_id: id,
                    channel,
                    seq,
                    payload: e.payload.clone(),
                })
            })
            .collect();
        ready(Ok(found)).boxed()
    }

    fn redact(
        &self,
        channel: &Channel,
        seq: u64,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        if let Some(log) = st.logs.get_mut(channel)
            && let Some(first) = log.entries.front().map(|e| e.seq)
            && let Some(e) = seq
                .checked_sub(first)
                .and_then(|i| log.entries.get_mut(i as usize))
        {
            e.payload = payload;
        }
        ready(Ok(())).boxed()
    }

    fn set_reads(&self, marks: Vec<ReadMark>) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        let mut st = self.lock();
        let mut out = Vec::with_capacity(marks.len());
        for m in marks {
            let latest = st.logs.get(&m.channel).map_or(0, |l| l.last);
            let pos = st
                .reads
                .entry(m.channel.clone())
                .or_default()
                .entry(m.user.clone())
                .or_default();
            *pos = (*pos).max(m.seq.min(latest));
            out.push(*pos);
            st.read_by_user.entry(m.user).or_default().insert(m.channel);
        }
        ready(Ok(out)).boxed()
    }

    fn reads(
        &self,
        channel: &Channel,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<ReadsPage, StoreError>> {
        let st = self.lock();
        let limit = limit.clamp(1, MAX_READS_PAGE);
        let mut page = ReadsPage::default();
        if let Some(reads) = st.reads.get(channel) {
            let from = after.as_deref().unwrap_or("");
            let mut rest = reads
                .iter()
                .filter(|(u, _)| u.as_str() > from)
                .map(|(u, s)| (u.clone(), *s));
            page.reads = rest.by_ref().take(limit).collect();
            if rest.next().is_some() {
                page.next = page.reads.last().map(|(u, _)| u.to_string());
            }
        }
        ready(Ok(page)).boxed()
    }

    fn read_positions(
        &self,
        user: &Id,
    ) -> BoxFuture<'static, Result<Vec<(Channel, u64)>, StoreError>> {
        let st = self.lock();
        let positions = st
            .read_by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c.clone(), *st.reads.get(c)?.get(user)?)))
            .collect();
        ready(Ok(positions)).boxed()
    }

    fn unread_many(
        &self,
        positions: Vec<(Channel, u64)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, StoreError>> {
        let st = self.lock();
        let counts = positions
            .iter()
            .map(|(channel, after)| {
                st.logs.get(channel).map_or(0, |l| {
                    l.entries
                        .iter()
                        .filter(|e| e.seq > *after && e.counted)
                        .count() as u64
                })
            })
            .collect();
        ready(Ok(counts)).boxed()
    }
}

//! A hook's slots, shared fairly: at most `--hook-max-in-flight` calls at
//! once, and one caller (a user, or before login a client address) holds
//! at most a quarter of them, so a flood from one place cannot take the
//! slots everyone else needs. A slot is held until the backend answers or
//! the connection ends, not until the caller stops waiting: the backend
//! never has more calls in hand than it was promised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

use super::client::HookError;

/// Callers remembered before the ones holding nothing are forgotten.
const FORGET_AT: usize = 1024;

/// The slots of one hook.
pub(crate) struct Slots {
    all: Arc<Semaphore>,
    max: usize,
    share: usize,
    callers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A slot and its caller's share, held while a call is in flight.
pub(crate) struct Held {
    _all: OwnedSemaphorePermit,
    _mine: OwnedSemaphorePermit,
}

impl Slots {
    /// `max` slots, a quarter of them (at least one) per caller.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max)),
            max,
            share: (max / 4).max(1),
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `caller`, waiting until `until` for its share and then for
    /// a free slot; past it the call is busy.
    pub(crate) async fn acquire(&self, caller: &str, until: Instant) -> Result<Held, HookError> {
        let mine = self.of(caller);
        let mine = timeout_at(until, mine.acquire_owned())
            .await
            .map_err(|_| HookError::Busy(self.share))?
            .expect("never closed");
        let all = timeout_at(until, self.all.clone().acquire_owned())
            .await
            .map_err(|_| HookError::Busy(self.max))?
            .expect("never closed");
        Ok(Held {
            _all: all,
            _mine: mine,
        })
    }

    /// `caller`'s share, made on first use; callers holding nothing are
    /// forgotten once many are remembered.
    fn of(&self, caller: &str) -> Arc<Semaphore> {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if callers.len() >= FORGET_AT {
            // A share held by a call is also referenced by its permit.
            callers.retain(|_, s| Arc::strong_count(s) > 1);
        }
        callers
            .entry(caller.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_caller_holds_at_most_its_share_and_others_still_get_slots() {
        let slots = Slots::new(8);
        assert_eq!(slots.share, 2);
        let soon = || Instant::now() + Duration::from_millis(50);
        let a1 = slots.acquire("10.0.0.66", soon()).await.unwrap();
        let _a2 = slots.acquire("10.0.0.66", soon()).await.unwrap();
        assert_eq!(
            slots.acquire("10.0.0.66", soon()).await.err(),
            Some(HookError::Busy(2)),
            "a third call of the same caller waits for its share"
        );
        let mut others = Vec::new();
        for n in 0..6 {
            others.push(slots.acquire(&format!("user{n}"), soon()).await.unwrap());
        }
        assert_eq!(
            slots.acquire("user9", soon()).await.err(),
            Some(HookError::Busy(8))
        );
        drop(a1);
        assert!(slots.acquire("user9", soon()).await.is_ok());
    }

    #[tokio::test]
    async fn callers_holding_nothing_are_forgotten() {
        let slots = Slots::new(4);
        let until = Instant::now() + Duration::from_secs(1);
        let held = slots.acquire("keep", until).await.unwrap();
        for n in 0..FORGET_AT + 10 {
            drop(slots.acquire(&n.to_string(), until).await.unwrap());
        }
        let callers = slots.callers.lock().unwrap();
        assert!(callers.len() < FORGET_AT, "{}", callers.len());
        assert!(callers.contains_key("keep"));
        drop(held);
    }
}

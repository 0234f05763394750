//! Per-user budgets on this node, across all of a user's sessions: business
//! messages per second, and distinct new direct recipients per minute (so
//! one user cannot mint unbounded inboxes by messaging made-up ids). The
//! state is per user and swept: an idle user costs nothing.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::protocol::{Id, ProtoError};

/// The window of the recipients budget.
const WINDOW: Duration = Duration::from_secs(60);

/// The budgets of every user of this node.
pub(crate) struct UserBudgets {
    /// Messages per second per user, burst 2N (none: off).
    rate: Option<(DefaultKeyedRateLimiter<Id>, u32)>,
    /// Distinct direct recipients per user per minute (0: off).
    max_recipients: usize,
    /// A std mutex: held for a map lookup, never across an await.
    recipients: Mutex<HashMap<Id, Window>>,
}

struct Window {
    started: Instant,
    seen: HashSet<Id>,
}

impl UserBudgets {
    /// `rate` messages per second per user (0: off) and `recipients` new
    /// direct recipients per minute (0: off).
    pub(crate) fn new(rate: u32, recipients: usize) -> Self {
        let rate = NonZeroU32::new(rate).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
            (
                RateLimiter::keyed(Quota::per_second(r).allow_burst(burst)),
                r.get(),
            )
        });
        Self {
            rate,
            max_recipients: recipients,
            recipients: Mutex::default(),
        }
    }

    /// Counts one business message of `user` (to `recipient` for a direct
    /// one); error 429 when it is over a budget, and then nothing is counted
    /// against the recipients budget.
    pub(crate) fn message(&self, user: &Id, recipient: Option<&Id>) -> Result<(), ProtoError> {
        if let Some((limiter, r)) = &self.rate
            && limiter.check_key(user).is_err()
        {
            return Err(ProtoError::Limit(format!(
                "more than {r} messages per second from this user"
            )));
        }
        let Some(to) = recipient.filter(|to| *to != user) else {
            return Ok(());
        };
        if self.max_recipients == 0 {
            return Ok(());
        }
        let mut all = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let w = all.entry(user.clone()).or_insert_with(|| Window {
            started: now,
            seen: HashSet::new(),
        });
        if now.duration_since(w.started) >= WINDOW {
            w.started = now;
            w.seen.clear();
        }
        if w.seen.contains(to) {
            return Ok(());
        }
        if w.seen.len() >= self.max_recipients {
            return Err(ProtoError::Limit(format!(
                "more than {} new recipients per minute from this user",
                self.max_recipients
            )));
        }
        w.seen.insert(to.clone());
        Ok(())
    }

    /// Forgets users whose budgets are back to full.
    pub(crate) fn sweep(&self) {
        if let Some((limiter, _)) = &self.rate {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        let mut all = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, w| now.duration_since(w.started) < WINDOW);
        all.shrink_to_fit();
    }

    /// Users with state right now (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.recipients.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    #[test]
    fn rate_is_per_user_across_sessions() {
        let b = UserBudgets::new(2, 0);
        let (u, v) = (id("u"), id("v"));
        let allowed = (0..10).filter(|_| b.message(&u, None).is_ok()).count();
        assert_eq!(allowed, 4, "burst of 2N");
        assert!(
            b.message(&v, None).is_ok(),
            "another user has its own budget"
        );
        assert_eq!(b.message(&u, None).unwrap_err().code(), 429);
    }

    #[test]
    fn new_recipients_per_minute_and_known_ones_stay_allowed() {
        let b = UserBudgets::new(0, 2);
        let u = id("u");
        assert!(b.message(&u, Some(&id("a"))).is_ok());
        assert!(b.message(&u, Some(&id("b"))).is_ok());
        let e = b.message(&u, Some(&id("c"))).unwrap_err();
        assert!(e.to_string().contains("new recipients"), "{e}");
        assert!(b.message(&u, Some(&id("a"))).is_ok(), "a known recipient");
        assert!(b.message(&u, Some(&u)).is_ok(), "oneself is no new inbox");
        assert!(b.message(&u, None).is_ok(), "room messages do not count");
        assert_eq!(b.tracked(), 1);
        b.sweep();
        assert_eq!(b.tracked(), 1, "its window is still open");
    }
}

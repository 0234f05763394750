//! Per-session rate limiting: a token bucket (governor's GCRA) with a strike
//! count that turns sustained abuse into a close.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// What to do with one counted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit.
    Allow,
    /// Over the limit: answer 429 and drop the frame.
    Reject,
    /// Over the limit for too long: close the session with 4429.
    Close,
}

/// How long strikes accumulate before they are forgiven.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

/// A session's rate limit: `rate` frames per second with a burst of
/// `2 * rate`. After more than `2 * rate` rejected frames within ten seconds
/// the session counts as abusive and is closed.
pub(crate) struct RateLimit {
    limiter: Option<DefaultDirectRateLimiter>,
    max_strikes: u32,
    strikes: u32,
    window_start: Instant,
}

impl RateLimit {
    /// A limit of `rate` frames per second; 0 turns it off.
    pub(crate) fn new(rate: u32) -> Self {
        let limiter = NonZeroU32::new(rate).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
            RateLimiter::direct(Quota::per_second(r).allow_burst(burst))
        });
        Self {
            limiter,
            max_strikes: rate.saturating_mul(2),
            strikes: 0,
            window_start: Instant::now(),
        }
    }

    /// Counts one frame arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Allow;
        };
        if limiter.check().is_ok() {
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) > STRIKE_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > self.max_strikes {
            Verdict::Close
        } else {
            Verdict::Reject
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_reject_then_close() {
        let mut rl = RateLimit::new(5);
        let verdicts: Vec<Verdict> = (0..40).map(|_| rl.check(Instant::now())).collect();
        assert!(
            verdicts[..10].iter().all(|v| *v == Verdict::Allow),
            "{verdicts:?}"
        );
        assert!(
            verdicts[10..20].iter().all(|v| *v == Verdict::Reject),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[20], Verdict::Close);
    }

    #[test]
    fn zero_is_off() {
        let mut rl = RateLimit::new(0);
        assert!((0..10_000).all(|_| rl.check(Instant::now()) == Verdict::Allow));
    }
}

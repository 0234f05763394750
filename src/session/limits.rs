//! Per-session rate limiting: a token bucket (governor's GCRA) with a strike
//! count that turns sustained abuse into a close, and a bound on heartbeats,
//! which the bucket does not count.

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Instant;

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// governor's GCRA on the standard library's monotonic clock: 40 bytes,
/// where its default (quanta's calibrated clock, kept in each limiter) is
/// 72, in every idle session's task.
type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

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

/// How long strikes accumulate before they are forgiven, in seconds.
const STRIKE_WINDOW_SECS: u32 = 10;

/// Heartbeats (`ping`, msgType 1, a WebSocket Ping or Pong) a session may
/// send in one second of the clock. The rate limit does not count them
/// (PROTOCOL.md's limits: `ping` and msgType 1 are not counted), and a
/// client sends one every 25 to 30 s; a peer that sends more than this
/// floods, and each of its Pings and `ping`s costs an answer.
pub(crate) const HEARTBEATS_PER_SECOND: u16 = 20;

/// A session's rate limit: `rate` frames per second with a burst of
/// `2 * rate`. After more than `2 * rate` rejected frames within ten seconds
/// the session counts as abusive and is closed. Instants are kept as
/// seconds of [`second_of`], four bytes each: this sits in every idle
/// session's task.
pub(crate) struct RateLimit {
    limiter: Option<Limiter>,
    max_strikes: u32,
    strikes: u32,
    /// The second the strikes began to accumulate.
    window_start: u32,
    /// The second whose heartbeats `beats` counts.
    beat_second: u32,
    beats: u16,
}

/// Whole seconds since the first call, process-wide: an instant in four
/// bytes.
fn second_of(now: Instant) -> u32 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(|| now);
    u32::try_from(now.saturating_duration_since(base).as_secs()).unwrap_or(u32::MAX)
}

impl RateLimit {
    /// A limit of `rate` frames per second; 0 turns it off.
    pub(crate) fn new(rate: u32) -> Self {
        let limiter = NonZeroU32::new(rate).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
            RateLimiter::direct_with_clock(Quota::per_second(r).allow_burst(burst), MonotonicClock)
        });
        Self {
            limiter,
            max_strikes: rate.saturating_mul(2),
            strikes: 0,
            window_start: second_of(Instant::now()),
            beat_second: 0,
            beats: 0,
        }
    }

    /// Counts one heartbeat arriving at `now`: allowed up to
    /// [`HEARTBEATS_PER_SECOND`] in a second of the clock, a close beyond
    /// (off with the rate limit).
    pub(crate) fn check_heartbeat(&mut self, now: Instant) -> Verdict {
        if self.limiter.is_none() {
            return Verdict::Allow;
        }
        let second = second_of(now);
        if second != self.beat_second {
            self.beat_second = second;
            self.beats = 0;
        }
        self.beats = self.beats.saturating_add(1);
        match self.beats > HEARTBEATS_PER_SECOND {
            true => Verdict::Close,
            false => Verdict::Allow,
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
        let second = second_of(now);
        if second.saturating_sub(self.window_start) > STRIKE_WINDOW_SECS {
            self.window_start = second;
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
    use std::time::Duration;

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
        assert!((0..10_000).all(|_| rl.check_heartbeat(Instant::now()) == Verdict::Allow));
    }

    #[test]
    fn heartbeats_are_bounded_per_second_not_by_the_bucket() {
        let mut rl = RateLimit::new(1);
        let t0 = Instant::now();
        // The bucket (burst 2) is spent; heartbeats do not draw on it.
        let _ = (0..10).map(|_| rl.check(t0)).count();
        let n = usize::from(HEARTBEATS_PER_SECOND);
        let first: Vec<Verdict> = (0..=n).map(|_| rl.check_heartbeat(t0)).collect();
        assert!(first[..n].iter().all(|v| *v == Verdict::Allow), "{first:?}");
        assert_eq!(first[n], Verdict::Close);
        // One a second, as clients send them, is never a flood.
        let mut steady = RateLimit::new(1);
        assert!(
            (0..600u64)
                .all(|s| { steady.check_heartbeat(t0 + Duration::from_secs(s)) == Verdict::Allow })
        );
    }
}

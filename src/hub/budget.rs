//! How many frames the node's fan-out may write to sockets itself. A direct
//! write is one syscall per frame: cheaper than waking the session while
//! fan-out is light, far dearer than the session's own writes once it is
//! heavy (frames that wait in a queue go out up to 64 in one write). The
//! budget is a number of frames per 100 ms window; beyond it frames are
//! queued, and a saturated room is written in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The window the budget is counted over.
const WINDOW: Duration = Duration::from_millis(100);
/// Frames written directly per window: 100,000 a second, about a third of
/// what one core writes one frame a syscall.
pub(super) const PER_WINDOW: u32 = 10_000;

/// The node's budget of direct writes.
#[derive(Debug)]
pub(crate) struct WriteBudget {
    /// The window's number (high half) and the frames taken in it.
    state: AtomicU64,
    start: Instant,
}

impl Default for WriteBudget {
    fn default() -> Self {
        Self {
            state: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

impl WriteBudget {
    /// Takes `n` frames from the current window's budget, all or none.
    pub(crate) fn take(&self, n: usize) -> bool {
        let window = self.start.elapsed().as_millis() / WINDOW.as_millis();
        self.take_in(window as u32, n)
    }

    fn take_in(&self, window: u32, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        let current = self.state.load(Ordering::Relaxed);
        let used = if (current >> 32) as u32 == window {
            current as u32
        } else {
            0
        };
        if used.saturating_add(n) > PER_WINDOW {
            return false;
        }
        let next = (u64::from(window) << 32) | u64::from(used + n);
        // Lost to a concurrent fan-out: queueing is always correct.
        self.state
            .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_gives_its_budget_whole_and_the_next_one_starts_afresh() {
        let b = WriteBudget::default();
        assert!(b.take_in(7, 6_000));
        assert!(!b.take_in(7, 6_000), "all or none");
        assert!(b.take_in(7, 4_000));
        assert!(!b.take_in(7, 1));
        assert!(b.take_in(8, 10_000));
        assert!(!b.take_in(8, 1));
        assert!(!b.take_in(9, PER_WINDOW as usize + 1), "a room too large");
    }
}

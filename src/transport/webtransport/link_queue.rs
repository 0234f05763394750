//! Whether a connection's link is queueing, for `"auto"` copies: the
//! smoothed round trip against its recent floor. Copies double a channel's
//! bytes; where the link itself is the bottleneck they fill its buffer, the
//! round trip grows, and every message waits behind its own copies. This
//! does not depend on the congestion controller (a window that grows while
//! the application sends little says nothing about the link's buffer).
//!
//! The floor is the lowest round trip of the last two [`FLOOR_SPAN`]s. A
//! round trip 1.5x the floor (and [`MIN_RISE`] above it) holds copies back
//! for [`FIRST_HOLD`], doubling at each trip that comes soon after the last
//! up to [`MAX_HOLD`]: copies are tried again now and then, and each try
//! that queues costs a second or so of delay.

use std::time::Duration;

use tokio::time::Instant;

/// How long each of the floor's two spans lasts.
const FLOOR_SPAN: Duration = Duration::from_secs(30);
/// A rise below this is jitter, not a queue (and keeps loopback quiet).
const MIN_RISE: Duration = Duration::from_millis(20);
/// The first hold, and the longest.
const FIRST_HOLD: Duration = Duration::from_secs(10);
const MAX_HOLD: Duration = Duration::from_secs(160);
/// A trip this long after the previous one starts the holds over.
const FORGET: Duration = Duration::from_secs(300);

/// One connection's watch.
#[derive(Debug, Default)]
pub(super) struct LinkQueue {
    /// The lowest round trip of this span and of the one before.
    floor: [Option<Duration>; 2],
    span_start: Option<Instant>,
    /// Copies wait until then.
    held_until: Option<Instant>,
    hold: Duration,
    last_trip: Option<Instant>,
}

impl LinkQueue {
    /// Takes a smoothed round trip seen at `now`; true while copies are
    /// held back.
    pub(super) fn look(&mut self, now: Instant, rtt: Duration) -> bool {
        self.roll(now);
        self.floor[0] = Some(self.floor[0].map_or(rtt, |f| f.min(rtt)));
        let floor = self.floor.iter().flatten().min().copied().unwrap_or(rtt);
        if self.held(now) {
            return true;
        }
        let queued = rtt > floor + floor / 2 && rtt > floor + MIN_RISE;
        if !queued {
            return false;
        }
        self.hold = match self.last_trip {
            Some(t) if now.duration_since(t) < FORGET => {
                (self.hold * 2).clamp(FIRST_HOLD, MAX_HOLD)
            }
            _ => FIRST_HOLD,
        };
        self.last_trip = Some(now);
        self.held_until = Some(now + self.hold);
        true
    }

    /// Whether copies are held back at `now`.
    pub(super) fn held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|t| now < t)
    }

    /// Starts a new span when this one is over.
    fn roll(&mut self, now: Instant) {
        match self.span_start {
            Some(t) if now.duration_since(t) < FLOOR_SPAN => {}
            Some(t) if now.duration_since(t) < 2 * FLOOR_SPAN => {
                self.floor = [None, self.floor[0]];
                self.span_start = Some(t + FLOOR_SPAN);
            }
            _ => {
                self.floor = [None, None];
                self.span_start = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one round trip per 250 ms from `start` for `secs`; how many
    /// looks held copies back.
    fn feed(q: &mut LinkQueue, start: Instant, secs: u64, rtt: Duration) -> usize {
        (0..secs * 4)
            .filter(|i| q.look(start + 250 * MS * *i as u32, rtt))
            .count()
    }

    #[test]
    fn a_steady_round_trip_never_holds_copies() {
        let mut q = LinkQueue::default();
        let t = Instant::now();
        assert_eq!(feed(&mut q, t, 120, 200 * MS), 0);
        // Jitter under the bound neither.
        assert_eq!(feed(&mut q, t + Duration::from_secs(120), 10, 290 * MS), 0);
    }

    #[test]
    fn a_growing_queue_holds_copies_for_a_while_then_tries_again() {
        let mut q = LinkQueue::default();
        let t = Instant::now();
        assert!(!q.look(t, 200 * MS));
        assert!(q.look(t + MS, 320 * MS), "1.6x the floor is a queue");
        // Held for the first hold even once the queue drains...
        assert!(q.look(t + Duration::from_secs(5), 200 * MS));
        assert!(q.held(t + Duration::from_secs(9)));
        // ...then copies are tried again.
        assert!(!q.look(t + Duration::from_secs(11), 200 * MS));
    }

    #[test]
    fn holds_double_while_trips_keep_coming_and_start_over_later() {
        let mut q = LinkQueue::default();
        let t = Instant::now();
        q.look(t, 200 * MS);
        let mut at = t;
        let mut holds = vec![];
        for _ in 0..6 {
            at += MS;
            assert!(q.look(at, 400 * MS));
            let until = q.held_until.unwrap();
            holds.push((until - at).as_secs());
            // Without copies the queue drained; tried again, it builds.
            at = until;
            assert!(!q.look(at, 200 * MS));
        }
        assert_eq!(holds, [10, 20, 40, 80, 160, 160]);
        // Long after the last trip, the next one holds for the first hold.
        at += Duration::from_secs(400);
        q.look(at, 200 * MS);
        assert!(q.look(at + MS, 400 * MS));
        assert_eq!((q.held_until.unwrap() - at - MS).as_secs(), 10);
    }

    #[test]
    fn tiny_round_trips_need_a_real_rise() {
        let mut q = LinkQueue::default();
        let t = Instant::now();
        q.look(t, MS);
        assert!(
            !q.look(t + MS, 5 * MS),
            "5x a loopback round trip is not a queue"
        );
    }

    #[test]
    fn the_floor_forgets_a_path_that_is_gone() {
        let mut q = LinkQueue::default();
        let t = Instant::now();
        q.look(t, 50 * MS);
        // The phone moved to a slower path: held at first (its round trip
        // is 4x the old floor)...
        assert!(q.look(t + Duration::from_secs(1), 200 * MS));
        // ...and after two spans the old path's floor is forgotten.
        let later = t + Duration::from_secs(61 + 160);
        assert!(!q.look(later, 200 * MS));
        assert!(!q.look(later + Duration::from_secs(1), 210 * MS));
    }
}

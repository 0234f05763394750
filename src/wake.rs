//! A waker that remembers it was used. A task that waits on a busy source
//! (a session's outbound queue, woken once per frame) and on quiet ones
//! (its socket, timers, close requests) polls the quiet ones with this
//! waker; a wake that did not come from them finds the flag down, and the
//! task skips them instead of polling each again (each poll takes a lock or
//! re-registers a waker).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

struct Flag {
    raised: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Raised by the sources polled with [`WakeFlag::waker`], lowered by
/// [`WakeFlag::take`].
pub(crate) struct WakeFlag {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Default for WakeFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeFlag {
    /// A raised flag: the first poll looks at every source.
    pub(crate) fn new() -> Self {
        let flag = Arc::new(Flag {
            raised: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Makes a later wake of the sources wake `task`, then lowers the flag
    /// and tells whether it was raised (the sources must be polled).
    pub(crate) fn take(&self, task: &Waker) -> bool {
        self.flag.task.register(task);
        self.flag.raised.swap(false, Ordering::AcqRel)
    }

    /// Raises the flag: a source returned something and the others were
    /// not polled, or a source changed without a wake.
    pub(crate) fn raise(&self) {
        self.flag.raised.store(true, Ordering::Release);
    }

    /// The waker to poll the sources with.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_of_the_sources_raises_the_flag_and_wakes_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let f = WakeFlag::new();
        assert!(f.take(&task), "raised at first");
        assert!(!f.take(&task), "lowered by take");
        f.waker().wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(f.take(&task));
        f.raise();
        assert!(f.take(&task));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "raise wakes no one");
    }
}

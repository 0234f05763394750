//! A session's outbound queue: many senders (the hub, on any thread), one
//! receiver (the session's task), bounded. Built for idle connections: an
//! empty queue holds no buffer beyond a few slots, and the whole queue is
//! one small allocation, where tokio's bounded channel keeps cache-padded
//! state and a 32-slot block per channel for the connection's life (about
//! 800 bytes of an idle WebSocket's 5.3 KB).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A queue left with more slots than this gives them back once drained.
const KEEP_SLOTS: usize = 8;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    cap: usize,
    /// The receiver's waker.
    waker: AtomicWaker,
    /// How many items are queued (written under the lock, so the receiver
    /// can find an empty queue without taking it), [`TAKEN`] while items
    /// the receiver took are not yet written, and [`CLOSED`] once the
    /// receiver is gone.
    state: AtomicUsize,
}

/// The bit of `state` that says the receiver is gone.
const CLOSED: usize = 1 << (usize::BITS - 1);
/// The bit of `state` that says the receiver took items it has not yet
/// written out ([`Receiver::written`]): a sender that must not overtake
/// them finds the queue not empty.
const TAKEN: usize = 1 << (usize::BITS - 2);
/// The bits of `state` that count items.
const COUNT: usize = !(CLOSED | TAKEN);

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while holding the lock leaves a consistent deque.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its bound.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The sending side; cheap to clone.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("cap", &self.0.cap).finish()
    }
}

/// The receiving side.
pub struct Receiver<T>(Arc<Shared<T>>);

/// A queue of at most `cap` items.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        cap,
        waker: AtomicWaker::new(),
        state: AtomicUsize::new(0),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item` without waiting.
    pub fn try_send(&self, item: T) -> Result<(), Refused> {
        self.try_send_replacing(item, |_| None)
    }

    /// Queues `item`, or when an item queued already has the same key
    /// (`key_of`), puts it in that one's place: a newer "latest value" update
    /// replaces an older one still waiting instead of queueing behind it.
    pub fn try_send_replacing(
        &self,
        item: T,
        key_of: impl Fn(&T) -> Option<u64>,
    ) -> Result<(), Refused> {
        if self.0.state.load(Ordering::Acquire) & CLOSED != 0 {
            return Err(Refused::Closed);
        }
        let key = key_of(&item);
        {
            let mut items = self.0.items();
            if key.is_some()
                && let Some(old) = items.iter_mut().rev().find(|i| key_of(i) == key)
            {
                *old = item;
                return Ok(());
            }
            if items.len() >= self.0.cap {
                return Err(Refused::Full);
            }
            items.push_back(item);
            self.0.state.fetch_add(1, Ordering::Release);
        }
        self.0.waker.wake();
        Ok(())
    }

    /// Wakes the receiver without an item (it has other work).
    pub fn wake(&self) {
        self.0.waker.wake();
    }

    /// Whether nothing is queued and nothing taken is still unwritten (no
    /// lock taken): a frame sent around the queue now overtakes none.
    pub fn is_empty(&self) -> bool {
        self.0.state.load(Ordering::Acquire) & !CLOSED == 0
    }
}

impl<T> Receiver<T> {
    /// The next item, without waiting. A drained queue that had grown gives
    /// its buffer back. Until [`Receiver::written`], senders see the queue
    /// as not empty.
    pub fn try_recv(&mut self) -> Option<T> {
        if self.0.state.load(Ordering::Acquire) & COUNT == 0 {
            return None;
        }
        let mut items = self.0.items();
        let item = items.pop_front();
        if item.is_some() {
            // Taken before the count drops: never seen empty in between.
            self.0.state.fetch_or(TAKEN, Ordering::AcqRel);
            self.0.state.fetch_sub(1, Ordering::Release);
        }
        if items.is_empty() && items.capacity() > KEEP_SLOTS {
            items.shrink_to(KEEP_SLOTS);
        }
        item
    }

    /// The next item. Cancel-safe: an item is taken only when returned.
    pub async fn recv(&mut self) -> T {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item, or `Pending` with `cx`'s waker registered for the
    /// next send.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.try_recv() {
            return Poll::Ready(item);
        }
        self.0.waker.register(cx.waker());
        // A send between the check and the registration woke no one.
        match self.try_recv() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }

    /// What was taken is written out: senders may go around the queue
    /// again once it is empty.
    pub fn written(&self) {
        self.0.state.fetch_and(!TAKEN, Ordering::Release);
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.0.items().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.state.fetch_or(CLOSED, Ordering::AcqRel);
        // Frames still queued go with the last sender.
        self.0.items().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_latest_value_takes_the_older_ones_place() {
        let (tx, mut rx) = bounded(3);
        let key = |i: &(u32, Option<u64>)| i.1;
        tx.try_send_replacing((1, Some(7)), key).unwrap();
        tx.try_send_replacing((2, None), key).unwrap();
        tx.try_send_replacing((3, Some(7)), key).unwrap();
        tx.try_send_replacing((4, Some(8)), key).unwrap();
        // Full, but the update replaces its older self.
        tx.try_send_replacing((5, Some(8)), key).unwrap();
        assert_eq!(tx.try_send_replacing((6, Some(9)), key), Err(Refused::Full));
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv()).map(|i| i.0).collect();
        assert_eq!(got, [3, 2, 5]);
    }

    #[test]
    fn it_is_bounded_ordered_and_refuses_once_the_receiver_is_gone() {
        let (tx, mut rx) = bounded(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(3), Err(Refused::Full));
        assert_eq!(rx.len(), 3);
        assert_eq!(
            (rx.try_recv(), rx.try_recv(), rx.try_recv(), rx.try_recv()),
            (Some(0), Some(1), Some(2), None)
        );
        assert!(!tx.is_empty(), "taken, not yet written");
        rx.written();
        assert!(tx.is_empty());
        tx.clone().try_send(9).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(10), Err(Refused::Closed));
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let (tx, mut rx) = bounded(1024);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.0.items().capacity() >= 500);
        while rx.try_recv().is_some() {}
        assert!(rx.0.items().capacity() <= KEEP_SLOTS);
    }

    #[tokio::test]
    async fn recv_wakes_for_a_send_from_another_thread_and_loses_nothing_when_cancelled() {
        let (tx, mut rx) = bounded::<u32>(16);
        // A recv dropped before anything came takes nothing.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv())
                .await
                .is_err()
        );
        let sender = std::thread::spawn(move || {
            for i in 0..1000 {
                while tx.try_send(i).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        for want in 0..1000 {
            assert_eq!(rx.recv().await, want);
        }
        sender.join().unwrap();
    }
}

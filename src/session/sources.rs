//! What the session's loop waits on: close requests, its one timer, its
//! stores in flight, its outbound queue and the peer, polled so that a wake
//! for a queued frame costs one look at the queue.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Sleep;

use super::Driver;
use super::commands::{AckFuture, Done};
use crate::model::OutFrame;
use crate::transport::{Incoming, Transport, TransportError};

/// The next finished work, `None` when none is in flight.
pub(super) async fn next_ack(acks: &mut Option<Box<FuturesUnordered<AckFuture>>>) -> Option<Done> {
    match acks {
        Some(a) => a.next().await,
        None => None,
    }
}

/// What the session's loop woke for.
pub(super) enum Woke {
    /// A close request of the hub's (its code is the closer's), or the
    /// node's shutdown.
    Cancelled,
    /// The session's one timer.
    Deadline,
    /// Work beside the loop finished: a store (its ack or error is due),
    /// or a join hook's verdict.
    Done(Done),
    /// A frame from the outbound queue.
    Out(OutFrame),
    /// Something from the peer, `None` when it is gone.
    In(Option<Result<Incoming, TransportError>>),
}

impl<T: Transport> Driver<T> {
    /// The next thing to handle, in this order: close requests, the timer,
    /// acks, queued frames, the peer. Everything but the queue is quiet and
    /// polled with the session's [`WakeFlag`](crate::wake::WakeFlag), only
    /// when it woke the task (a fan-out wakes a session once per frame:
    /// that wake polls the queue alone). Every outcome but a queued frame
    /// raises the flag again, so the next turn looks at every source.
    pub(super) fn poll_woke(
        &mut self,
        cx: &mut Context<'_>,
        mut deadline: Pin<&mut Sleep>,
    ) -> Poll<Woke> {
        let raised = self.wake.take(cx.waker());
        let woke = self.poll_quiet(raised, deadline.as_mut());
        if let Poll::Ready(w) = woke {
            self.wake.raise();
            return Poll::Ready(w);
        }
        if let Some(a) = &mut self.active
            && let Poll::Ready(frame) = a.rx.poll_recv(cx)
        {
            if raised {
                // The peer was not polled this turn.
                self.wake.raise();
            }
            return Poll::Ready(Woke::Out(frame));
        }
        if raised {
            let mut quiet = Context::from_waker(self.wake.waker());
            if let Poll::Ready(inc) = pin!(self.t.recv()).poll(&mut quiet) {
                self.wake.raise();
                return Poll::Ready(Woke::In(inc));
            }
        }
        Poll::Pending
    }

    /// The close request, the timer and the acks, when the flag was raised.
    fn poll_quiet(&mut self, raised: bool, deadline: Pin<&mut Sleep>) -> Poll<Woke> {
        if !raised {
            return Poll::Pending;
        }
        let mut quiet = Context::from_waker(self.wake.waker());
        if self
            .cancelled
            .as_mut()
            .is_some_and(|c| c.as_mut().poll(&mut quiet).is_ready())
            || self
                .active
                .as_ref()
                .is_some_and(|a| a.handle.closer.poll_requested(&mut quiet).is_ready())
        {
            return Poll::Ready(Woke::Cancelled);
        }
        if deadline.poll(&mut quiet).is_ready() {
            return Poll::Ready(Woke::Deadline);
        }
        if let Some(acks) = self.acks.as_mut().filter(|a| !a.is_empty())
            && let Poll::Ready(Some(done)) = acks.poll_next_unpin(&mut quiet)
        {
            return Poll::Ready(Woke::Done(done));
        }
        Poll::Pending
    }
}

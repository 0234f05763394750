//! The fan-out's writes of one turn of the scheduler, flushed together once
//! the tasks that were ready have run: the first frame of a turn on a thread
//! opens a batch and spawns its flush, which yields (tokio runs a yielded
//! task after the others that are ready and a look at the I/O driver) until
//! a turn hands no new frame over, at most a few turns, so frames that
//! arrive together share one write: one `write` per WebSocket's socket, one
//! QUIC packet per WebTransport session's datagrams.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What the fan-out handed frames to and writes in the batch's flush.
pub(crate) trait Corked: Send + Sync {
    /// Writes what the fan-out handed over since the last flush.
    fn flush_corked(&self);
}

/// Frames handed over so far, by any thread.
static HANDED: AtomicU64 = AtomicU64::new(0);
/// Turns a flush waits at most while frames keep coming.
const MAX_TURNS: usize = 4;

/// The writers of one batch; `None` once its flush took them.
struct Batch(Mutex<Option<Vec<Arc<dyn Corked>>>>);

thread_local! {
    /// The batch this thread adds to until its flush runs.
    static OPEN: RefCell<Option<Arc<Batch>>> = const { RefCell::new(None) };
}

/// A frame was handed to the writer `me`: counted (a flush waiting for
/// more sees it) and, for the writer's `first` frame since its last flush,
/// the writer joins this thread's batch.
pub(crate) fn handed<W: Corked + 'static>(first: bool, me: &Weak<W>) {
    HANDED.fetch_add(1, Ordering::Relaxed);
    if first && let Some(me) = me.upgrade() {
        add(me);
    }
}

/// Adds a writer with frames to write to this thread's open batch, or opens
/// one and schedules its flush. Called once per writer per flush (by its
/// first frame since the last).
fn add(s: Arc<dyn Corked>) {
    let s = OPEN.with_borrow(|open| {
        if let Some(batch) = open
            && let Some(list) = batch.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
        {
            list.push(s);
            return None;
        }
        Some(s)
    });
    let Some(s) = s else { return };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        // No scheduler to wait for (a thread of its own): now.
        s.flush_corked();
        return;
    };
    let batch = Arc::new(Batch(Mutex::new(Some(vec![s]))));
    OPEN.set(Some(batch.clone()));
    rt.spawn(async move {
        // Turns go on while frames keep coming (publishers in step
        // whose frames arrive a few microseconds apart), a few at most.
        let mut seen = HANDED.load(Ordering::Relaxed);
        for _ in 0..MAX_TURNS {
            tokio::task::yield_now().await;
            let now = HANDED.load(Ordering::Relaxed);
            if now == seen {
                break;
            }
            seen = now;
        }
        let list = batch.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        for s in list.into_iter().flatten() {
            s.flush_corked();
        }
    });
}

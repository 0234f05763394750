//! The fan-out's side door into a WebTransport session: its datagrams,
//! handed over from the thread that fans a volatile frame out and given to
//! quinn together with the others of the same turns of the scheduler
//! ([`cork`](crate::transport::cork)), so that a burst to one session
//! leaves in one QUIC packet (quinn packs the DATAGRAM frames waiting when
//! its connection task runs).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use super::wire;
use crate::telemetry;
use crate::transport::cork::{self, Corked};
use crate::transport::{DirectSend, Sent, TransportKind};

/// The session's datagrams, sent from the thread that fans a volatile frame
/// out: quinn's connection is shared and `send_datagram` does not wait, so
/// a datagram costs no wake of the session's task.
pub(super) struct Datagrams {
    conn: quinn::Connection,
    session: u64,
    m: &'static telemetry::SessionMetrics,
    /// Datagrams handed over and not yet given to quinn; a non-empty list
    /// is in the cork's batch.
    waiting: Mutex<Vec<Bytes>>,
    /// The largest datagram quinn takes, as quinn last said (at the start,
    /// for a larger frame, or when it refused one as too large; 0: the peer
    /// takes none, or the connection is gone), kept so that a frame's
    /// hand-over takes no lock of the connection's.
    fits: AtomicUsize,
    /// Itself, for the cork's batch.
    me: Weak<Datagrams>,
}

impl Datagrams {
    pub(super) fn new(conn: quinn::Connection, session: u64) -> Arc<Self> {
        let fits = conn.max_datagram_size().unwrap_or(0);
        Arc::new_cyclic(|me| Datagrams {
            conn,
            session,
            m: telemetry::session_metrics(TransportKind::WebTransport),
            waiting: Mutex::new(Vec::new()),
            fits: AtomicUsize::new(fits),
            me: me.clone(),
        })
    }
}

thread_local! {
    /// The datagram this thread built last: its payload (held, so that a
    /// payload at the same address is this one), quarter session id and
    /// bytes.
    static LAST: RefCell<Option<(Bytes, u64, Bytes)>> = const { RefCell::new(None) };
}

/// The datagram of `payload` for `session`, built once per fan-out: a
/// fan-out hands one payload to every session of a room, and their
/// datagrams mostly share a prefix (a browser's session is its
/// connection's first stream, quarter id 0), so the next recipient's is a
/// reference to the same bytes rather than an allocation and a copy.
fn shared_datagram(session: u64, payload: &Bytes) -> Bytes {
    LAST.with_borrow_mut(|last| {
        if let Some((p, quarter, d)) = last.as_ref()
            && *quarter == session / 4
            && p.as_ptr() == payload.as_ptr()
            && p.len() == payload.len()
        {
            return d.clone();
        }
        let d = wire::datagram(session, payload);
        *last = Some((payload.clone(), session / 4, d.clone()));
        d
    })
}

impl Datagrams {
    /// Asks quinn again what fits (the path may have grown since: MTU
    /// discovery), for a frame larger than the last answer.
    fn refit(&self) -> usize {
        let fits = self.conn.max_datagram_size().unwrap_or(0);
        self.fits.store(fits, Ordering::Relaxed);
        fits
    }
}

impl std::fmt::Debug for Datagrams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagrams")
            .field("session", &self.session)
            .finish()
    }
}

impl DirectSend for Datagrams {
    fn send_volatile(&self, payload: &Bytes) -> Sent {
        // A datagram that does not fit, a peer that takes none or a lost
        // connection: the frame goes through the session's queue, which
        // sends it reliably or ends the session.
        let datagram = shared_datagram(self.session, payload);
        let fits = self.fits.load(Ordering::Relaxed);
        if datagram.len() > fits && (fits == 0 || datagram.len() > self.refit()) {
            return Sent::No;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let first = waiting.is_empty();
        waiting.push(datagram);
        drop(waiting);
        cork::handed(first, &self.me);
        self.m.frames_out.increment(1);
        Sent::Yes
    }
}

impl Corked for Datagrams {
    /// Gives the waiting datagrams to quinn, whose connection task then
    /// packs them into as few packets as fit. One quinn no longer takes
    /// (the path's datagram size shrank, the connection was lost) is
    /// dropped and counted: a volatile frame may be lost. The list keeps
    /// its memory for the next turn's frames.
    fn flush_corked(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for d in waiting.drain(..) {
            match self.conn.send_datagram(d) {
                Ok(()) => telemetry::datagram("out"),
                Err(e) => {
                    telemetry::datagram("dropped");
                    match e {
                        quinn::SendDatagramError::TooLarge => drop(self.refit()),
                        // Lost, or datagrams turned off: what comes next
                        // goes through the session's queue, which ends
                        // the session.
                        _ => self.fits.store(0, Ordering::Relaxed),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "datagrams_tests.rs"]
mod tests;

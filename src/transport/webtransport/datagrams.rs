//! The fan-out's side door into a WebTransport session: its datagrams,
//! sent from the thread that fans a volatile frame out.

use bytes::Bytes;

use super::wire;
use crate::telemetry;
use crate::transport::{DirectSend, Sent, TransportKind};

/// The session's datagrams, sent from the thread that fans a volatile frame
/// out: quinn's connection is shared and `send_datagram` does not wait, so
/// a datagram costs no wake of the session's task.
pub(super) struct Datagrams {
    conn: quinn::Connection,
    session: u64,
    m: &'static telemetry::SessionMetrics,
}

impl Datagrams {
    pub(super) fn new(conn: quinn::Connection, session: u64) -> Self {
        Datagrams {
            conn,
            session,
            m: telemetry::session_metrics(TransportKind::WebTransport),
        }
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
        if self
            .conn
            .send_datagram(wire::datagram(self.session, payload))
            .is_err()
        {
            return Sent::No;
        }
        telemetry::datagram("out");
        self.m.frames_out.increment(1);
        Sent::Yes
    }
}

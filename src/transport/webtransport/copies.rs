//! Redundant datagram copies of stored-channel frames (`"redundancy"` at
//! login): a lost packet costs a stream a retransmission, two to three
//! round trips; a datagram copy of the frame, sent a moment after it in
//! another packet, gets there in one trip unless it is lost too (the
//! square of the loss rate). The client keeps the first copy by `msgId`.
//!
//! `"auto"` sends copies only while the connection loses packets (quinn's
//! path statistics: on at two losses within [`CALM`], off after [`CALM`]
//! without one), and not when they would queue: while datagrams wait in
//! quinn's buffer; when what the session sends in a round trip, copies
//! included, would take more than a quarter of the congestion window (a
//! loss-based controller shrinks it on a lossy link, and copies would then
//! hold up the streams they stand in for); or while the link's own buffer
//! fills ([`LinkQueue`]: the round trip grows).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link_queue::LinkQueue;
use super::{DATAGRAM_SEND_BUFFER, wire};
use crate::protocol::Redundancy;
use crate::telemetry;

/// How long after its stream copy a datagram copy leaves: long enough for
/// the stream copy's packet to have gone, so that one lost packet does not
/// take both; short against the retransmission it stands in for.
const COPY_DELAY: Duration = Duration::from_millis(5);
/// How often `"auto"` looks at the connection's statistics at most.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// `"auto"` turns copies off after this long without a lost packet.
const CALM: Duration = Duration::from_secs(10);
/// Copies waiting for their moment, per session; past it they are not sent.
const WAITING: usize = 256;

/// One session's copies.
pub(super) struct Copies {
    conn: quinn::Connection,
    session: u64,
    /// The task that sends copies at their time, started with the first.
    tx: Option<mpsc::Sender<(Instant, Bytes)>>,
    /// `"auto"`: whether copies go now, and why.
    lossy: bool,
    looked: Option<Instant>,
    lost: u64,
    /// When a packet was last seen lost.
    last_loss: Option<Instant>,
    /// The congestion window when last looked at, in bytes.
    cwnd: u64,
    /// Whether the link queues (the round trip against its floor).
    link: LinkQueue,
    /// Bytes sent (frames and copies) in this second and the one before.
    sent: [u64; 2],
    second: Option<Instant>,
}

impl Copies {
    pub(super) fn new(conn: quinn::Connection, session: u64) -> Self {
        Self {
            conn,
            session,
            tx: None,
            lossy: false,
            looked: None,
            lost: 0,
            last_loss: None,
            cwnd: u64::MAX,
            link: LinkQueue::default(),
            sent: [0; 2],
            second: None,
        }
    }

    /// Counts `n` bytes sent at `now`, by the second.
    fn count(&mut self, n: usize, now: Instant) {
        match self.second {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => {}
            Some(t) if now.duration_since(t) < Duration::from_secs(2) => {
                self.sent = [0, self.sent[0]];
                self.second = Some(t + Duration::from_secs(1));
            }
            _ => {
                self.sent = [0, 0];
                self.second = Some(now);
            }
        }
        self.sent[0] += n as u64;
    }

    /// Whether a copy of `n` bytes fits: what a round trip carries, copies
    /// included, stays under a quarter of the congestion window.
    fn fits(&self, n: usize) -> bool {
        let per_second = self.sent[0].max(self.sent[1]) + n as u64;
        let rtt = self.conn.rtt().as_secs_f64();
        (per_second as f64 * rtt * 4.0) < self.cwnd as f64
    }

    /// After `frame` went on its channel's stream: its datagram copy, if
    /// `redundancy` asks for one now and it fits.
    /// The clock is read once.
    pub(super) fn after(&mut self, frame: &Bytes, redundancy: Redundancy) {
        let now = Instant::now();
        self.count(frame.len(), now);
        let wanted = match redundancy {
            Redundancy::Off => false,
            Redundancy::Always => true,
            Redundancy::Auto if !self.losing(now) => false,
            Redundancy::Auto if self.link.held(now) => {
                telemetry::datagram_copy("held");
                false
            }
            Redundancy::Auto => !self.queuing() && self.fits(frame.len()),
        };
        if !wanted {
            return;
        }
        let datagram = wire::datagram(self.session, frame);
        if self
            .conn
            .max_datagram_size()
            .is_none_or(|max| datagram.len() > max)
        {
            return;
        }
        let len = datagram.len();
        let tx = self.tx.get_or_insert_with(|| spawn(self.conn.clone()));
        if tx.try_send((now + COPY_DELAY, datagram)).is_err() {
            telemetry::datagram_copy("dropped");
            return;
        }
        self.count(len, now);
    }

    /// Whether the connection is losing packets as of `now`, with
    /// hysteresis.
    fn losing(&mut self, now: Instant) -> bool {
        if self
            .looked
            .is_some_and(|t| now.duration_since(t) < LOOK_EVERY)
        {
            return self.lossy;
        }
        self.looked = Some(now);
        let path = self.conn.stats().path;
        self.cwnd = path.cwnd;
        self.link.look(now, path.rtt);
        let lost = path.lost_packets;
        let new = lost.saturating_sub(self.lost);
        self.lost = lost;
        if new > 0 {
            // Two losses within the calm period, in one look or two.
            let recent = self.last_loss.is_some_and(|t| now.duration_since(t) < CALM);
            if new >= 2 || recent {
                self.lossy = true;
            }
            self.last_loss = Some(now);
        } else if self.last_loss.is_none_or(|t| now.duration_since(t) >= CALM) {
            self.lossy = false;
        }
        self.lossy
    }

    /// Whether datagrams queue in quinn (half its send buffer taken).
    fn queuing(&self) -> bool {
        self.conn.datagram_send_buffer_space() < DATAGRAM_SEND_BUFFER / 2
    }
}

/// The task that sends each copy at its time, in order; it ends with the
/// session (its sender dropped).
fn spawn(conn: quinn::Connection) -> mpsc::Sender<(Instant, Bytes)> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(WAITING);
    tokio::spawn(async move {
        while let Some((at, datagram)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            match conn.send_datagram(datagram) {
                Ok(()) => telemetry::datagram_copy("sent"),
                Err(quinn::SendDatagramError::ConnectionLost(_)) => return,
                Err(_) => telemetry::datagram_copy("dropped"),
            }
        }
    });
    tx
}

//! One WebTransport session as a [`Transport`]: the client's bidirectional
//! stream (4-byte big-endian length-prefixed frames), its datagrams, and the
//! CONNECT stream that carries the close capsule.
//!
//! Why not `h3_webtransport::server::WebTransportSession` (0.1.2, the newest):
//! it keeps the CONNECT stream private, so the server could never send
//! CLOSE_WEBTRANSPORT_SESSION and a browser saw every close code as a QUIC
//! error; it also buffers every stream a client opens in its own queues and
//! needs a task per session to read datagrams. The rest of WebTransport that
//! rtgate needs is a stream header and a datagram prefix (see `wire`); the
//! HTTP/3 handshake stays with `h3`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::{debug, info};

use super::capsule::{self, CapsuleReader};
use super::copies::Copies;
use super::datagrams::Datagrams;
use super::flow::Flow;
use super::inbound::{Event, Inbound};
use super::negotiate::Draft;
use super::wire;
use super::{H3Connection, H3RequestStream};
use crate::protocol::{CloseCode, Redundancy};
use crate::telemetry;
use crate::transport::{Channel, DirectSend, Incoming, Lane, Liveness, Transport, TransportError};

/// How long a closing session lets queued data reach the peer.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Streams a client may open beyond the protocol's before its connection
/// is closed (each one is refused as it comes).
const EXTRA_STREAMS_ALLOWED: u32 = 8;

/// Server-opened streams a session keeps at most, one per channel; the
/// least recently used one ends when another channel needs one.
const MAX_LANES: usize = 16;
/// A channel's stream ends after this long without a frame.
const LANE_IDLE: Duration = Duration::from_secs(30);
/// How often quiet streams are looked for (when frames are sent).
const LANE_SWEEP: Duration = Duration::from_secs(1);
/// How long opening a stream may wait for the client's stream credit; past
/// it the channel's frames use the bidirectional stream until it is quiet.
const OPEN_WAIT: Duration = Duration::from_millis(200);
/// Streams a session opens in its life at most; past it every channel uses
/// the bidirectional stream. Safari 26.4 stops accepting server-opened
/// streams after about 7,000 in a session (WebKit bug reports), so a long
/// session stays well under that.
const MAX_OPENED_LANES: u32 = 2_000;

/// Where one channel's frames go.
struct ChannelLane {
    /// Its own stream, or `None`: the bidirectional stream.
    stream: Option<quinn::SendStream>,
    /// The last frame sent on it.
    last: Instant,
}

#[path = "session_credit.rs"]
mod credit;

/// Read buffer a session starts with; it grows with the frames that come
/// and never holds more than the largest recent one.
const READ_BUFFER: usize = 256;

/// A WebTransport session.
pub(crate) struct WebTransportTransport {
    conn: quinn::Connection,
    /// The CONNECT stream's id, which names the session.
    session: u64,
    /// What the client sends: its stream, datagrams, streams, capsules.
    inbound: Inbound,
    /// The server's side of that stream: frames go straight to quinn's send
    /// buffer (no buffer of our own to keep while idle).
    writer: quinn::SendStream,
    /// The CONNECT stream: the close capsule goes there; the client's
    /// capsules or its end close the session.
    connect: H3RequestStream,
    /// Held: dropping the HTTP/3 connection closes the QUIC connection.
    _h3: H3Connection,
    /// QPACK streams the client opened after the handshake (held open:
    /// stopping a critical stream would be a connection error).
    late_qpack: Vec<quinn::RecvStream>,
    /// Streams refused so far.
    refused: u32,
    /// The stream of each channel with recent frames.
    lanes: HashMap<Channel, ChannelLane>,
    /// When quiet lanes were last looked for.
    swept: Instant,
    /// Streams opened so far (see [`MAX_OPENED_LANES`]).
    opened: u32,
    /// The draft the client speaks.
    draft: Draft,
    /// WebTransport flow control, where the client speaks it.
    flow: Flow,
    /// The client's capsules, reassembled from the CONNECT stream.
    capsules: CapsuleReader,
    /// Redundant datagram copies of channel frames, when asked for.
    copies: Copies,
}

impl WebTransportTransport {
    pub(super) fn new(
        conn: quinn::Connection,
        h3: H3Connection,
        connect: H3RequestStream,
        (send, recv): (quinn::SendStream, quinn::RecvStream),
        max_frame: usize,
        draft: Draft,
        flow: Flow,
    ) -> Self {
        // Frames larger than the limit are read whole (up to 4x) so they can
        // be answered with 413.
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(max_frame.saturating_mul(4))
            .new_codec();
        let session = connect.id().into_inner();
        let conn_for_copies = conn.clone();
        WebTransportTransport {
            inbound: Inbound::new(
                conn.clone(),
                FramedRead::with_capacity(recv, codec, READ_BUFFER),
            ),
            conn,
            session,
            writer: send,
            connect,
            _h3: h3,
            late_qpack: Vec::new(),
            refused: 0,
            lanes: HashMap::new(),
            swept: Instant::now(),
            opened: 0,
            draft,
            flow,
            capsules: CapsuleReader::default(),
            copies: Copies::new(conn_for_copies, session),
        }
    }

    /// The draft the client speaks.
    pub(crate) fn draft(&self) -> Draft {
        self.draft
    }

    /// Ends lanes quiet for [`LANE_IDLE`] (at most once per [`LANE_SWEEP`]),
    /// and with `room_for_one`, the least recently used ones beyond
    /// [`MAX_LANES`] - 1.
    fn retire_lanes(&mut self, now: Instant, room_for_one: bool) {
        if now.duration_since(self.swept) >= LANE_SWEEP {
            self.swept = now;
            self.lanes.retain(|_, lane| {
                let quiet = now.duration_since(lane.last) >= LANE_IDLE;
                if quiet && let Some(s) = &mut lane.stream {
                    let _ = s.finish();
                }
                !quiet
            });
        }
        while room_for_one && self.lanes.len() >= MAX_LANES {
            let Some(oldest) = self
                .lanes
                .iter()
                .min_by_key(|(_, l)| l.last)
                .map(|(c, _)| c.clone())
            else {
                break;
            };
            Transport::end_lane(self, &oldest);
        }
    }

    /// A new server-opened stream for a channel, or `None` when the client
    /// gives no stream credit (QUIC's in time, or WebTransport's), or the
    /// session opened its share.
    async fn open_lane(&mut self) -> Option<quinn::SendStream> {
        if self.opened >= MAX_OPENED_LANES {
            return None;
        }
        if let Err(tell) = self.flow.take_uni() {
            let _ = self.send_capsules(tell.into_iter().collect()).await;
            return None;
        }
        let mut s = tokio::time::timeout(OPEN_WAIT, self.conn.open_uni())
            .await
            .ok()?
            .ok()?;
        self.opened += 1;
        s.write_all(&wire::uni_header(self.session)).await.ok()?;
        Some(s)
    }

    /// Writes one stored frame of `channel` on the channel's own stream,
    /// opened when the channel first needs one; without stream credit, or
    /// once the client stopped that stream, on the session's stream.
    async fn write_in(
        &mut self,
        frame: Bytes,
        channel: &Channel,
        redundancy: Redundancy,
    ) -> Result<(), TransportError> {
        let copy = (redundancy != Redundancy::Off).then(|| frame.clone());
        self.write_on_lane(frame, channel).await?;
        if let Some(frame) = copy {
            self.copies.after(&frame, redundancy);
        }
        Ok(())
    }

    async fn write_on_lane(
        &mut self,
        frame: Bytes,
        channel: &Channel,
    ) -> Result<(), TransportError> {
        let now = Instant::now();
        if !self.lanes.contains_key(channel) {
            self.retire_lanes(now, true);
            let stream = self.open_lane().await;
            if stream.is_none() {
                debug!(%channel, "no stream credit; the channel uses the session's stream");
            }
            self.lanes
                .insert(channel.clone(), ChannelLane { stream, last: now });
        } else {
            self.retire_lanes(now, false);
        }
        self.data_credit(frame.len()).await?;
        let lane = self.lanes.get_mut(channel).expect("a lane was just made");
        lane.last = now;
        let Some(stream) = &mut lane.stream else {
            return write_frame(&mut self.writer, frame).await;
        };
        if write_frame(stream, frame.clone()).await.is_err() {
            // The client stopped this stream: the channel moves to the
            // session's stream (a stream per channel is an optimisation).
            lane.stream = None;
            return write_frame(&mut self.writer, frame).await;
        }
        Ok(())
    }

    /// The fan-out's side door into this session: its datagrams.
    pub(crate) fn datagrams(&self) -> Arc<dyn DirectSend> {
        Datagrams::new(self.conn.clone(), self.session)
    }

    /// Counts a refused stream; past the allowance the client is closed.
    fn refuse_one(&mut self) -> Result<(), TransportError> {
        self.refused += 1;
        if self.refused > EXTRA_STREAMS_ALLOWED {
            self.conn.close(
                wire::STREAM_CREATION_ERROR.into(),
                b"streams beyond the protocol's",
            );
            return Err(TransportError::Closed(format!(
                "the client opened {} streams the protocol does not use",
                self.refused
            )));
        }
        Ok(())
    }

    /// A unidirectional stream the client opened: late QPACK streams are
    /// held, anything else is refused.
    async fn client_uni(&mut self, mut recv: quinn::RecvStream) -> Result<(), TransportError> {
        let mut first = [0u8; 8];
        let kind = match tokio::time::timeout(CLOSE_LINGER, recv.read_exact(&mut first[..1])).await
        {
            Ok(Ok(())) => {
                let len = wire::varint_len(first[0]);
                match recv.read_exact(&mut first[1..len]).await {
                    Ok(()) => wire::take_varint(&mut &first[..len]),
                    Err(_) => None,
                }
            }
            _ => None,
        };
        if matches!(kind, Some(wire::QPACK_ENCODER | wire::QPACK_DECODER))
            && self.late_qpack.len() < 2
        {
            self.late_qpack.push(recv);
            return Ok(());
        }
        let _ = recv.stop(wire::STREAM_CREATION_ERROR.into());
        debug!(kind = ?kind, "refused a unidirectional stream");
        self.refuse_one()
    }
}

fn io(e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(e.to_string())
}

/// One length-prefixed frame, straight into quinn's send buffer.
async fn write_frame(s: &mut quinn::SendStream, frame: Bytes) -> Result<(), TransportError> {
    let len = u32::try_from(frame.len()).map_err(io)?.to_be_bytes();
    s.write_all_chunks(&mut [Bytes::copy_from_slice(&len), frame])
        .await
        .map_err(io)
}

impl Transport for WebTransportTransport {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        loop {
            // Cancel-safe: an event leaves its source only when it is
            // returned here, and each is handled before the next await.
            let event = poll_fn(|cx| self.inbound.poll_next(&mut self.connect, cx)).await;
            match event {
                Event::Frame(frame) => {
                    return match frame {
                        Some(Ok(b)) => {
                            if let Some(grant) = self.flow.on_read(b.len() as u64 + 4)
                                && let Err(e) = self.send_capsules(vec![grant]).await
                            {
                                return Some(Err(e));
                            }
                            Some(Ok(Incoming::Frame(b.freeze())))
                        }
                        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                            Some(Ok(Incoming::TooLarge(usize::MAX)))
                        }
                        Some(Err(e)) => Some(Err(TransportError::Closed(e.to_string()))),
                        None => None,
                    };
                }
                Event::Datagram(Ok(d)) => {
                    if let Some(p) = wire::datagram_payload(self.session, d) {
                        telemetry::datagram("in");
                        return Some(Ok(Incoming::Datagram(p)));
                    }
                }
                // The protocol has one client stream; more are refused
                // before they can buffer anything.
                Event::Bi(Ok((mut send, mut recv))) => {
                    let _ = recv.stop(wire::STREAM_CREATION_ERROR.into());
                    let _ = send.reset(wire::STREAM_CREATION_ERROR.into());
                    if let Err(e) = self.refuse_one() {
                        return Some(Err(e));
                    }
                }
                Event::Uni(Ok(recv)) => {
                    if let Err(e) = self.client_uni(recv).await {
                        return Some(Err(e));
                    }
                }
                Event::Datagram(Err(e)) | Event::Bi(Err(e)) | Event::Uni(Err(e)) => {
                    return Some(Err(TransportError::Closed(e.to_string())));
                }
                Event::Connect(Some(bytes)) => {
                    self.capsules.push(&bytes);
                    let got = match self.take_capsules() {
                        Ok(got) => got,
                        Err(e) => return Some(Err(e)),
                    };
                    if let Some((code, reason)) = got.closed {
                        debug!(code, reason, "the client closed the session");
                        return None;
                    }
                    if let Err(e) = self.send_capsules(got.replies).await {
                        return Some(Err(e));
                    }
                }
                // The client ended the session.
                Event::Connect(None) => return None,
            }
        }
    }

    async fn write(&mut self, frame: Bytes, lane: Lane<'_>) -> Result<(), TransportError> {
        match lane {
            Lane::Reliable => self.write_main(frame).await,
            Lane::Channel(channel, redundancy) => self.write_in(frame, channel, redundancy).await,
            Lane::Unreliable => {
                // quinn refuses a datagram that does not fit (or a peer that
                // takes none) without sending it: then the frame goes reliable.
                match self
                    .conn
                    .send_datagram(wire::datagram(self.session, &frame))
                {
                    Ok(()) => {
                        telemetry::datagram("out");
                        Ok(())
                    }
                    Err(quinn::SendDatagramError::ConnectionLost(e)) => {
                        Err(TransportError::Closed(e.to_string()))
                    }
                    Err(_) => self.write_main(frame).await,
                }
            }
        }
    }

    /// Ends the channel's stream.
    fn end_lane(&mut self, channel: &Channel) {
        if let Some(mut lane) = self.lanes.remove(channel)
            && let Some(s) = &mut lane.stream
        {
            let _ = s.finish();
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // quinn sends what was written as soon as congestion and flow
        // control allow; there is nothing of ours to flush.
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        // QUIC keep-alive and idle timeout notice a dead peer; the session
        // need not close quiet but live clients.
        Ok(Liveness::Transport)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        // The streams end first and their last frames (an error frame
        // before the close) are acknowledged, or the linger passes...
        let _ = self.writer.finish();
        let mut ending = vec![self.writer.stopped()];
        for (_, mut lane) in self.lanes.drain() {
            if let Some(s) = &mut lane.stream {
                let _ = s.finish();
                ending.push(s.stopped());
            }
        }
        let _ = tokio::time::timeout(CLOSE_LINGER, futures_util::future::join_all(ending)).await;
        // ...then the session closes with its code (the browser's
        // `WebTransport.closed` resolves with it), and the QUIC connection
        // once the client has closed it or the linger passes.
        let capsule = capsule::close(code.code().into(), reason);
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            self.connect.send_data(capsule).await?;
            self.connect.finish().await
        })
        .await;
        let _ = tokio::time::timeout(CLOSE_LINGER, self.conn.closed()).await;
        info!(code = code.code(), "closing webtransport session");
        self.conn.close(
            quinn::VarInt::from_u32(code.code().into()),
            reason.as_bytes(),
        );
    }
}

//! A WebSocket's TCP socket, shared by its session and the fan-out: the
//! session reads and writes it through tungstenite as usual, and while the
//! session sleeps, a volatile frame fanned out to it is framed and written
//! on the spot by the thread that fans it out ([`DirectWs`]), which spares
//! the session's task a wake per delivered frame.
//!
//! One atomic decides who may write: the session while it is awake, has
//! unflushed bytes, or owes the remainder of a direct write; the fan-out
//! only when none of those holds, for one non-blocking `writev`. A direct
//! write never interleaves with a frame of tungstenite's, and never
//! overtakes a frame that waits in the session's queue (the hub looks at the
//! queue first).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::model::{DirectSend, Sent, TransportKind};
use crate::telemetry;

/// The session is awake (set from the start until it first sleeps).
const AWAKE: u8 = 1;
/// A direct write is in progress.
const DIRECT: u8 = 2;
/// tungstenite wrote bytes that no completed flush has followed yet.
const DIRTY: u8 = 4;
/// The rest of a direct write waits in `spill` for the session to send.
const SPILL: u8 = 8;

struct Shared {
    tcp: TcpStream,
    state: AtomicU8,
    /// What a direct write could not write at once; the session's next
    /// write or flush sends it first.
    spill: Mutex<Vec<u8>>,
}

/// The socket as hyper and tungstenite see it.
pub(crate) struct SharedTcp(Arc<Shared>);

impl SharedTcp {
    /// Wraps an accepted connection.
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Self(Arc::new(Shared {
            tcp,
            state: AtomicU8::new(AWAKE),
            spill: Mutex::new(Vec::new()),
        }))
    }

    /// The fan-out's handle on this socket.
    pub(crate) fn direct(&self) -> DirectWs {
        DirectWs(self.0.clone())
    }

    /// One write of tungstenite's (`write` or `writev` on the socket): after
    /// the spill, and marking the socket as holding unflushed bytes.
    fn poll_session_write(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_spill(cx))?;
        self.0.state.fetch_or(DIRTY, Ordering::AcqRel);
        loop {
            ready!(self.0.tcp.poll_write_ready(cx))?;
            match write(&self.0.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// Writes the spill, if any, before anything else goes out.
    fn poll_spill(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.0.state.load(Ordering::Acquire) & SPILL == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut spill = self.0.spill.lock().unwrap_or_else(|p| p.into_inner());
        while !spill.is_empty() {
            ready!(self.0.tcp.poll_write_ready(cx))?;
            match self.0.tcp.try_write(&spill) {
                Ok(n) => drop(spill.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        *spill = Vec::new();
        self.0.state.fetch_and(!SPILL, Ordering::Release);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.tcp.poll_read_ready(cx))?;
            match self.0.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_session_write(cx, |tcp| tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_session_write(cx, |tcp| tcp.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // tungstenite flushes its socket only once its own buffer is out.
        ready!(self.poll_spill(cx))?;
        self.0.state.fetch_and(!DIRTY, Ordering::AcqRel);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_spill(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write))
    }
}

/// The fan-out's (and the session's) handle on a WebSocket's socket.
#[derive(Clone)]
pub(crate) struct DirectWs(Arc<Shared>);

impl std::fmt::Debug for DirectWs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl DirectWs {
    /// What the hub calls to write a volatile frame directly.
    pub(crate) fn sender(&self) -> Arc<dyn DirectSend> {
        self.0.clone()
    }

    /// The session goes to sleep, everything it wrote flushed: frames may
    /// be written directly until it wakes.
    pub(crate) fn sleep(&self) {
        self.0.state.fetch_and(!AWAKE, Ordering::AcqRel);
    }

    /// The session woke: no direct write starts until it sleeps again, and
    /// one in progress (a single non-blocking `writev`) is waited out.
    /// True when a direct write's remainder waits to be flushed.
    pub(crate) fn wake(&self) -> bool {
        let mut state = self.0.state.fetch_or(AWAKE, Ordering::AcqRel);
        let mut spins = 0u32;
        while state & DIRECT != 0 {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The writer's thread may share this core.
                std::thread::yield_now();
            }
            state = self.0.state.load(Ordering::Acquire);
        }
        state & SPILL != 0
    }
}

/// The header of an unmasked final text frame of `len` bytes, as
/// tungstenite writes it, and its length.
fn text_header(len: usize) -> ([u8; 14], usize) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut out = [0u8; 14];
    let n = header.len(len as u64);
    header
        .format(len as u64, &mut &mut out[..])
        .expect("a frame header fits in 14 bytes");
    (out, n)
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTcp")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl DirectSend for Shared {
    fn ordered(&self) -> bool {
        true
    }

    fn send_volatile(&self, payload: &Bytes) -> Sent {
        if self
            .state
            .compare_exchange(0, DIRECT, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Sent::No;
        }
        let (header, hlen) = text_header(payload.len());
        let header = &header[..hlen];
        let total = hlen + payload.len();
        let written = self
            .tcp
            .try_write_vectored(&[IoSlice::new(header), IoSlice::new(payload)]);
        let sent = match written {
            Ok(n) if n == total => Sent::Yes,
            Ok(n) => {
                // Part of the frame is on the wire: the rest must follow
                // before any other byte, so the session sends it.
                let mut rest = Vec::with_capacity(total - n);
                if n < hlen {
                    rest.extend_from_slice(&header[n..]);
                    rest.extend_from_slice(payload);
                } else {
                    rest.extend_from_slice(&payload[n - hlen..]);
                }
                *self.spill.lock().unwrap_or_else(|p| p.into_inner()) = rest;
                self.state.fetch_or(SPILL, Ordering::AcqRel);
                Sent::Partly
            }
            // A full socket or a broken one: the queue decides (it waits,
            // or the session finds the error).
            Err(_) => Sent::No,
        };
        if sent != Sent::No {
            telemetry::session_metrics(TransportKind::WebSocket)
                .frames_out
                .increment(1);
        }
        self.state.fetch_and(!DIRECT, Ordering::AcqRel);
        sent
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the server's end wrapped, the client's plain.
    async fn pair() -> (SharedTcp, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (SharedTcp::new(server), client)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let (h, n) = text_header(payload.len());
        [&h[..n], payload].concat()
    }

    #[test]
    fn headers_are_rfc_6455_text_frames() {
        assert_eq!(&text_header(5).0[..2], &[0x81, 5]);
        assert_eq!(&text_header(126).0[..4], &[0x81, 126, 0, 126]);
        assert_eq!(text_header(70_000).1, 10);
        assert_eq!(&text_header(70_000).0[2..10], &70_000u64.to_be_bytes());
    }

    #[tokio::test]
    async fn only_a_sleeping_session_with_nothing_unflushed_is_written_to_directly() {
        let (mut s, mut client) = pair().await;
        let d = s.direct().sender();
        let hello = Bytes::from_static(b"{\"msgBody\":1}");
        assert_eq!(d.send_volatile(&hello), Sent::No, "awake from the start");
        s.direct().sleep();
        assert_eq!(d.send_volatile(&hello), Sent::Yes);
        let mut got = vec![0u8; frame(&hello).len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, frame(&hello));
        // Awake, then asleep with bytes written and not flushed.
        assert!(!s.direct().wake());
        assert_eq!(d.send_volatile(&hello), Sent::No);
        s.write_all(b"own").await.unwrap();
        s.direct().sleep();
        assert_eq!(d.send_volatile(&hello), Sent::No, "unflushed bytes");
        assert!(!s.direct().wake());
        s.flush().await.unwrap();
        s.direct().sleep();
        assert_eq!(d.send_volatile(&hello), Sent::Yes);
        let mut got = vec![0u8; 3 + frame(&hello).len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [&b"own"[..], &frame(&hello)].concat());
    }

    #[tokio::test]
    async fn the_rest_of_a_partial_direct_write_goes_out_before_the_sessions_bytes() {
        let (mut s, mut client) = pair().await;
        let d = s.direct().sender();
        s.direct().sleep();
        // Larger than what the socket takes while the client does not read.
        let big = Bytes::from(vec![b'x'; 16 << 20]);
        assert_eq!(d.send_volatile(&big), Sent::Partly);
        let small = Bytes::from_static(b"{}");
        assert_eq!(d.send_volatile(&small), Sent::No, "the rest waits");
        assert!(s.direct().wake(), "the session is told to flush");
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        s.write_all(b"after").await.unwrap();
        s.flush().await.unwrap();
        s.shutdown().await.unwrap();
        let all = reader.await.unwrap();
        assert_eq!(all.len(), frame(&big).len() + 5);
        assert!(all == [&frame(&big)[..], b"after"].concat());
        s.direct().sleep();
        assert_eq!(d.send_volatile(&small), Sent::No, "the peer is gone");
    }
}

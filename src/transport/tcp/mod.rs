//! A WebSocket's TCP socket, shared by its session and the fan-out. hyper
//! reads the HTTP request and writes its answer through it
//! ([`AsyncRead`]/[`AsyncWrite`]); once upgraded, tungstenite reads frames
//! from it as from a plain non-blocking socket ([`io::Read`]: `WouldBlock`
//! until the socket is readable, which the session waits for in
//! [`SharedTcp::poll_readable`]), and the session's frames are appended
//! whole to its buffer ([`SharedTcp::push`]). The fan-out hands a volatile
//! frame to a session ([`SharedTcp::sender`]) without waking its task: the frame is appended to the socket's one ordered buffer and
//! written, with every other frame that reached the socket in the same turn
//! of the scheduler, by one `write` per socket ([`cork`](super::cork)). Frames that
//! arrive together (publishers in step, a busy room) leave in one segment.
//!
//! Order: bytes reach the wire in the order they were accepted. A write of
//! the session's is whole or nothing (what the socket does not take at once
//! is kept in the buffer), so a fan-out frame never lands inside one of
//! tungstenite's. A frame never overtakes one in the session's queue: the
//! hub hands frames over only while that queue is empty and not being
//! written.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::cork::{self, Corked};
use crate::caps::ConnPermit;
use crate::model::{DirectSend, Sent, TransportKind};
use crate::telemetry;

/// Bytes a socket may hold for the fan-out beyond what its peer has taken;
/// past it, frames go through the session's queue (whose bound closes a
/// reader that stopped).
const DIRECT_LIMIT: usize = 64 * 1024;
/// A drained buffer larger than this gives its memory back.
const KEEP_BYTES: usize = 4 * 1024;

struct Shared {
    tcp: TcpStream,
    out: Mutex<Out>,
    /// The session's reads register here: woken when the fan-out's flush
    /// left bytes that only a wait for the socket can send (the session's
    /// next read writes them first, waiting for the socket if it must).
    reader: AtomicWaker,
    /// Itself, for the cork list (taken only by a turn's first frame).
    me: Weak<Shared>,
    /// The connection's place under the caps, freed with the socket.
    _permit: Option<ConnPermit>,
}

/// What waits to be written, and who is to write it.
#[derive(Default)]
struct Out {
    /// Bytes accepted for the peer and not yet written, in order.
    buf: Vec<u8>,
    /// In the cork list: its next flush writes `buf`.
    corked: bool,
    /// The socket failed or was aborted: nothing more is accepted.
    dead: bool,
}

impl Shared {
    fn out(&self) -> MutexGuard<'_, Out> {
        // A panic while holding the lock leaves whole bytes behind.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One `send` of `buf`, straight to the socket: a fan-out writes to
    /// each of a room's sockets in turn, and tokio's readiness for each (a
    /// cache line of its own, cold by then) cost a miss per write. Only a
    /// full socket goes through tokio, whose `try_write` then clears the
    /// readiness it saw, so that a wait for the socket waits for its next
    /// writable edge.
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.tcp);
        match sock.send_with_flags(buf, libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.try_write(buf),
            r => r,
        }
    }

    /// Writes as much of the buffer as the socket takes now: true when it
    /// is empty.
    fn write_out(&self, out: &mut Out) -> io::Result<bool> {
        while !out.buf.is_empty() {
            match self.send(&out.buf) {
                Ok(n) => drop(out.buf.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    out.dead = true;
                    out.buf = Vec::new();
                    return Err(e);
                }
            }
        }
        if out.buf.capacity() > KEEP_BYTES {
            out.buf = Vec::new();
        }
        Ok(true)
    }

    /// Writes the buffer out, waiting for the socket as needed; `release`
    /// gives a drained buffer's memory back (the session's flush: a session
    /// writes in bursts, a reply or a page of replay, and then idles).
    fn poll_write_out(&self, cx: &mut Context<'_>, release: bool) -> Poll<io::Result<()>> {
        loop {
            {
                let mut out = self.out();
                if out.dead {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                if self.write_out(&mut out)? {
                    if release {
                        out.buf = Vec::new();
                    }
                    return Poll::Ready(Ok(()));
                }
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }
}

/// The socket as hyper and tungstenite see it.
pub(crate) struct SharedTcp(Arc<Shared>);

impl SharedTcp {
    /// Wraps an accepted connection, with its place under the caps.
    pub(crate) fn new(tcp: TcpStream, permit: Option<ConnPermit>) -> Self {
        Self(Arc::new_cyclic(|me| Shared {
            tcp,
            out: Mutex::new(Out::default()),
            reader: AtomicWaker::new(),
            me: me.clone(),
            _permit: permit,
        }))
    }

    /// The fan-out's handle on this socket: what the hub calls to hand a
    /// volatile frame over.
    pub(crate) fn sender(&self) -> Arc<dyn DirectSend> {
        self.0.clone()
    }

    /// Ready when the socket has bytes to read (or has failed); meanwhile
    /// what the fan-out left in the buffer is written, waiting for the
    /// socket as needed. A read that returned `WouldBlock` waits here.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.reader.register(cx.waker());
        if let Poll::Ready(Err(e)) = self.0.poll_write_out(cx, false) {
            return Poll::Ready(Err(e));
        }
        self.0.tcp.poll_read_ready(cx)
    }

    /// Writes everything accepted so far, waiting for the socket as needed,
    /// and gives the drained buffer's memory back (a session writes in
    /// bursts, a reply or a page of replay, and then idles).
    pub(crate) fn poll_flush_out(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_out(cx, true)
    }

    /// Appends one whole frame of the session's (final, unmasked) behind
    /// what the buffer holds, for the session's next flush to write: the
    /// session's frames take the buffer the fan-out's take, not a second
    /// one in tungstenite that an idle connection would keep.
    pub(crate) fn push(&self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut out = self.0.out();
        if out.dead {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let (header, hlen) = frame_header(opcode, payload.len());
        out.buf.reserve(hlen + payload.len());
        out.buf.extend_from_slice(&header[..hlen]);
        out.buf.extend_from_slice(payload);
        Ok(())
    }

    /// Gives up on the peer: what waits is dropped and the connection is
    /// reset when the socket closes (no FIN queued behind megabytes the
    /// peer will never read), for a reader that stopped.
    pub(crate) fn abort(&self) {
        let mut out = self.0.out();
        out.dead = true;
        out.buf = Vec::new();
        let sock = socket2::SockRef::from(&self.0.tcp);
        let _ = sock.set_linger(Some(Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Read);
    }

    /// One write of the session's (hyper's, tungstenite's), behind what the
    /// buffer holds. It is taken whole or not at all: a part the socket
    /// does not take is kept in the buffer, so nothing can come between.
    fn poll_session_write(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            {
                let mut out = self.0.out();
                if out.dead {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                if self.0.write_out(&mut out)? {
                    match self.0.tcp.try_write_vectored(bufs) {
                        Ok(n) => {
                            if n < total {
                                keep_rest(&mut out.buf, bufs, n);
                            }
                            return Poll::Ready(Ok(total));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            out.dead = true;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            }
            ready!(self.0.tcp.poll_write_ready(cx))?;
        }
    }
}

/// Appends what follows the first `written` bytes of `bufs` to `buf`.
fn keep_rest(buf: &mut Vec<u8>, bufs: &[IoSlice<'_>], mut written: usize) {
    for b in bufs {
        if written >= b.len() {
            written -= b.len();
            continue;
        }
        buf.extend_from_slice(&b[written..]);
        written = 0;
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.reader.register(cx.waker());
        // Bytes the fan-out could not write: the session's task sends them,
        // waiting for the socket with its reader's waker.
        if let Poll::Ready(Err(e)) = self.0.poll_write_out(cx, false) {
            return Poll::Ready(Err(e));
        }
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
        self.poll_session_write(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_session_write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_out(cx, true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.0.poll_write_out(cx, true))?;
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write))
    }
}

/// tungstenite's side once upgraded: reads what the socket holds now
/// (`WouldBlock` when nothing: the session waits in
/// [`SharedTcp::poll_readable`]).
impl io::Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.tcp.try_read(buf)
    }
}

/// What tungstenite writes itself (pongs, the close) is appended whole to
/// the buffer, behind every frame accepted before it; the session's flush
/// (or its next read) writes it. Never `WouldBlock`: tungstenite writes
/// only replies, a frame or two, and the session's flush has a deadline.
impl io::Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self.0.out();
        if out.dead {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        out.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Writes what the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        let mut out = self.0.out();
        self.0.write_out(&mut out).map(|_| ())
    }
}

/// The header of an unmasked final frame of `len` bytes, as tungstenite
/// writes it, and its length.
fn frame_header(opcode: OpCode, len: usize) -> ([u8; 14], usize) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = [0u8; 14];
    let n = header.len(len as u64);
    header
        .format(len as u64, &mut &mut out[..])
        .expect("a frame header fits in 14 bytes");
    (out, n)
}

impl Corked for Shared {
    /// Writes what the fan-out left; bytes the socket does not take are
    /// left to the session, which is woken for them.
    fn flush_corked(&self) {
        let mut out = self.out();
        out.corked = false;
        if matches!(self.write_out(&mut out), Ok(false)) {
            drop(out);
            self.reader.wake();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = self.out();
        f.debug_struct("SharedTcp")
            .field("buffered", &out.buf.len())
            .field("corked", &out.corked)
            .finish()
    }
}

impl DirectSend for Shared {
    fn ordered(&self) -> bool {
        true
    }

    fn send_volatile(&self, payload: &Bytes) -> Sent {
        let mut out = self.out();
        if out.dead || out.buf.len() > DIRECT_LIMIT {
            return Sent::No;
        }
        let (header, hlen) = frame_header(OpCode::Data(Data::Text), payload.len());
        out.buf.extend_from_slice(&header[..hlen]);
        out.buf.extend_from_slice(payload);
        let first = !out.corked;
        out.corked = true;
        drop(out);
        cork::handed(first, &self.me);
        telemetry::session_metrics(TransportKind::WebSocket)
            .frames_out
            .increment(1);
        Sent::Yes
    }
}

#[cfg(test)]
mod tests;

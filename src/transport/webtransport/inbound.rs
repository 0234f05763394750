//! What a WebTransport session receives, polled only when it may have
//! something: the client's stream, its datagrams, streams it opens and the
//! CONNECT stream.
//!
//! The session's task wakes for every frame it sends (its outbound queue),
//! and a `select!` over fresh futures would poll all of these again each
//! time, each poll locking the QUIC connection's state. Here the sources are
//! polled with a [`WakeFlag`]: a wake that did not come from them finds the
//! flag down and returns at once. The futures that wait for a datagram or a new stream are kept
//! between polls, so their registration with quinn survives.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::H3RequestStream;
use crate::wake::WakeFlag;

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, quinn::ConnectionError>> + Send>>;

/// Something the client sent.
pub(super) enum Event {
    /// A frame (or a read error) from the client's stream; `None` at its end.
    Frame(Option<std::io::Result<BytesMut>>),
    /// A datagram, or the connection's end.
    Datagram(Result<Bytes, quinn::ConnectionError>),
    /// A bidirectional stream the client opened.
    Bi(Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>),
    /// A unidirectional stream the client opened.
    Uni(Result<quinn::RecvStream, quinn::ConnectionError>),
    /// Data on the CONNECT stream (a capsule), or its end (`None`).
    Connect(Option<Bytes>),
}

/// The receiving side of a session.
pub(super) struct Inbound {
    conn: quinn::Connection,
    reader: FramedRead<quinn::RecvStream, LengthDelimitedCodec>,
    flag: WakeFlag,
    datagram: Option<Pending<Bytes>>,
    bi: Option<Pending<(quinn::SendStream, quinn::RecvStream)>>,
    uni: Option<Pending<quinn::RecvStream>>,
}

impl Inbound {
    pub(super) fn new(
        conn: quinn::Connection,
        reader: FramedRead<quinn::RecvStream, LengthDelimitedCodec>,
    ) -> Self {
        Self {
            conn,
            reader,
            flag: WakeFlag::new(),
            datagram: None,
            bi: None,
            uni: None,
        }
    }

    /// The next event. Cancel-safe: an event is taken from its source only
    /// when it is returned.
    pub(super) fn poll_next(
        &mut self,
        connect: &mut H3RequestStream,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        if !self.flag.take(cx.waker()) {
            return Poll::Pending;
        }
        let event = self.poll_sources(connect);
        if event.is_ready() {
            // Another source may be ready too: look again next time.
            self.flag.raise();
        }
        event
    }

    fn poll_sources(&mut self, connect: &mut H3RequestStream) -> Poll<Event> {
        let mut cx = Context::from_waker(self.flag.waker());
        if let Poll::Ready(f) = Pin::new(&mut self.reader).poll_next(&mut cx) {
            return Poll::Ready(Event::Frame(f));
        }
        let conn = &self.conn;
        if let Poll::Ready(d) = poll_kept(&mut self.datagram, &mut cx, || {
            let c = conn.clone();
            Box::pin(async move { c.read_datagram().await })
        }) {
            return Poll::Ready(Event::Datagram(d));
        }
        if let Poll::Ready(s) = poll_kept(&mut self.bi, &mut cx, || {
            let c = conn.clone();
            Box::pin(async move { c.accept_bi().await })
        }) {
            return Poll::Ready(Event::Bi(s));
        }
        if let Poll::Ready(s) = poll_kept(&mut self.uni, &mut cx, || {
            let c = conn.clone();
            Box::pin(async move { c.accept_uni().await })
        }) {
            return Poll::Ready(Event::Uni(s));
        }
        match connect.poll_recv_data(&mut cx) {
            Poll::Ready(Ok(Some(mut data))) => {
                Poll::Ready(Event::Connect(Some(data.copy_to_bytes(data.remaining()))))
            }
            Poll::Ready(Ok(None) | Err(_)) => Poll::Ready(Event::Connect(None)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Polls the kept future in `slot` (made by `make` when there is none) and
/// clears the slot when it completes.
fn poll_kept<T>(
    slot: &mut Option<Pending<T>>,
    cx: &mut Context<'_>,
    make: impl FnOnce() -> Pending<T>,
) -> Poll<Result<T, quinn::ConnectionError>> {
    let fut = slot.get_or_insert_with(make);
    let out = fut.as_mut().poll(cx);
    if out.is_ready() {
        *slot = None;
    }
    out
}

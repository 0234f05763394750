//! The HTTP fallback transport (PROTOCOL.md section 2): Server-Sent Events
//! down (`GET /sse`), `POST /sse/{sessionId}` up, for networks that pass
//! neither UDP nor WebSocket upgrades. A session is a [`SseTransport`]
//! like any other: frames POSTed to it are its inbound frames; what it
//! writes becomes events (`id: <session>/<n>`, `data: <frame>`), kept in a
//! short ring so an `EventSource` that reconnects with `Last-Event-ID`
//! gets what it missed. Heartbeats are SSE comments; a close is an
//! `event: close` with the code and reason.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;

use super::{Channel, Incoming, Lane, Liveness, Transport, TransportError};
use crate::auth::constant_time_eq;
use crate::protocol::CloseCode;

/// Events kept for a reconnecting `EventSource`, at most.
const RING: usize = 512;
/// Bytes of events kept for it, at most (a busy room fills the count
/// with large events; this bounds what an SSE session holds).
const RING_BYTES: usize = 64 * 1024;
/// Events waiting for the response body before a write waits.
const STREAM_QUEUE: usize = 64;
/// POSTed frames waiting for the session before a POST is refused (429).
pub(crate) const INBOUND_QUEUE: usize = 256;

/// The node's SSE sessions, by id.
#[derive(Default)]
pub(crate) struct SseSessions {
    by_id: DashMap<String, Arc<Shared>>,
}

/// What the HTTP handlers and the session share.
pub(crate) struct Shared {
    /// The session's id (in the first event and the POST path).
    pub(crate) id: String,
    /// The secret a POST must carry (`X-Rtgate-Post-Token`).
    token: String,
    /// The secret in every event's id, which a reconnect's `Last-Event-ID`
    /// must carry: knowing the session's id (it is in POST URLs, which
    /// proxies log) is not enough to read its events.
    resume: String,
    /// Frames are MessagePack: base64 in events, raw in POSTs.
    pub(crate) binary: bool,
    /// POSTed frames, to the session.
    inbound: mpsc::Sender<Bytes>,
    out: Mutex<Out>,
}

/// The session's side of its event stream.
struct Out {
    /// The next event's number.
    next: u64,
    /// The last events, for a reconnect.
    ring: VecDeque<(u64, Bytes)>,
    /// Their bytes.
    ring_bytes: usize,
    /// The response body now attached, if any.
    stream: Option<mpsc::Sender<Bytes>>,
    /// Closed: no more events, no reattaching.
    closed: bool,
}

/// Why a POST was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostError {
    /// No such session (it ended, or never was).
    Unknown,
    /// The token does not match.
    Forbidden,
    /// The session has too many frames waiting.
    Busy,
}

/// Why a stream could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeError {
    /// No such session, or it is closed: start a new one.
    Unknown,
    /// The events after that id are no longer kept: start a new one and
    /// resume with `since`.
    TooOld,
}

impl SseSessions {
    /// A new session: its transport, and the shared state whose stream the
    /// handler attaches.
    /// `binary`: the session's frames are MessagePack (base64 in `data:`,
    /// one raw frame per POST).
    pub(crate) fn open(
        self: &Arc<Self>,
        max_frame: usize,
        binary: bool,
    ) -> (SseTransport, Arc<Shared>) {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let shared = Arc::new(Shared {
            id: uuid::Uuid::new_v4().simple().to_string(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            resume: uuid::Uuid::new_v4().simple().to_string(),
            binary,
            inbound: tx,
            out: Mutex::new(Out {
                next: 1,
                ring: VecDeque::new(),
                ring_bytes: 0,
                stream: None,
                closed: false,
            }),
        });
        self.by_id.insert(shared.id.clone(), shared.clone());
        let t = SseTransport {
            shared: shared.clone(),
            inbound: rx,
            sessions: self.clone(),
            max_frame,
        };
        (t, shared)
    }

    /// Whether a session's frames are MessagePack (false when unknown).
    pub(crate) fn is_binary(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|s| s.binary)
    }

    /// Hands POSTed frames to a session.
    pub(crate) fn post(&self, id: &str, token: &str, frames: Vec<Bytes>) -> Result<(), PostError> {
        let s = self.by_id.get(id).ok_or(PostError::Unknown)?.clone();
        if !constant_time_eq(s.token.as_bytes(), token.as_bytes()) {
            return Err(PostError::Forbidden);
        }
        if s.inbound.capacity() < frames.len() {
            return Err(PostError::Busy);
        }
        for f in frames {
            s.inbound.try_send(f).map_err(|_| PostError::Busy)?;
        }
        Ok(())
    }

    /// Reattaches a reconnecting `EventSource` (`Last-Event-ID:
    /// <session>.<secret>/<n>`): the events after `n` first, then live ones.
    pub(crate) fn resume(
        &self,
        last_event_id: &str,
    ) -> Result<(Arc<Shared>, mpsc::Receiver<Bytes>), ResumeError> {
        let (key, n) = last_event_id.rsplit_once('/').ok_or(ResumeError::Unknown)?;
        let (id, secret) = key.split_once('.').ok_or(ResumeError::Unknown)?;
        let n: u64 = n.parse().map_err(|_| ResumeError::Unknown)?;
        let s = self.by_id.get(id).ok_or(ResumeError::Unknown)?.clone();
        if !constant_time_eq(s.resume.as_bytes(), secret.as_bytes()) {
            return Err(ResumeError::Unknown);
        }
        let rx = s.attach(Some(n))?;
        Ok((s, rx))
    }
}

impl Shared {
    /// Attaches a new response body (replacing an older one), sending it
    /// the kept events after `after` first.
    pub(crate) fn attach(&self, after: Option<u64>) -> Result<mpsc::Receiver<Bytes>, ResumeError> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE + RING);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if out.closed {
            return Err(ResumeError::Unknown);
        }
        if let Some(after) = after {
            let oldest = out.ring.front().map_or(out.next, |(n, _)| *n);
            if after + 1 < oldest {
                return Err(ResumeError::TooOld);
            }
            for (_, e) in out.ring.iter().filter(|(n, _)| *n > after) {
                let _ = tx.try_send(e.clone());
            }
        }
        out.stream = Some(tx);
        Ok(rx)
    }

    /// The first event of a new session: its id and POST token.
    pub(crate) fn hello(&self) -> Bytes {
        let data = serde_json::json!({"sessionId": self.id, "postToken": self.token});
        Bytes::from(format!("event: session\ndata: {data}\n\n"))
    }
}

/// One SSE session, as the session driver sees it.
pub(crate) struct SseTransport {
    shared: Arc<Shared>,
    inbound: mpsc::Receiver<Bytes>,
    sessions: Arc<SseSessions>,
    max_frame: usize,
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.sessions.by_id.remove(&self.shared.id);
    }
}

/// `data:` lines of a frame (a frame holds no newline: JSON escapes them;
/// split anyway, as SSE wants).
fn event(id: &str, resume: &str, n: u64, frame: &[u8]) -> Bytes {
    let mut e = Vec::with_capacity(frame.len() + id.len() + resume.len() + 32);
    e.extend_from_slice(format!("id: {id}.{resume}/{n}\n").as_bytes());
    for line in frame.split(|b| *b == b'\n') {
        e.extend_from_slice(b"data: ");
        e.extend_from_slice(line);
        e.push(b'\n');
    }
    e.push(b'\n');
    Bytes::from(e)
}

impl Transport for SseTransport {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        let f = self.inbound.recv().await?;
        Some(Ok(match f.len() > self.max_frame {
            true => Incoming::TooLarge(f.len()),
            false => Incoming::Frame(f),
        }))
    }

    async fn write(&mut self, frame: Bytes, _lane: Lane<'_>) -> Result<(), TransportError> {
        let stream = {
            let mut out = self.shared.out.lock().unwrap_or_else(|p| p.into_inner());
            let n = out.next;
            out.next += 1;
            let e = match self.shared.binary && frame != crate::protocol::PONG {
                true => {
                    use base64::Engine;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&frame);
                    event(&self.shared.id, &self.shared.resume, n, b64.as_bytes())
                }
                false => event(&self.shared.id, &self.shared.resume, n, &frame),
            };
            out.ring_bytes += e.len();
            out.ring.push_back((n, e.clone()));
            while out.ring.len() > RING || (out.ring_bytes > RING_BYTES && out.ring.len() > 1) {
                if let Some((_, old)) = out.ring.pop_front() {
                    out.ring_bytes -= old.len();
                }
            }
            out.stream.clone().map(|s| (s, e))
        };
        // Detached (the EventSource is reconnecting): kept in the ring.
        if let Some((s, e)) = stream
            && s.send(e).await.is_err()
        {
            let mut out = self.shared.out.lock().unwrap_or_else(|p| p.into_inner());
            if out.stream.as_ref().is_some_and(|x| x.same_channel(&s)) {
                out.stream = None;
            }
        }
        Ok(())
    }

    fn end_lane(&mut self, _channel: &Channel) {}

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<Liveness, TransportError> {
        let stream = self
            .shared
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stream
            .clone();
        if let Some(s) = stream {
            let _ = s.try_send(Bytes::from_static(b": heartbeat\n\n"));
        }
        Ok(Liveness::Session)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let data = serde_json::json!({"code": code.code(), "reason": reason});
        let stream = {
            let mut out = self.shared.out.lock().unwrap_or_else(|p| p.into_inner());
            out.closed = true;
            out.stream.take()
        };
        if let Some(s) = stream {
            let e = Bytes::from(format!("event: close\ndata: {data}\n\n"));
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.send(e)).await;
        }
        self.sessions.by_id.remove(&self.shared.id);
    }
}

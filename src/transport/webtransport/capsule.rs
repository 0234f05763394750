//! The capsules a WebTransport session exchanges on its CONNECT stream
//! (RFC 9297 capsule framing): the close capsule of every draft, and the
//! flow-control capsules of the drafts that have them (draft-13 and later:
//! `WT_MAX_DATA`, `WT_MAX_STREAMS`, `WT_DATA_BLOCKED`,
//! `WT_STREAMS_BLOCKED`). Capsules may arrive split across reads, so the
//! client's are read through a [`CapsuleReader`]; unknown ones are skipped.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::wire::{put, take_varint};

/// CLOSE_WEBTRANSPORT_SESSION (`WT_CLOSE_SESSION` in draft-15 and later).
const CLOSE_SESSION: u64 = 0x2843;
/// DRAIN_WEBTRANSPORT_SESSION.
const DRAIN_SESSION: u64 = 0x78ae;
const MAX_DATA: u64 = 0x190B_4D3D;
const MAX_STREAMS_BIDI: u64 = 0x190B_4D3F;
const MAX_STREAMS_UNI: u64 = 0x190B_4D40;
const DATA_BLOCKED: u64 = 0x190B_4D41;
const STREAMS_BLOCKED_BIDI: u64 = 0x190B_4D43;
const STREAMS_BLOCKED_UNI: u64 = 0x190B_4D44;

/// Longest close message the capsule may carry, in bytes.
const CLOSE_MESSAGE_MAX: usize = 1024;
/// Longest capsule a client may send: a close capsule with its message, and
/// room to spare. A longer one is a protocol error.
pub(super) const CAPSULE_MAX: usize = 4096;

/// A capsule from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Capsule {
    /// The client closes the session with a code and a reason.
    Close(u32, String),
    /// The client asks that the session end soon (nothing to do: the
    /// client closes it when it is ready).
    Drain,
    /// The client's limit on the bytes the server sends on the session's
    /// streams.
    MaxData(u64),
    /// The client's limit on the unidirectional streams the server opens.
    MaxStreamsUni(u64),
    /// The client's limit on bidirectional streams (the server opens none).
    MaxStreamsBidi(u64),
    /// The client is blocked at this data limit of ours.
    DataBlocked(u64),
    /// The client is blocked at this stream limit of ours.
    StreamsBlocked(u64),
    /// A capsule type rtgate does not use (ignored, as RFC 9297 says).
    Unknown(u64),
}

/// Why the client's capsules cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum CapsuleError {
    /// A capsule longer than [`CAPSULE_MAX`].
    #[error("a capsule of {0} bytes (at most {CAPSULE_MAX})")]
    TooLong(u64),
    /// A close capsule without its 4-byte code, or a flow-control capsule
    /// whose value is not one varint.
    #[error("a malformed capsule of type {0:#x}")]
    Malformed(u64),
}

/// Reassembles the client's capsules from the CONNECT stream's data.
#[derive(Debug, Default)]
pub(super) struct CapsuleReader {
    buf: BytesMut,
}

impl CapsuleReader {
    /// Adds data read from the CONNECT stream.
    pub(super) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole capsule, `Ok(None)` while one is incomplete.
    pub(super) fn next_capsule(&mut self) -> Result<Option<Capsule>, CapsuleError> {
        let mut peek = &self.buf[..];
        let (Some(kind), Some(len)) = (take_varint(&mut peek), take_varint(&mut peek)) else {
            return Ok(None);
        };
        if len > CAPSULE_MAX as u64 {
            return Err(CapsuleError::TooLong(len));
        }
        let len = len as usize;
        if peek.len() < len {
            return Ok(None);
        }
        let head = self.buf.len() - peek.len();
        self.buf.advance(head);
        let body = self.buf.split_to(len).freeze();
        parse(kind, body).map(Some)
    }
}

fn parse(kind: u64, body: Bytes) -> Result<Capsule, CapsuleError> {
    let value = |mut b: Bytes| match take_varint(&mut b) {
        Some(v) if b.is_empty() => Ok(v),
        _ => Err(CapsuleError::Malformed(kind)),
    };
    Ok(match kind {
        CLOSE_SESSION => {
            if body.len() < 4 {
                return Err(CapsuleError::Malformed(kind));
            }
            let code = u32::from_be_bytes(body[..4].try_into().expect("four bytes"));
            Capsule::Close(code, String::from_utf8_lossy(&body[4..]).into_owned())
        }
        DRAIN_SESSION => Capsule::Drain,
        MAX_DATA => Capsule::MaxData(value(body)?),
        MAX_STREAMS_BIDI => Capsule::MaxStreamsBidi(value(body)?),
        MAX_STREAMS_UNI => Capsule::MaxStreamsUni(value(body)?),
        DATA_BLOCKED => Capsule::DataBlocked(value(body)?),
        STREAMS_BLOCKED_BIDI | STREAMS_BLOCKED_UNI => Capsule::StreamsBlocked(value(body)?),
        other => Capsule::Unknown(other),
    })
}

fn with_value(kind: u64, v: u64) -> Bytes {
    let mut body = BytesMut::with_capacity(8);
    put(&mut body, v);
    let mut b = BytesMut::with_capacity(16);
    put(&mut b, kind);
    put(&mut b, body.len() as u64);
    b.put_slice(&body);
    b.freeze()
}

/// `WT_MAX_DATA`: the client may send this many bytes on the session's
/// streams in all.
pub(super) fn max_data(v: u64) -> Bytes {
    with_value(MAX_DATA, v)
}

/// `WT_MAX_STREAMS` (bidirectional): the client may open this many in all.
pub(super) fn max_streams_bidi(v: u64) -> Bytes {
    with_value(MAX_STREAMS_BIDI, v)
}

/// `WT_DATA_BLOCKED`: the server has data to send beyond the client's limit.
pub(super) fn data_blocked(limit: u64) -> Bytes {
    with_value(DATA_BLOCKED, limit)
}

/// `WT_STREAMS_BLOCKED` (unidirectional): the server would open a stream
/// beyond the client's limit.
pub(super) fn streams_blocked_uni(limit: u64) -> Bytes {
    with_value(STREAMS_BLOCKED_UNI, limit)
}

/// CLOSE_WEBTRANSPORT_SESSION: the code and reason the browser's
/// `WebTransport.closed` resolves with.
pub(super) fn close(code: u32, reason: &str) -> Bytes {
    let mut end = reason.len().min(CLOSE_MESSAGE_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut b = BytesMut::with_capacity(16 + reason.len());
    put(&mut b, CLOSE_SESSION);
    put(&mut b, 4 + reason.len() as u64);
    b.put_u32(code);
    b.put_slice(reason);
    b.freeze()
}

#[cfg(test)]
#[path = "capsule_tests.rs"]
mod tests;

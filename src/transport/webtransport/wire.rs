//! The few WebTransport-over-HTTP/3 wire elements rtgate speaks itself
//! (draft-ietf-webtrans-http3): stream headers, the datagram prefix and the
//! session capsules. Varints are QUIC's (`quinn_proto::coding`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quinn_proto::VarInt;
use quinn_proto::coding::Codec;

/// Signal value opening a client bidirectional WebTransport stream.
pub(super) const BIDI_STREAM: u64 = 0x41;
/// Stream type of a unidirectional WebTransport stream.
const UNI_STREAM: u64 = 0x54;
/// HTTP/3 unidirectional stream types a client opens for itself.
pub(super) const QPACK_ENCODER: u64 = 0x02;
pub(super) const QPACK_DECODER: u64 = 0x03;
/// CLOSE_WEBTRANSPORT_SESSION capsule type.
const CLOSE_SESSION: u64 = 0x2843;
/// Longest close message the capsule may carry, in bytes.
const CLOSE_MESSAGE_MAX: usize = 1024;
/// H3_STREAM_CREATION_ERROR: a stream the server will not accept.
pub(super) const STREAM_CREATION_ERROR: u32 = 0x103;

fn put(buf: &mut BytesMut, v: u64) {
    VarInt::from_u64(v).expect("values below 2^62").encode(buf);
}

/// Reads one varint from the front of `buf`, if it holds a whole one.
pub(super) fn take_varint(buf: &mut impl Buf) -> Option<u64> {
    VarInt::decode(buf).ok().map(u64::from)
}

/// Bytes a varint takes, from its first byte.
pub(super) fn varint_len(first: u8) -> usize {
    1 << (first >> 6)
}

/// The header of a server-opened unidirectional stream of `session`.
pub(super) fn uni_header(session: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    put(&mut b, UNI_STREAM);
    put(&mut b, session);
    b.freeze()
}

/// The datagram for `payload` in the session whose CONNECT stream is
/// `session`: its quarter stream id, then the payload.
pub(super) fn datagram(session: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    put(&mut b, session / 4);
    b.put_slice(payload);
    b.freeze()
}

/// The payload of a datagram for `session`, or `None` for another
/// session's or a malformed one.
pub(super) fn datagram_payload(session: u64, mut d: Bytes) -> Option<Bytes> {
    (take_varint(&mut d)? == session / 4).then_some(d)
}

/// CLOSE_WEBTRANSPORT_SESSION: the code and reason the browser's
/// `WebTransport.closed` resolves with.
pub(super) fn close_capsule(code: u32, reason: &str) -> Bytes {
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

/// A CLOSE_WEBTRANSPORT_SESSION found in capsule bytes from the client.
pub(super) fn parse_close(mut b: &[u8]) -> Option<(u32, String)> {
    while b.has_remaining() {
        let kind = take_varint(&mut b)?;
        let len = usize::try_from(take_varint(&mut b)?).ok()?;
        if b.len() < len {
            return None;
        }
        let (body, rest) = b.split_at(len);
        if kind == CLOSE_SESSION && len >= 4 {
            let code = u32::from_be_bytes(body[..4].try_into().ok()?);
            return Some((code, String::from_utf8_lossy(&body[4..]).into_owned()));
        }
        b = rest;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_capsule_round_trips_and_caps_the_reason() {
        let c = close_capsule(4401, "unauthorized");
        assert_eq!(&c[..2], &[0x68, 0x43], "0x2843 as a two-byte varint");
        assert_eq!(parse_close(&c), Some((4401, "unauthorized".into())));
        let long = "é".repeat(700);
        let (code, reason) = parse_close(&close_capsule(1001, &long)).unwrap();
        assert_eq!((code, reason.len()), (1001, 1024));
    }

    #[test]
    fn other_capsules_are_skipped_and_truncated_ones_ignored() {
        // A DRAIN_WEBTRANSPORT_SESSION (0x78ae, empty), then a close.
        let mut b = vec![0x80, 0x00, 0x78, 0xae, 0x00];
        b.extend_from_slice(&close_capsule(7, "x"));
        assert_eq!(parse_close(&b), Some((7, "x".into())));
        assert_eq!(parse_close(&b[..b.len() - 1]), None);
        assert_eq!(parse_close(&b[..5]), None);
    }

    #[test]
    fn a_unidirectional_stream_names_its_type_and_session() {
        assert_eq!(&uni_header(0)[..], &[0x40, 0x54, 0x00]);
        assert_eq!(&uni_header(4)[..], &[0x40, 0x54, 0x04]);
    }

    #[test]
    fn datagrams_carry_the_quarter_session_id() {
        let d = datagram(8, b"{}");
        assert_eq!(&d[..], b"\x02{}");
        assert_eq!(datagram_payload(8, d.clone()).as_deref(), Some(&b"{}"[..]));
        assert_eq!(datagram_payload(4, d), None);
        assert_eq!(datagram_payload(0, Bytes::new()), None);
        let big = datagram(4 * 100, b"x");
        assert_eq!((big.len(), varint_len(big[0])), (3, 2));
    }
}

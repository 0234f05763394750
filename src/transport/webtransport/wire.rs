//! The few WebTransport-over-HTTP/3 wire elements rtgate speaks itself
//! (draft-ietf-webtrans-http3): stream headers and the datagram prefix
//! (capsules are in `capsule`). Varints are QUIC's (`quinn_proto::coding`).

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
/// H3_STREAM_CREATION_ERROR: a stream the server will not accept.
pub(super) const STREAM_CREATION_ERROR: u32 = 0x103;

/// Appends a varint.
pub(super) fn put(buf: &mut BytesMut, v: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

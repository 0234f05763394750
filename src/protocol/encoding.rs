//! Frame encodings (PROTOCOL.md section 2): JSON, and MessagePack for
//! clients that ask for it (the WebSocket subprotocol `rtgate.msgpack`, or
//! `encoding=msgpack` in any transport's URL). Inside, every frame is JSON;
//! a MessagePack session's frames are transcoded at its edge, streaming,
//! without building a value in between: maps with the same field names,
//! integers exact to 64 bits, strings as UTF-8, and MessagePack binary
//! shown to JSON clients as an array of byte values.

use super::error::ProtoError;

/// The WebSocket subprotocol that asks for MessagePack.
pub const MSGPACK_SUBPROTOCOL: &str = "rtgate.msgpack";

/// How a session's frames are encoded on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// UTF-8 JSON text (the default).
    #[default]
    Json,
    /// MessagePack maps.
    MsgPack,
}

impl Encoding {
    /// The encoding a URL's `encoding` query value names.
    pub fn from_query(value: Option<&str>) -> Result<Self, ProtoError> {
        match value {
            None | Some("json") => Ok(Self::Json),
            Some("msgpack") => Ok(Self::MsgPack),
            Some(other) => Err(ProtoError::bad(format!(
                "encoding: \"json\" or \"msgpack\", not {other:?}"
            ))),
        }
    }
}

/// A JSON frame as MessagePack (map keys as strings, as MessagePack's
/// "named" maps). Fails only on JSON that is not valid, which the server
/// never writes.
pub fn json_to_msgpack(json: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::with_capacity(json.len());
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut ser = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut de, &mut ser)
        .map_err(|e| ProtoError::bad(format!("cannot encode as MessagePack: {e}")))?;
    Ok(out)
}

/// A client's MessagePack frame as JSON, for the decoder every transport
/// shares. Integer map keys become strings; a truncated frame or bytes
/// after the one value are an error 400.
pub fn msgpack_to_json(frame: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::with_capacity(frame.len() + frame.len() / 4);
    let mut rest = std::io::Cursor::new(frame);
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    let mut ser = serde_json::Serializer::new(&mut out);
    serde_transcode::transcode(&mut de, &mut ser)
        .map_err(|e| ProtoError::bad(format!("malformed MessagePack frame: {e}")))?;
    if rest.position() as usize != frame.len() {
        return Err(ProtoError::bad(
            "malformed MessagePack frame: bytes after the value",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn frames_round_trip_with_big_integers_unicode_and_nesting() {
        let v = json!({"msgType": 3, "roomId": "r", "msgBody": {
            "big": 9_007_199_254_740_993u64, "neg": -9_007_199_254_740_993i64,
            "max": u64::MAX, "text": "héllo ✓ 👍", "nested": [[{"a": [1, 2.5, null, true]}]]
        }});
        let json = serde_json::to_vec(&v).unwrap();
        let packed = json_to_msgpack(&json).unwrap();
        assert!(packed.len() < json.len(), "MessagePack is smaller");
        // What a MessagePack library reads is the same value.
        let read: Value = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(read, v);
        let back: Value = serde_json::from_slice(&msgpack_to_json(&packed).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn binary_becomes_bytes_and_bad_frames_are_400() {
        #[derive(serde::Serialize)]
        struct WithBytes<'a> {
            #[serde(rename = "msgType")]
            t: i64,
            #[serde(rename = "msgBody", with = "serde_bytes_like")]
            body: &'a [u8],
        }
        mod serde_bytes_like {
            pub(crate) fn serialize<S: serde::Serializer>(
                b: &&[u8],
                s: S,
            ) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let packed = rmp_serde::to_vec_named(&WithBytes {
            t: 3,
            body: &[1, 2, 255],
        })
        .unwrap();
        let json: Value = serde_json::from_slice(&msgpack_to_json(&packed).unwrap()).unwrap();
        assert_eq!(json, json!({"msgType": 3, "msgBody": [1, 2, 255]}));
        // An integer map key becomes a string (JSON has no other); a
        // truncated frame and trailing bytes are errors.
        let int_key = rmp_serde::to_vec(&std::collections::BTreeMap::from([(1, 2)])).unwrap();
        assert_eq!(msgpack_to_json(&int_key).unwrap(), br#"{"1":2}"#);
        assert_eq!(
            msgpack_to_json(&packed[..packed.len() - 1])
                .unwrap_err()
                .code(),
            400
        );
        let mut extra = packed.clone();
        extra.push(0xc0);
        assert_eq!(msgpack_to_json(&extra).unwrap_err().code(), 400);
        assert_eq!(
            Encoding::from_query(Some("msgpack")).unwrap(),
            Encoding::MsgPack
        );
        assert_eq!(Encoding::from_query(Some("xml")).unwrap_err().code(), 400);
    }
}

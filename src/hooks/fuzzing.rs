//! The hooks' answer parsers, for the fuzz targets (`crate::fuzzing`).

use bytes::Bytes;

use super::client::Answer;
use super::{connect, join, publish};
use crate::protocol::{Id, decode_publish};

/// A hook's answer: the first byte picks the hook and the status, the rest
/// is the body. Never panics; a publish rewrite never leaves a body over
/// the frame limit.
pub(crate) fn answer(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = [200, 200, 200, 401, 403, 500, 204, 301][usize::from(pick >> 5)];
    let answer = || Answer {
        status,
        body: Bytes::copy_from_slice(body),
    };
    match pick % 3 {
        0 => {
            let _ = connect::decide(answer());
        }
        1 => {
            let _ = join::decide(answer(), &Id::parse("room").expect("an id"));
        }
        _ => {
            let frame = br#"{"msgType":3,"roomId":"r","msgBody":{"t":"hi"},"bizType":5}"#;
            let (_, mut p) = decode_publish(frame).expect("a valid message");
            const MAX: usize = 1024;
            if let Ok(Ok(_)) = publish::decide(answer(), &mut p, MAX) {
                let len = p.body.as_ref().map_or(0, |b| b.get().len());
                assert!(len <= MAX, "a rewritten body of {len} bytes");
            }
        }
    }
}

//! The wire protocol (PROTOCOL.md §2–§5, §9) as pure code: message model, id
//! rules, frame decoding and validation, error and close codes. No I/O and no
//! tokio here, so it is unit-tested, property-tested and fuzzed on its own.

pub mod chat;
pub mod command;
pub mod encoding;
pub mod error;
pub mod id;
pub mod message;
pub mod nesting;
pub mod push;

pub use chat::{Amend, AmendOp, Receipt, ReceiptKind};
pub use command::{
    Command, DecodeError, Destination, Inbound, Login, Publish, Redundancy, decode, decode_publish,
};
pub use encoding::Encoding;
pub use error::{CloseCode, ProtoError};
pub use id::{Id, IdError};
pub use message::{ChatFields, Delivered, Reply, SincePositions, is_business};

/// The literal answer to a literal `ping`.
pub const PONG: &[u8] = b"pong";

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = Id> {
        prop_oneof![
            "[!-~]{1,40}".prop_map(|s| Id::parse(&s).unwrap()),
            any::<u32>().prop_map(|n| Id::parse(&n.to_string()).unwrap()),
        ]
    }

    fn body() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            Just("{}".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            ".{0,30}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            (".{0,10}", any::<i32>())
                .prop_map(|(k, v)| serde_json::json!({ k: [v, null, true] }).to_string()),
        ])
    }

    proptest! {
        /// A delivered message, decoded as a client frame, keeps every field.
        #[test]
        fn delivered_round_trips(
            msg_type in prop_oneof![Just(3i64), 100i64..100_000],
            from in id(), to in prop::option::of(id()), room in prop::option::of(id()),
            biz_type in prop::option::of(any::<i64>()), biz_mod in prop::option::of(any::<i64>()),
            body in body(), seq in prop::option::of(1u64..=command::MAX_POSITION), ts in any::<u64>(),
        ) {
            prop_assume!(to.is_some() || room.is_some());
            let msg = Delivered {
                msg_type, send_user_id: from.clone(), received_user_id: to.clone(), room_id: room.clone(),
                biz_type, biz_opt_module: biz_mod,
                msg_body: body.as_deref().map(|b| serde_json::value::RawValue::from_string(b.to_string()).unwrap()),
                msg_id: "m".into(), seq, ts, volatile: false, latest: None, chat: None,
            };
            let bytes = msg.to_bytes();
            let back: Delivered = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back.to_bytes(), bytes.clone());
            let Inbound::Command(Command::Publish(s)) = decode(&bytes).unwrap() else { panic!("not a send") };
            prop_assert_eq!(s.msg_type, msg_type);
            prop_assert_eq!(s.biz_type, biz_type);
            prop_assert_eq!(s.biz_opt_module, biz_mod);
            prop_assert_eq!(s.body.map(|b| b.get().to_string()), body);
            let expect = match to { Some(user) => Destination::User { user, context: room }, None => Destination::Room(room.unwrap()) };
            prop_assert_eq!(s.to, expect);
        }

        /// No input makes the decoder panic.
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}

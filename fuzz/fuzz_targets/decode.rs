//! Fuzzes the frame decoder: no input may panic it (as JSON or as a
//! MessagePack frame), and whatever it accepts as a business message must
//! survive the server's re-encoding, in JSON and in MessagePack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtgate::protocol::encoding::{json_to_msgpack, msgpack_to_json};
use rtgate::protocol::{Command, Delivered, Id, Inbound, decode, decode_publish};

fuzz_target!(|data: &[u8]| {
    let _ = decode_publish(data);
    // A MessagePack client's frame: unpacked or refused, never a panic.
    if let Ok(json) = msgpack_to_json(data) {
        let _ = decode(&json);
    }
    if let Ok(Inbound::Command(Command::Publish(s))) = decode(data) {
        let (received_user_id, room_id) = match s.to {
            rtgate::protocol::Destination::User { user, context } => (Some(user), context),
            rtgate::protocol::Destination::Room(room) => (None, Some(room)),
        };
        let body = s.body.as_ref().map(|b| b.get().to_string());
        let msg = Delivered {
            msg_type: s.msg_type,
            send_user_id: Id::parse("fuzz").unwrap(),
            received_user_id,
            room_id,
            biz_type: s.biz_type,
            biz_opt_module: s.biz_opt_module,
            msg_body: s.body,
            msg_id: "m".into(),
            seq: Some(1),
            ts: 0,
            volatile: s.volatile,
            latest: s.latest,
            chat: None,
        };
        let bytes = msg.to_bytes();
        let Ok(Inbound::Command(Command::Publish(again))) = decode(&bytes) else {
            panic!("re-encoded message does not decode: {}", String::from_utf8_lossy(&bytes));
        };
        assert_eq!(again.body.map(|b| b.get().to_string()), body);
        assert_eq!(again.msg_type, msg.msg_type);
        // What a MessagePack session gets decodes again, as the same value.
        let packed = json_to_msgpack(&bytes).expect("the server's JSON packs");
        let back = msgpack_to_json(&packed).expect("packed JSON unpacks");
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&bytes).unwrap(),
            serde_json::from_slice(&back).unwrap(),
        );
        assert_eq!(a, b);
    }
});

//! Fuzzes the frame decoder: no input may panic it, and whatever it accepts
//! as a business message must survive the server's re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtgate::protocol::{Command, Delivered, Id, Inbound, decode, decode_publish};

fuzz_target!(|data: &[u8]| {
    let _ = decode_publish(data);
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
        };
        let bytes = msg.to_bytes();
        let Ok(Inbound::Command(Command::Publish(again))) = decode(&bytes) else {
            panic!("re-encoded message does not decode: {}", String::from_utf8_lossy(&bytes));
        };
        assert_eq!(again.body.map(|b| b.get().to_string()), body);
        assert_eq!(again.msg_type, msg.msg_type);
    }
});

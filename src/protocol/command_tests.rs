//! Decoding and validation of client frames.

use super::*;

fn cmd(s: &str) -> Command {
    match decode(s.as_bytes()).unwrap() {
        Inbound::Command(c) => c,
        Inbound::Ping => panic!("ping"),
    }
}

fn err(s: &str) -> DecodeError {
    decode(s.as_bytes()).unwrap_err()
}

#[test]
fn literal_ping() {
    assert!(matches!(decode(b"ping").unwrap(), Inbound::Ping));
    assert!(matches!(decode(b" ping\n").unwrap(), Inbound::Ping));
}

#[test]
fn legacy_login_and_message() {
    let c = cmd(
        r#"{"msgType":2,"sendUserId":8812,"bizType":1,"bizOptModule":1,"roomId":"123456","msgBody":{}}"#,
    );
    let Command::Login(l) = c else { panic!() };
    assert_eq!(l.user.unwrap().as_str(), "8812");
    assert_eq!(l.rooms[0].as_str(), "123456");
    let c = cmd(
        r#"{"msgType":100,"sendUserId":8812,"bizType":1,"bizOptModule":1,"roomId":"123456","receivedUserId":"77","msgBody":{"operateType":1,"operateContent":"1"}}"#,
    );
    let Command::Publish(s) = c else { panic!() };
    assert_eq!(s.msg_type, 100);
    assert_eq!(
        s.to,
        Destination::User {
            user: Id::parse("77").unwrap(),
            context: Some(Id::parse("123456").unwrap())
        }
    );
    assert_eq!(
        s.body.unwrap().get(),
        r#"{"operateType":1,"operateContent":"1"}"#
    );
}

#[test]
fn login_since_positions() {
    let Command::Login(l) = cmd(r#"{"msgType":2,"since":{"inbox":17,"rooms":{"r":40}}}"#) else {
        panic!()
    };
    assert_eq!(l.since.inbox, Some(17));
    assert_eq!(l.since.rooms[&Id::parse("r").unwrap()], 40);
}

#[test]
fn bad_input_is_400_with_a_reason() {
    for bad in [
        "{",
        "[]",
        "null",
        "pong",
        r#"{"msgType":"2"}"#,
        r#"{"msgType":2.5}"#,
        r#"{}"#,
        r#"{"msgType":10}"#,
        r#"{"msgType":10,"token":""}"#,
        r#"{"msgType":4,"seq":9223372036854775808}"#,
        r#"{"msgType":7,"since":18446744073709551615}"#,
        r#"{"msgType":2,"since":{"inbox":9223372036854775808}}"#,
        r#"{"msgType":2,"since":{"rooms":{"r":9223372036854775808}}}"#,
        r#"{"msgType":0}"#,
        r#"{"msgType":-1}"#,
        r#"{"msgType":3}"#,
        r#"{"msgType":3,"roomId":true}"#,
        r#"{"msgType":3,"roomId":"r","bizType":"x"}"#,
        r#"{"msgType":5}"#,
        r#"{"msgType":7,"limit":0}"#,
        r#"{"msgType":7,"limit":101}"#,
        r#"{"msgType":8}"#,
        r#"{"msgType":4}"#,
        r#"{"msgType":1} {"msgType":1}"#,
    ] {
        assert_eq!(err(bad).error.code(), 400, "{bad}");
    }
    assert!(
        err(r#"{"msgType":"x"}"#)
            .error
            .to_string()
            .starts_with("msgType")
    );
}

#[test]
fn positions_up_to_i64_max_are_fine() {
    let Command::Cursor { seq } = cmd(r#"{"msgType":4,"seq":9223372036854775807}"#) else {
        panic!()
    };
    assert_eq!(seq, MAX_POSITION);
}

#[test]
fn refresh_carries_its_token() {
    let Command::Refresh { token } = cmd(r#"{"msgType":10,"token":"t.k.n"}"#) else {
        panic!()
    };
    assert_eq!(token, "t.k.n");
}

#[test]
fn deep_bodies_are_400_and_strings_do_not_count() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let frame =
        |body: &str| format!(r#"{{"msgType":3,"roomId":"r","clientMsgId":"c","msgBody":{body}}}"#);
    assert!(decode(frame(&deep(MAX_BODY_DEPTH)).as_bytes()).is_ok());
    let e = err(&frame(&deep(MAX_BODY_DEPTH + 1)));
    assert_eq!(e.error.code(), 400);
    assert!(e.error.to_string().contains("nested deeper"), "{e}");
    assert_eq!(e.client_msg_id.as_deref(), Some("c"));
    let e = err(&frame(&deep(20_000)));
    assert_eq!(e.error.code(), 400);
    assert_eq!(nesting_depth(r#"{"a":"[[[[{{","b":["\"[",{}]}"#), 3);
    assert!(
        decode_publish(format!(r#"{{"roomId":"r","msgBody":{}}}"#, deep(65)).as_bytes()).is_err()
    );
}

#[test]
fn failed_send_keeps_client_msg_id() {
    let e = err(r#"{"msgType":3,"clientMsgId":"c9"}"#);
    assert_eq!(e.client_msg_id.as_deref(), Some("c9"));
    assert_eq!(
        err(&format!(
            r#"{{"msgType":3,"roomId":"r","clientMsgId":"{}"}}"#,
            "x".repeat(65)
        ))
        .error
        .code(),
        400
    );
}

#[test]
fn latest_is_for_volatile_messages_with_a_short_key() {
    let ok = cmd(r#"{"msgType":3,"roomId":"r","volatile":true,"latest":"typing"}"#);
    assert!(
        matches!(ok, Command::Publish(Publish { latest: Some(k), volatile: true, .. }) if k == "typing")
    );
    for bad in [
        r#"{"msgType":3,"roomId":"r","latest":"typing"}"#,
        r#"{"msgType":3,"roomId":"r","volatile":true,"latest":""}"#,
    ] {
        assert_eq!(err(bad).error.code(), 400, "{bad}");
    }
    let long = format!(
        r#"{{"msgType":3,"roomId":"r","volatile":true,"latest":"{}"}}"#,
        "k".repeat(65)
    );
    assert_eq!(err(&long).error.code(), 400);
}

#[test]
fn streams_at_login_are_single_or_channels() {
    let single = cmd(r#"{"msgType":2,"sendUserId":"a","streams":"single"}"#);
    assert!(matches!(
        single,
        Command::Login(Login {
            single_stream: true,
            ..
        })
    ));
    let channels = cmd(r#"{"msgType":2,"sendUserId":"a","streams":"channels"}"#);
    assert!(matches!(
        channels,
        Command::Login(Login {
            single_stream: false,
            ..
        })
    ));
    assert_eq!(
        err(r#"{"msgType":2,"sendUserId":"a","streams":"many"}"#)
            .error
            .code(),
        400
    );
}

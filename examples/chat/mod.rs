//! The small line protocol shared by the example chat clients.
//!
//! A line typed on stdin becomes one frame:
//!   `@bob hello`   direct message to bob
//!   `#lobby hi`    message to room lobby
//!   `/join lobby`  join a room (`/leave` likewise)
//!   `{...}`        sent as it is (any protocol frame)
//! Every frame received is printed on stdout as one line.

use serde_json::{Value, json};

/// Turns one typed line into a frame, or `None` for a blank line.
pub(crate) fn frame_for(line: &str, seq: u64) -> Option<Value> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line.starts_with('{') {
        return serde_json::from_str(line).ok();
    }
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    let cmid = format!("cli-{seq}");
    Some(match head.chars().next() {
        Some('@') => {
            json!({"msgType": 3, "receivedUserId": &head[1..], "msgBody": {"text": rest}, "clientMsgId": cmid})
        }
        Some('#') => {
            json!({"msgType": 3, "roomId": &head[1..], "msgBody": {"text": rest}, "clientMsgId": cmid})
        }
        Some('/') if head == "/join" => json!({"msgType": 5, "roomId": rest}),
        Some('/') if head == "/leave" => json!({"msgType": 6, "roomId": rest}),
        _ => return None,
    })
}

/// The login frame for `user`.
pub(crate) fn login(user: &str) -> Value {
    let mut login = json!({"msgType": 2, "sendUserId": user});
    // A server with --jwt-secret wants a token (and sendUserId its `sub`).
    if let Ok(token) = std::env::var("RTGATE_TOKEN") {
        login["token"] = json!(token);
    }
    login
}

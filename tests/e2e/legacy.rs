//! The legacy Spring Boot client, unchanged: `/websocket/{userId}`, a login
//! with a numeric sendUserId, msgType 100 business messages, text `ping`.

use serde_json::json;

use crate::common::{Client, Server};

#[tokio::test]
async fn legacy_page_flow() {
    let s = Server::start(&[]);
    let me: u32 = 100_000 + std::process::id() % 800_000;
    let other = me + 1;
    let mut a = Client::connect(&s.ws_url("/websocket/aaa")).await;
    let mut b = Client::connect(&s.ws_url("/websocket/bbb")).await;
    for (c, id) in [(&mut a, me), (&mut b, other)] {
        let reply = c
            .login_as(
                json!({"msgType": 2, "sendUserId": id, "bizType": 1, "bizOptModule": 1,
                             "roomId": "123456", "msgBody": {}}),
            )
            .await;
        assert_eq!(reply["sendUserId"], id.to_string());
    }
    a.send(&json!({"msgType": 100, "sendUserId": me, "bizType": 1, "bizOptModule": 1, "roomId": "123456",
                   "receivedUserId": other.to_string(), "msgBody": {"operateType": 1, "operateContent": "1"}}))
        .await;
    let m = b.recv().await;
    assert_eq!(m["msgType"], 100);
    assert_eq!(m["bizType"], 1);
    assert_eq!(m["bizOptModule"], 1);
    assert_eq!(m["roomId"], "123456");
    assert_eq!(m["sendUserId"], me.to_string());
    assert_eq!(m["receivedUserId"], other.to_string());
    assert_eq!(
        m["msgBody"],
        json!({"operateType": 1, "operateContent": "1"})
    );
    // The legacy client's keep-alive: text ping, text pong.
    a.send_text("ping").await;
    assert_eq!(a.recv_type_text_pong().await, "pong");
}

impl Client {
    /// The next `pong`, skipping the ack of the message just sent.
    async fn recv_type_text_pong(&mut self) -> String {
        loop {
            let t = self.recv_text().await;
            if t == "pong" {
                return t;
            }
        }
    }
}

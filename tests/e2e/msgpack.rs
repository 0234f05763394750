//! Issue 30, MessagePack: a client that asks for it (the WebSocket
//! subprotocol `rtgate.msgpack`, or `encoding=msgpack` in the URL) speaks
//! MessagePack maps with the protocol's field names, and exchanges
//! messages with JSON clients in the same room with `msgBody` intact.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{Client, Server};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A MessagePack client: connects with the subprotocol, or the query.
async fn packed(s: &Server, by_subprotocol: bool) -> Ws {
    let url = match by_subprotocol {
        true => format!("ws://{}/ws", s.http),
        false => format!("ws://{}/ws?encoding=msgpack", s.http),
    };
    let mut req = url.into_client_request().unwrap();
    if by_subprotocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "other, rtgate.msgpack".parse().unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    if by_subprotocol {
        assert_eq!(resp.headers()["sec-websocket-protocol"], "rtgate.msgpack");
    }
    ws
}

async fn send(ws: &mut Ws, v: &Value) {
    let bytes = rmp_serde::to_vec_named(v).unwrap();
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

/// The next frame, which must be a binary MessagePack map.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        match m {
            Message::Binary(b) => return rmp_serde::from_slice(&b).expect("a MessagePack map"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("not a MessagePack frame: {other:?}"),
        }
    }
}

async fn recv_type(ws: &mut Ws, t: i64) -> Value {
    loop {
        let v = recv(ws).await;
        if v["msgType"] == t {
            return v;
        }
    }
}

#[tokio::test]
async fn json_and_messagepack_clients_share_a_room_with_bodies_intact() {
    let s = Server::start(&[]);
    let mut mp = packed(&s, true).await;
    send(
        &mut mp,
        &json!({"msgType": 2, "sendUserId": "packer", "roomId": "mix"}),
    )
    .await;
    let reply = recv_type(&mut mp, 2).await;
    assert_eq!(reply["sendUserId"], "packer", "{reply}");
    let (mut js, _) = Client::login(&s, "jason").await;
    js.send(&json!({"msgType": 5, "roomId": "mix"})).await;
    js.recv_type(5).await;
    let body = json!({"text": "héllo ✓ 👍", "big": 9_007_199_254_740_993u64,
                      "neg": -9_007_199_254_740_993i64, "deep": [[{"a": [1, 2.5, null, true]}]]});
    // MessagePack to JSON.
    send(
        &mut mp,
        &json!({"msgType": 3, "roomId": "mix", "clientMsgId": "p1", "msgBody": body}),
    )
    .await;
    let ack = recv_type(&mut mp, 4).await;
    assert_eq!(
        (ack["clientMsgId"].as_str(), ack["seq"].as_u64()),
        (Some("p1"), Some(1))
    );
    let got = js.recv_type(3).await;
    assert_eq!(got["msgBody"], body);
    assert_eq!(got["msgBody"]["big"].as_u64(), Some(9_007_199_254_740_993));
    // JSON to MessagePack.
    js.send(&json!({"msgType": 3, "roomId": "mix", "msgBody": body}))
        .await;
    let got = recv_type(&mut mp, 3).await;
    assert_eq!(got["msgBody"], body);
    assert_eq!(
        (got["sendUserId"].as_str(), got["seq"].as_u64()),
        (Some("jason"), Some(2))
    );
    // MessagePack binary reaches a JSON client as its bytes.
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        #[serde(rename = "msgType")]
        t: i64,
        #[serde(rename = "roomId")]
        room: &'a str,
        #[serde(rename = "msgBody", serialize_with = "as_bytes")]
        body: &'a [u8],
    }
    fn as_bytes<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
    let raw = rmp_serde::to_vec_named(&Raw {
        t: 3,
        room: "mix",
        body: &[0, 1, 254, 255],
    })
    .unwrap();
    mp.send(Message::Binary(raw.into())).await.unwrap();
    assert_eq!(js.recv_type(3).await["msgBody"], json!([0, 1, 254, 255]));
    // History and replays come in MessagePack too.
    send(&mut mp, &json!({"msgType": 7, "roomId": "mix", "since": 0})).await;
    let h = recv_type(&mut mp, 7).await;
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(3), "{h}");
    // `ping` stays a literal; a malformed frame is a 400 and the session stays.
    mp.send(Message::Text("ping".into())).await.unwrap();
    loop {
        match mp.next().await.unwrap().unwrap() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), "pong");
                break;
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    mp.send(Message::Binary(vec![0x81, 0xa1].into()))
        .await
        .unwrap();
    let e = recv_type(&mut mp, 9).await;
    assert_eq!(e["code"], 400, "{e}");
    send(&mut mp, &json!({"msgType": 1})).await;
    assert_eq!(recv_type(&mut mp, 1).await["msgType"], 1);
}

#[tokio::test]
async fn the_query_asks_for_messagepack_too_and_a_bad_encoding_is_refused() {
    let s = Server::start(&[]);
    let mut mp = packed(&s, false).await;
    send(&mut mp, &json!({"msgType": 2, "sendUserId": "q"})).await;
    assert_eq!(recv_type(&mut mp, 2).await["sendUserId"], "q");
    // Direct messages (and volatile ones) reach it packed as well.
    let (mut js, _) = Client::login(&s, "sender").await;
    js.send(&json!({"msgType": 3, "receivedUserId": "q", "volatile": true, "msgBody": "v"}))
        .await;
    assert_eq!(recv_type(&mut mp, 3).await["msgBody"], "v");
    let url = format!("ws://{}/ws?encoding=xml", s.http);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

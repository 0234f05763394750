//! Issue 25, item 4: Safari's WebTransport quirks, imitated in Chromium
//! (Safari cannot run here) from its public bug reports: Safari 26.4 has no
//! `datagrams.writable`, and reports a `maxDatagramSize` it then refuses.
//! client.js must still deliver every volatile message (on the stream) and
//! say in its state that datagrams are off. The real server and the real
//! client package run; only the browser's datagram API is altered.

use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use serde_json::{Value, json};

use super::Driver;
use crate::common::{Client, Server};

/// Alters Chromium's datagram API as Safari's behaves: `"no-writable"`
/// removes `datagrams.writable`; `"refusing"` reports 1,200 bytes and
/// rejects writes above 200 (a refused write errors the stream, as a sink's
/// rejection does).
const IMITATE: &str = r#"
const mode = arguments[0];
const proto = WebTransportDatagramDuplexStream.prototype;
if (mode === "no-writable") {
  Object.defineProperty(proto, "writable", { configurable: true, get() { return undefined; } });
} else {
  const real = Object.getOwnPropertyDescriptor(proto, "writable").get;
  const wrapped = new WeakMap();
  Object.defineProperty(proto, "maxDatagramSize", { configurable: true, get() { return 1200; } });
  Object.defineProperty(proto, "writable", { configurable: true, get() {
    if (!wrapped.has(this)) {
      const w = real.call(this).getWriter();
      wrapped.set(this, new WritableStream({ write(chunk) {
        if (chunk.length > 200) return Promise.reject(new TypeError("datagram too large"));
        return w.write(chunk);
      } }));
    }
    return wrapped.get(this);
  } });
}
"#;

/// The page's client as `window.c` over WebTransport, its deliveries in
/// `window.got` and its state changes in `window.states`.
const START: &str = r#"
const done = arguments[arguments.length - 1];
window.got = []; window.states = [];
window.c = new RtgateClient({ url: location.origin, userId: "sarah", transport: "webtransport" });
c.on("message", (m) => got.push(m.msgBody.text));
c.on("state", (s) => states.push(s));
c.connect().then(() => done(c.transport), (e) => done(String(e)));
"#;

async fn datagrams_in(s: &Server) -> f64 {
    let key = "rtgate_datagrams_total{direction=\"in\"}";
    s.metrics().await.get(key).copied().unwrap_or(0.0)
}

async fn last_state(b: &Browser) -> Value {
    b.execute("return states[states.length - 1]", vec![])
        .await
        .unwrap()
}

async fn volatile(b: &Browser, text: &str) {
    b.execute(
        "c.send({ receivedUserId: 'bob', msgBody: { text: arguments[0] }, volatile: true })",
        vec![json!(text)],
    )
    .await
    .unwrap();
}

async fn until_got(b: &Browser, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b
        .execute("return got.includes(arguments[0])", vec![json!(text)])
        .await
        .unwrap()
        .as_bool()
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the page never got {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open(driver: &Driver, s: &Server, mode: &str) -> Browser {
    let b = driver.browser(mode).await;
    b.goto(&format!("http://{}/", s.http)).await.unwrap();
    b.execute(IMITATE, vec![json!(mode)]).await.unwrap();
    let transport = b.execute_async(START, vec![]).await.unwrap();
    assert_eq!(transport, "webtransport");
    b
}

#[tokio::test]
async fn without_datagrams_writable_volatile_messages_travel_on_the_stream() {
    let s = Server::start(&[]);
    let driver = Driver::start();
    let (mut bob, _) = Client::login(&s, "bob").await;
    let b = open(&driver, &s, "no-writable").await;
    let state = last_state(&b).await;
    assert_eq!(
        (state["state"].as_str(), state["datagrams"].as_bool()),
        (Some("connected"), Some(false)),
        "{state}"
    );
    assert!(
        state["detail"].as_str().unwrap().contains("no datagrams"),
        "{state}"
    );
    let before = datagrams_in(&s).await;
    for text in ["typing", "x".repeat(600).as_str()] {
        volatile(&b, text).await;
        assert_eq!(bob.recv_type(3).await["msgBody"]["text"], text);
    }
    assert_eq!(datagrams_in(&s).await, before, "nothing came as a datagram");
    // Receiving datagrams still works: Safari has `datagrams.readable`.
    bob.send(&json!({"msgType": 3, "receivedUserId": "sarah", "volatile": true, "msgBody": {"text": "to safari"}}))
        .await;
    until_got(&b, "to safari").await;
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_datagram_is_sent_on_the_stream_and_datagrams_stop() {
    let s = Server::start(&[]);
    let driver = Driver::start();
    let (mut bob, _) = Client::login(&s, "bob").await;
    let b = open(&driver, &s, "refusing").await;
    assert_eq!(last_state(&b).await["datagrams"], true);
    let start = datagrams_in(&s).await;
    volatile(&b, "small").await;
    assert_eq!(bob.recv_type(3).await["msgBody"]["text"], "small");
    assert_eq!(
        datagrams_in(&s).await,
        start + 1.0,
        "a small one is a datagram"
    );
    // 500 bytes: under the 1,000 client.js trusts, over what is accepted.
    let big = "y".repeat(500);
    volatile(&b, &big).await;
    assert_eq!(bob.recv_type(3).await["msgBody"]["text"], big.as_str());
    let state = last_state(&b).await;
    assert_eq!(
        (state["state"].as_str(), state["datagrams"].as_bool()),
        (Some("connected"), Some(false)),
        "{state}"
    );
    assert!(
        state["detail"]
            .as_str()
            .unwrap()
            .contains("refused a datagram"),
        "{state}"
    );
    volatile(&b, "after").await;
    assert_eq!(bob.recv_type(3).await["msgBody"]["text"], "after");
    assert_eq!(datagrams_in(&s).await, start + 1.0, "then the stream");
    b.close().await.unwrap();
}

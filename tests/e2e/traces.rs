//! Trace export (`--otlp-endpoint`): each node of a two-node cluster sends
//! its spans to a minimal OTLP/HTTP receiver of its own on loopback. A
//! message sent on one node and delivered on the other is one trace: the
//! accept span on the sender's node, the publish hook's call and the store
//! under it, and the delivery on the recipient's node a child of the accept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::hooks::{Backend, HOOK_SECRET};
use crate::redis_server::RedisServer;

/// One exported span, as the receiver got it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attrs: Value,
    /// The resource's `service.instance.id` (the node).
    node: String,
}

/// An OTLP/HTTP (JSON) receiver: `POST /v1/traces` keeps every span.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

fn string_attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v["stringValue"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v["intValue"].to_string().trim_matches('"').to_string())
    })
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let keep = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                let req: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for rs in req["resourceSpans"].as_array().into_iter().flatten() {
                    let node = string_attr(&rs["resource"]["attributes"], "service.instance.id")
                        .unwrap_or_default();
                    assert_eq!(
                        string_attr(&rs["resource"]["attributes"], "service.name").as_deref(),
                        Some("rtgate")
                    );
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            keep.lock().unwrap().push(Span {
                                name: s["name"].as_str().unwrap().to_string(),
                                trace: s["traceId"].as_str().unwrap().to_string(),
                                id: s["spanId"].as_str().unwrap().to_string(),
                                parent: s["parentSpanId"].as_str().unwrap_or("").to_string(),
                                attrs: s["attributes"].clone(),
                                node: node.clone(),
                            });
                        }
                    }
                }
                "{}"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, spans }
    }

    /// Waits (up to 15 s) for a span named `name` that `pick` accepts.
    async fn span(&self, name: &str, pick: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.name == name && pick(s))
                .cloned();
            if let Some(s) = found {
                return s;
            }
            let names: Vec<String> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.name.clone())
                .collect();
            assert!(
                Instant::now() < deadline,
                "no {name} span arrived; got {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_message_is_one_trace_from_its_accept_on_one_node_to_its_delivery_on_another() {
    let redis = RedisServer::start();
    let rurl = redis.url();
    let backend = Backend::start();
    let (ra, rb) = (Receiver::start().await, Receiver::start().await);
    // Export batches every 100 ms (the SDK's standard variable) instead of 5 s.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let publish_hook = backend.url("publish");
    let a = Server::start_with_env(
        &[
            "--redis",
            &rurl,
            "--node-id",
            "node-a",
            "--otlp-endpoint",
            &ra.url,
            "--publish-hook",
            &publish_hook,
            "--hook-secret",
            HOOK_SECRET,
        ],
        &env,
    );
    let b = Server::start_with_env(
        &[
            "--redis",
            &rurl,
            "--node-id",
            "node-b",
            "--otlp-endpoint",
            &rb.url,
        ],
        &env,
    );
    let (mut alice, _) = Client::login(&a, "alice").await;
    let (mut bob, _) = Client::login(&b, "bob").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "traced", "clientMsgId": "t1"}))
        .await;
    let ack = alice.recv_type(4).await;
    assert_eq!(bob.recv_type(3).await["msgBody"], "traced");

    let accept = ra
        .span("message.accept", |s| {
            string_attr(&s.attrs, "user").as_deref() == Some("alice")
        })
        .await;
    assert_eq!(accept.node, "node-a");
    assert_eq!(accept.parent, "", "a message's trace starts at its accept");
    let child_of_accept = |s: &Span| s.trace == accept.trace && s.parent == accept.id;
    let hook = ra.span("hook.publish", child_of_accept).await;
    assert_eq!(
        string_attr(&hook.attrs, "outcome").as_deref(),
        Some("answered")
    );
    let store = ra.span("message.store", child_of_accept).await;
    assert_eq!(
        string_attr(&store.attrs, "msg_id"),
        ack["msgId"].as_str().map(str::to_string)
    );
    // On the other node, from the envelope that crossed Redis.
    let remote = rb.span("message.deliver", child_of_accept).await;
    assert_eq!(remote.node, "node-b");
    assert!(
        string_attr(&remote.attrs, "to").unwrap().contains("bob"),
        "{remote:?}"
    );
    assert_eq!(string_attr(&remote.attrs, "queued").as_deref(), Some("1"));
    // Logins are spans of their own, on each node.
    ra.span("login", |s| {
        string_attr(&s.attrs, "user").as_deref() == Some("alice")
    })
    .await;
    rb.span("login", |s| {
        string_attr(&s.attrs, "user").as_deref() == Some("bob")
    })
    .await;
    // A backend's own trace goes on through the server API and across nodes.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (status, body) = b
        .http(
            "POST",
            "/api/publish",
            &[("content-type", "application/json"), ("traceparent", tp)],
            r#"{"receivedUserId": "alice", "msgBody": "from the backend"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice.recv_type(3).await["msgBody"], "from the backend");
    let api = rb
        .span("message.accept", |s| {
            s.trace == "0af7651916cd43dd8448eb211c80319c"
        })
        .await;
    assert_eq!(api.parent, "b7ad6b7169203331");
    assert_eq!(string_attr(&api.attrs, "source").as_deref(), Some("api"));
    ra.span("message.deliver", |s| {
        s.trace == api.trace && s.parent == api.id
    })
    .await;
    // Nothing of the message's trace went to the wrong collector.
    assert!(rb.spans.lock().unwrap().iter().all(|s| s.node == "node-b"));
}

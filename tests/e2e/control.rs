//! The server API's control of live sessions and its message routes, on
//! one node and across two (Redis): disconnect with the backend's code and
//! reason, join and leave with notices, batches, broadcasts, history, and
//! the OpenAPI document checked against the real routes.

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::redis_server::RedisServer;
use crate::wt_client::WtClient;

const KEY: &str = "k3y";

async fn api(s: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = format!("apikey {KEY}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = s
        .http(method, path, &[("authorization", &auth)], &body)
        .await;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

#[tokio::test]
async fn disconnect_closes_every_session_of_the_user_on_both_transports_with_the_backends_code() {
    let s = Server::start(&["--api-key", KEY]);
    let (mut ws, _) = Client::login(&s, "ann").await;
    let (mut wt, _) = WtClient::login(&s, "ann").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    let (_, p) = api(
        &s,
        "GET",
        "/api/presence?userId=ann,bob&sessions=true",
        Value::Null,
    )
    .await;
    let mut transports: Vec<String> = p["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["userId"].as_str().unwrap(),
                s["transport"].as_str().unwrap()
            )
        })
        .collect();
    transports.sort();
    assert_eq!(
        transports,
        ["ann websocket", "ann webtransport", "bob websocket"],
        "{p}"
    );
    // A message queued before the disconnect still arrives before the close.
    let (status, _) = api(
        &s,
        "POST",
        "/api/publish",
        json!({"receivedUserId": "ann", "msgBody": "last"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = api(
        &s,
        "POST",
        "/api/disconnect",
        json!({"userId": "ann", "code": 4000, "reason": "account suspended"}),
    )
    .await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"userId": "ann", "online": true}))
    );
    assert_eq!(ws.recv_type(3).await["msgBody"], "last");
    assert_eq!(
        ws.expect_close_frame().await,
        (4000, "account suspended".into())
    );
    assert_eq!(wt.recv_type(3).await["msgBody"], "last");
    assert_eq!(
        wt.expect_session_closed().await,
        (4000, "account suspended".into())
    );
    // Bob is untouched.
    bob.send(&json!({"msgType": 1})).await;
    assert_eq!(bob.recv_type(1).await["msgType"], 1);
    // The default is 4403; an offline user is reported; bad codes are 400.
    let (mut again, _) = Client::login(&s, "ann").await;
    api(&s, "POST", "/api/disconnect", json!({"userId": "ann"})).await;
    assert_eq!(
        again.expect_close_frame().await,
        (4403, "disconnected by the server".into())
    );
    let (_, answer) = api(&s, "POST", "/api/disconnect", json!({"userId": "nobody"})).await;
    assert_eq!(answer["online"], false);
    let (status, e) = api(
        &s,
        "POST",
        "/api/disconnect",
        json!({"userId": "ann", "code": 2000}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = api(&s, "POST", "/api/disconnect", json!({"user": "ann"})).await;
    assert_eq!(status, 400, "{e}");
}

#[tokio::test]
async fn join_and_leave_move_a_users_live_sessions_with_notices() {
    let s = Server::start(&["--api-key", KEY]);
    let (mut a1, _) = Client::login(&s, "ann").await;
    let (mut a2, _) = WtClient::login(&s, "ann").await;
    api(
        &s,
        "POST",
        "/api/publish",
        json!({"roomId": "news", "msgBody": "old"}),
    )
    .await;
    let (status, _) = api(
        &s,
        "POST",
        "/api/join",
        json!({"userId": "ann", "roomId": "news"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        a1.recv_type(5).await,
        json!({"msgType": 5, "roomId": "news", "seq": 1})
    );
    assert_eq!(a2.recv_type(5).await["roomId"], "news");
    api(
        &s,
        "POST",
        "/api/publish",
        json!({"roomId": "news", "msgBody": "fresh"}),
    )
    .await;
    assert_eq!(a1.recv_type(3).await["msgBody"], "fresh");
    assert_eq!(a2.recv_type(3).await["msgBody"], "fresh");
    let (status, _) = api(
        &s,
        "POST",
        "/api/leave",
        json!({"userId": "ann", "roomId": "news"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        a1.recv_type(6).await,
        json!({"msgType": 6, "roomId": "news"})
    );
    assert_eq!(a2.recv_type(6).await["roomId"], "news");
    api(
        &s,
        "POST",
        "/api/publish",
        json!({"roomId": "news", "msgBody": "after"}),
    )
    .await;
    // Ann is out: a heartbeat answer comes, the room message does not.
    a1.send(&json!({"msgType": 1})).await;
    assert_eq!(
        a1.recv().await["msgType"],
        1,
        "nothing from the room it left"
    );
}

#[tokio::test]
async fn control_reaches_a_user_on_another_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = Server::start(&["--redis", &url, "--api-key", KEY]);
    let b = Server::start(&["--redis", &url, "--api-key", KEY]);
    let (mut ann, ann_login) = Client::login(&b, "ann").await;
    let (status, answer) = api(
        &a,
        "POST",
        "/api/join",
        json!({"userId": "ann", "roomId": "ops"}),
    )
    .await;
    assert_eq!((status, answer["online"].as_bool()), (200, Some(true)));
    assert_eq!(ann.recv_type(5).await["roomId"], "ops");
    api(
        &a,
        "POST",
        "/api/publish",
        json!({"roomId": "ops", "msgBody": "from a"}),
    )
    .await;
    assert_eq!(ann.recv_type(3).await["msgBody"], "from a");
    let (_, p) = api(&a, "GET", "/api/presence?roomId=ops", Value::Null).await;
    assert_eq!(p, json!({"userIds": ["ann"], "count": 1}));
    // Each session, wherever it is.
    let (_, p) = api(
        &a,
        "GET",
        "/api/presence?roomId=ops&sessions=true",
        Value::Null,
    )
    .await;
    let sessions = p["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{p}");
    assert_eq!(sessions[0]["nodeId"], ann_login["nodeId"], "{p}");
    assert_eq!(sessions[0]["sessionId"], ann_login["sessionId"]);
    assert_eq!(sessions[0]["transport"], "websocket");
    api(
        &a,
        "POST",
        "/api/disconnect",
        json!({"userId": "ann", "code": 4001, "reason": "bye"}),
    )
    .await;
    assert_eq!(ann.expect_close_frame().await, (4001, "bye".into()));
}

#[tokio::test]
async fn batches_broadcasts_and_history() {
    let s = Server::start(&["--api-key", KEY]);
    let (mut bob, _) = Client::login(&s, "bob").await;
    // A batch is answered in order; a bad message fails alone.
    let (status, answers) = api(
        &s,
        "POST",
        "/api/publish",
        json!([
            {"roomId": "r", "msgBody": 1},
            {"msgBody": "nowhere"},
            {"roomId": "r", "msgBody": 2, "volatile": true},
            {"roomId": "r", "msgBody": 3},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(answers[0]["seq"], 1);
    assert_eq!(answers[1]["code"], 400, "{answers}");
    assert_eq!(answers[2], json!({"volatile": true}));
    assert_eq!(answers[3]["seq"], 2);
    // A broadcast: one message in each inbox, answered per user.
    let (status, answers) = api(
        &s,
        "POST",
        "/api/broadcast",
        json!({"userIds": ["bob", "cat", "bad id!"], "msgBody": "notice", "bizType": 9}),
    )
    .await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(
        (answers[0]["seq"].as_u64(), answers[1]["seq"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(answers[2]["code"], 400);
    let got = bob.recv_type(3).await;
    assert_eq!(
        (got["msgBody"].as_str(), got["bizType"].as_i64()),
        (Some("notice"), Some(9))
    );
    // History answers like msgType 7.
    let (_, page) = api(&s, "GET", "/api/history?roomId=r&since=1", Value::Null).await;
    assert_eq!(page["msgType"], 7);
    assert_eq!(page["seq"], 2);
    let bodies: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["msgBody"])
        .collect();
    assert_eq!(bodies, [&json!(3)]);
    let (_, inbox) = api(&s, "GET", "/api/history?userId=cat", Value::Null).await;
    assert_eq!(inbox["messages"][0]["msgBody"], "notice");
    bob.send(&json!({"msgType": 7, "since": 0})).await;
    let own = bob.recv_type(7).await;
    let (_, api_inbox) = api(&s, "GET", "/api/history?userId=bob", Value::Null).await;
    assert_eq!(
        own["messages"], api_inbox["messages"],
        "the same page either way"
    );
    let (status, _) = api(&s, "GET", "/api/history?limit=5", Value::Null).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_openapi_document_matches_the_real_routes() {
    let s = Server::start(&["--api-key", KEY]);
    let (status, text) = s.http("GET", "/api/openapi.json", &[], "").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "GET /api/events",
            "GET /api/history",
            "GET /api/nodes",
            "GET /api/presence",
            "GET /api/rooms",
            "POST /api/amend",
            "POST /api/broadcast",
            "POST /api/disconnect",
            "POST /api/join",
            "POST /api/leave",
            "POST /api/publish",
        ]
    );
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        // Every documented route is served and guarded by the key...
        let (status, body) = s
            .http(method, path, &[], if method == "POST" { "{}" } else { "" })
            .await;
        assert_eq!(status, 401, "{route}: {body}");
        // ...and only with its documented method.
        let other = if method == "POST" { "GET" } else { "POST" };
        let (status, _) = s
            .http(other, path, &[], if other == "POST" { "{}" } else { "" })
            .await;
        assert_eq!(status, 405, "{other} {path}");
        // Its request body and answers are described.
        let op = &paths[path][method.to_lowercase()];
        assert!(op["responses"]["200"].is_object(), "{route}");
        if method == "POST" {
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{route}"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["apikey"]["name"],
        "Authorization"
    );
}

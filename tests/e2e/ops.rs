//! Operations: metrics that move with real traffic, a separate metrics
//! listener, a drain that loses no acked message, logs without secrets, a
//! closed stdout that stops nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::common::{Client, End, Server, http_request};

fn metric(m: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_real_traffic() {
    let s = Server::start(&["--rate-limit", "1"]);
    let before = s.metrics().await;
    assert_eq!(metric(&before, r#"rtgate_logins_total{result="ok"}"#), 0.0);

    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 1, "clientMsgId": "m1"}))
        .await;
    a.recv_type(4).await;
    b.recv().await;
    // A login that fails, and a frame that is malformed.
    let mut nobody = Client::connect(&s.ws_url("/ws")).await;
    nobody.send(&json!({"msgType": 2})).await;
    assert_eq!(nobody.expect_end().await, End::Closed(4401));
    b.send_text("{").await;
    assert_eq!(b.recv().await["code"], 400);
    // A flood that ends in a rate-limit close.
    for _ in 0..8 {
        b.send(&json!({"msgType": 8, "userIds": ["a"]})).await;
    }
    assert_eq!(b.expect_end().await, End::Closed(4429));
    drop((nobody, b));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let m = s.metrics().await;
    assert_eq!(metric(&m, r#"rtgate_logins_total{result="ok"}"#), 2.0);
    assert_eq!(
        metric(&m, r#"rtgate_logins_total{result="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        metric(&m, r#"rtgate_connections{transport="websocket"}"#),
        1.0,
        "only a is still connected"
    );
    assert_eq!(
        metric(&m, r#"rtgate_connections_total{transport="websocket"}"#),
        3.0
    );
    assert_eq!(metric(&m, "rtgate_sessions"), 1.0);
    assert_eq!(
        metric(&m, r#"rtgate_closes_total{reason="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        metric(&m, r#"rtgate_closes_total{reason="rate_limited"}"#),
        1.0
    );
    assert_eq!(metric(&m, r#"rtgate_client_errors_total{code="400"}"#), 1.0);
    assert!(metric(&m, r#"rtgate_client_errors_total{code="429"}"#) >= 1.0);
    assert!(metric(&m, "rtgate_deliveries_total") >= 1.0);
    assert!(metric(&m, "rtgate_broker_published_total") >= 1.0);
    assert!(metric(&m, r#"rtgate_frames_in_total{transport="websocket"}"#) >= 8.0);
    assert!(metric(&m, r#"rtgate_frames_out_total{transport="websocket"}"#) >= 5.0);
    assert!(metric(&m, "rtgate_store_write_seconds_count") >= 1.0);
    assert!(metric(&m, "rtgate_store_batch_size_count") >= 1.0);
    assert!(metric(&m, "rtgate_outbound_queue_depth_count") >= 1.0);

    // Replays are counted too.
    let (_b2, _) = Client::login(&s, "b").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = s.metrics().await;
    assert!(metric(&m, r#"rtgate_replayed_messages_total{channel="inbox"}"#) >= 1.0);
    drop(a);
}

#[tokio::test]
async fn metrics_can_have_their_own_address() {
    let s = Server::start(&["--metrics", "127.0.0.1:0"]);
    let addr = s.metrics.expect("the metrics address is printed");
    assert_eq!(
        s.http("GET", "/metrics", &[], "").await.0,
        404,
        "not on the public listener"
    );
    let (status, body) = http_request(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("rtgate_sessions"), "{body}");
}

#[tokio::test]
async fn a_drain_loses_no_acked_message() {
    let mut s = Server::start(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let (mut a, _) = Client::login(&s, "a").await;
    let acks = Arc::new(AtomicUsize::new(0));
    let counter = acks.clone();
    // Keep sending to an offline user until the node says it is going away.
    let sender = tokio::spawn(async move {
        let mut acked = HashSet::new();
        let mut i = 0u64;
        let end = loop {
            tokio::select! {
                biased;
                frame = a.next_json_or_end() => match frame {
                    Ok(v) if v["msgType"] == 4 => {
                        acked.insert(v["msgId"].as_str().unwrap().to_string());
                        counter.store(acked.len(), Ordering::Release);
                    }
                    Ok(_) => {}
                    Err(end) => break end,
                },
                _ = tokio::time::sleep(Duration::from_millis(1)), if i < 20_000 => {
                    i += 1;
                    let m = json!({"msgType": 3, "receivedUserId": "offline", "msgBody": i, "clientMsgId": format!("c{i}")});
                    a.try_send(&m).await;
                }
            }
        };
        (acked, end)
    });
    // Let some traffic flow, then SIGTERM the node mid-stream.
    while acks.load(Ordering::Acquire) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, s) = tokio::task::spawn_blocking(move || (s.terminate(), s))
        .await
        .unwrap();
    let (acked, end) = sender.await.unwrap();
    assert_eq!(end, End::Closed(1001));
    assert!(status.success(), "{status:?}");
    // Restart on the same data: every acked message is there.
    let s = Server::start_in(s.kill_keep_data(), &[], &[]);
    let mut offline = Client::connect(&s.ws_url("/ws")).await;
    let reply = offline
        .login_as(json!({"msgType": 2, "sendUserId": "offline"}))
        .await;
    let total = reply["inboxSeq"].as_u64().unwrap();
    assert!(
        total >= acked.len() as u64,
        "{total} stored < {} acked",
        acked.len()
    );
    let mut stored = HashSet::new();
    for _ in 0..total {
        stored.insert(offline.recv().await["msgId"].as_str().unwrap().to_string());
    }
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acked but lost across the drain: {lost:?}");
}

#[tokio::test]
async fn logs_are_json_with_session_spans_and_hold_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rtgate.log");
    let secret = "jwt-secret-DO-NOT-LOG";
    let key = "api-key-DO-NOT-LOG";
    let s = Server::start_logged(
        tempfile::tempdir().unwrap(),
        &[
            "--log-format",
            "json",
            "--jwt-secret",
            secret,
            "--api-key",
            key,
        ],
        &[("RUST_LOG", "debug")],
        Some(&log),
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut c = Client::connect(&s.ws_url(&format!("/ws?token={token}"))).await;
    c.login_as(json!({"msgType": 2, "token": token})).await;
    let auth = format!("apikey {key}");
    let (status, _) = s
        .http(
            "POST",
            "/api/publish",
            &[("authorization", &auth)],
            r#"{"receivedUserId":"alice","msgBody":1}"#,
        )
        .await;
    assert_eq!(status, 200);
    c.recv().await;
    let mut bad = Client::connect(&s.ws_url("/ws")).await;
    bad.send(&json!({"msgType": 2, "token": "forged.token.value"}))
        .await;
    bad.expect_end().await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    for needle in [secret, key, token.as_str(), "forged.token.value"] {
        assert!(!text.contains(needle), "the log holds a secret: {needle}");
    }
    let login = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .find(|v| v["fields"]["message"] == "logged in")
        .expect("a login line");
    let span = &login["span"];
    assert_eq!(span["name"], "session");
    assert_eq!(span["user"], "alice");
    assert_eq!(span["transport"], "websocket");
    assert!(span["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}

/// A server whose stdout reader went away (a wrapper or log pipe that
/// exited) keeps serving: its "listening" line meets a closed pipe.
#[test]
fn a_closed_stdout_pipe_does_not_stop_the_server() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .args([
            "--http",
            &format!("127.0.0.1:{port}"),
            "--wt",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtgate starts");
    // The reading end closes before the server writes its first line.
    drop(child.stdout.take());
    let healthz = || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    };
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        healthz()
    });
    // The listening line is written once the listeners are up: by now it
    // has met the closed pipe.
    std::thread::sleep(Duration::from_secs(1));
    let still_running = child.try_wait().expect("try_wait").is_none();
    let still_up = healthz();
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the server came up");
    assert!(
        still_running && still_up,
        "the server still runs and answers"
    );
}

/// `rtgate print-config | head` and `rtgate gen-cert | true`: the commands
/// that print meet a reader that is already gone, and end quietly.
#[test]
fn printing_commands_end_quietly_when_their_reader_is_gone() {
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().expect("temp dir");
    for args in [&["print-config"][..], &["gen-cert"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtgate"))
            .arg("--data")
            .arg(data.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rtgate starts");
        // The reading end closes before the command writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("rtgate ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Issue 27, item 12: the operator's page (which holds an API key once
/// typed) cannot be framed, and runs only its own script and style.
#[tokio::test]
async fn the_admin_page_forbids_framing_and_foreign_scripts() {
    use base64::Engine;
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start(&[]);
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // The page's own inline script is the one the policy allows.
    let start = body.find("<script>").unwrap() + "<script>".len();
    let end = start + body[start..].find("</script>").unwrap();
    let digest = sha2::Sha256::digest(&body.as_bytes()[start..end]);
    let want = format!(
        "script-src 'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    assert!(csp.contains(&want), "{csp} lacks {want}");
    assert!(!body.contains("style=\""), "no inline style attributes");
}

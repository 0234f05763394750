//! The Rust example chat clients (`examples/ws_client.rs`,
//! `examples/wt_client.rs`) outlive their server: when it goes away they
//! come back after a jittered back-off, rejoin their rooms and replay with
//! `since` only what they missed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::common::{Client, Server, example};

/// An example client for `user`, its stdout read line by line.
fn spawn(bin: &str, target: String, user: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(example(bin))
        .args([target, user.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (cargo test builds the examples)"));
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, out)
}

/// The next frame the client printed that contains `needle`.
async fn until(out: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> Value {
    let mut skipped = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle} in 20 s; printed {skipped:?}"))
            .unwrap()
            .expect("the client is running");
        if line.contains(needle) {
            return serde_json::from_str(&line).unwrap();
        }
        skipped.push(line);
    }
}

/// Reads until the client printed a frame with each of `needles`, in any
/// order.
async fn until_all(out: &mut Lines<BufReader<ChildStdout>>, needles: &[&str]) {
    let mut printed: Vec<String> = Vec::new();
    while !needles
        .iter()
        .all(|n| printed.iter().any(|l| l.contains(n)))
    {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .unwrap_or_else(|_| panic!("not all of {needles:?} in 20 s; printed {printed:?}"))
            .unwrap()
            .expect("the client is running");
        printed.push(line);
    }
}

/// Alice, logged in and in the room `lobby`.
async fn alice(s: &Server) -> Client {
    let (mut a, _) = Client::login(s, "alice").await;
    a.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    a.recv_type(5).await;
    a
}

/// Alice sends `body` to the user `cli` and to the room; both are stored.
async fn send_both(a: &mut Client, body: &str) {
    a.send(&json!({"msgType": 3, "receivedUserId": "cli", "msgBody": format!("{body} direct")}))
        .await;
    a.recv_type(4).await;
    a.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("{body} room")}))
        .await;
    a.recv_type(4).await;
}

/// Runs one client through a server that goes away (`crash`: SIGKILL, else
/// SIGTERM) and comes back on the same ports and data.
async fn comes_back(bin: &str, crash: bool) {
    let s = Server::start(&[]);
    let target = match bin {
        "ws_client" => s.ws_url("/ws"),
        _ => format!("http://{}", s.http),
    };
    let (mut child, mut out) = spawn(bin, target, "cli");
    until(&mut out, r#""msgType":2"#).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"/join lobby\n").await.unwrap();
    until(&mut out, r#""msgType":5"#).await;
    let mut a = alice(&s).await;
    send_both(&mut a, "before").await;
    // In either order: on WebTransport the direct message and the room's
    // travel on streams of their own, and nothing orders one channel
    // against another (a test that waited for one and skipped what came
    // before it lost the room's message under load).
    until_all(&mut out, &["before direct", "before room"]).await;
    drop(a);
    let place = if crash {
        s.kill_keep_place()
    } else {
        s.terminate_keep_place()
    };
    let s = Server::start_at(place, &[]);
    // Sent while the client may still be away: it gets them from the
    // replay or live, once each, and nothing it had already printed.
    let mut a = alice(&s).await;
    send_both(&mut a, "after").await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !["after direct", "after room"]
        .iter()
        .all(|m| seen.iter().any(|l: &String| l.contains(m)))
    {
        let line = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("{bin} did not come back: printed {seen:?}"))
            .unwrap()
            .expect("the client is running");
        seen.push(line);
    }
    // Anything more would come right behind the replay.
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(500), out.next_line()).await
    {
        seen.push(line);
    }
    for m in ["after direct", "after room"] {
        assert_eq!(
            seen.iter().filter(|l| l.contains(m)).count(),
            1,
            "{m}: {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|l| l.contains("before")),
        "replayed what it had already printed: {seen:?}"
    );
    // And it chats on the new connection: a line typed now reaches alice.
    stdin.write_all(b"@alice still here\n").await.unwrap();
    assert_eq!(a.recv_type(3).await["msgBody"]["text"], "still here");
}

#[tokio::test]
async fn the_websocket_example_client_comes_back_after_a_crash_and_replays_only_what_it_missed() {
    comes_back("ws_client", true).await;
}

#[tokio::test]
async fn the_webtransport_example_client_comes_back_after_a_restart_and_replays_only_what_it_missed()
 {
    comes_back("wt_client", false).await;
}

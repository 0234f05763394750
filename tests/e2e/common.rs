//! Test harness: starts the real `rtgate` binary on ephemeral loopback ports
//! and talks to it with real WebSocket and HTTP clients.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any expected frame.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Where a killed server ran: its ports and its data folder.
pub(crate) struct Place {
    pub(crate) http: SocketAddr,
    pub(crate) wt: SocketAddr,
    pub(crate) data: tempfile::TempDir,
}

/// A running `rtgate` process, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// The HTTP/WebSocket address it bound.
    pub(crate) http: SocketAddr,
    /// Its data folder (removed on drop).
    pub(crate) data: tempfile::TempDir,
    /// The metrics address, when started with `--metrics`.
    pub(crate) metrics: Option<SocketAddr>,
    /// The WebTransport (UDP) address.
    pub(crate) wt: SocketAddr,
}

impl Server {
    /// Starts the binary with default test options plus `args`.
    pub(crate) fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Starts the binary with extra arguments and environment variables.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, args, env)
    }

    /// Starts the binary on a given data folder.
    pub(crate) fn start_in(data: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_logged(data, args, env, None)
    }

    /// Starts the binary; its log (stderr) goes to `log` when given.
    pub(crate) fn start_logged(
        data: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Server {
        Self::launch(&[], &["127.0.0.1:0", "127.0.0.1:0"], data, args, env, log)
    }

    /// Starts the binary under `wrapper` (e.g. `ip netns exec NS`) on every
    /// address (for the network lab); `http` and `wt` hold `0.0.0.0:PORT`.
    pub(crate) fn start_wrapped(wrapper: &[String], args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        Self::launch(wrapper, &["0.0.0.0:0", "0.0.0.0:0"], data, args, &[], None)
    }

    /// Starts the binary on one core (`taskset -c 0`): tokio runs one
    /// worker thread, so a task that never yields holds up every other.
    pub(crate) fn start_on_one_core(args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let wrapper = ["taskset", "-c", "0"].map(String::from);
        Self::launch(
            &wrapper,
            &["127.0.0.1:0", "127.0.0.1:0"],
            data,
            args,
            &[],
            None,
        )
    }

    fn launch(
        wrapper: &[String],
        [http, wt]: &[&str; 2],
        data: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Server {
        let bin = env!("CARGO_BIN_EXE_rtgate");
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["--http", http, "--wt", wt, "--data"])
            .arg(data.path())
            .args(args);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("rtgate starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (http, wt, metrics) = loop {
            let line = lines
                .next()
                .expect("rtgate printed its address")
                .expect("stdout line");
            if let Some(rest) = line.strip_prefix("rtgate listening http=") {
                let mut words = rest.split_whitespace();
                let http = words.next().unwrap().parse().expect("address");
                let wt = words
                    .next()
                    .and_then(|w| w.strip_prefix("wt="))
                    .expect("the wt address")
                    .parse()
                    .expect("wt address");
                let metrics = words
                    .next()
                    .and_then(|w| w.strip_prefix("metrics="))
                    .map(|a| a.parse().expect("metrics address"));
                break (http, wt, metrics);
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            http,
            data,
            metrics,
            wt,
        }
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.http, path)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }

    /// Kills the process (SIGKILL) and hands back its data folder, for a
    /// restart on the same data.
    pub(crate) fn kill_keep_data(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"))
    }

    /// Kills the process (SIGKILL) and hands back its ports and data, for a
    /// restart in place ([`Server::start_at`]), as a node that crashed and
    /// came back.
    pub(crate) fn kill_keep_place(self) -> Place {
        let (http, wt) = (self.http, self.wt);
        Place {
            http,
            wt,
            data: self.kill_keep_data(),
        }
    }

    /// Stops the process with SIGTERM (as a deploy does: sessions are closed
    /// with 1001) and hands back its ports and data, for a restart in place.
    pub(crate) fn terminate_keep_place(mut self) -> Place {
        self.terminate();
        self.kill_keep_place()
    }

    /// Starts the binary on the ports and data a killed one left.
    pub(crate) fn start_at(place: Place, args: &[&str]) -> Server {
        let (http, wt) = (place.http.to_string(), place.wt.to_string());
        Self::launch(&[], &[&http, &wt], place.data, args, &[], None)
    }

    /// The process's resident set size, in bytes (from /proc).
    pub(crate) fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server is running");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kb * 1024
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// A plain HTTP request; returns status and body.
    pub(crate) async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http_request(self.http, method, path, headers, body).await
    }

    /// `GET /metrics` (on the metrics listener when there is one), parsed
    /// into `name{labels}` -> value.
    pub(crate) async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let addr = self.metrics.unwrap_or(self.http);
        let (status, text) = http_request(addr, "GET", "/metrics", &[], "").await;
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
            .collect()
    }
}

/// A plain HTTP request to `addr`; returns status and body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // A body is JSON unless the test says otherwise (the API refuses others).
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .expect("http");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket test client.
pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A close frame with this code.
    Closed(u16),
    /// The connection dropped without a close frame.
    Dropped,
}

impl Client {
    /// Connects to a URL.
    pub(crate) async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Connects with an `Origin` header; returns the HTTP status on refusal.
    pub(crate) async fn connect_with_origin(url: &str, origin: &str) -> Result<Client, u16> {
        Self::connect_with_headers(url, &[("origin", origin)]).await
    }

    /// Connects with extra request headers; returns the HTTP status on refusal.
    pub(crate) async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects to `/ws` and logs in as `user`; returns the client and the login reply.
    pub(crate) async fn login(server: &Server, user: &str) -> (Client, Value) {
        let mut c = Client::connect(&server.ws_url("/ws")).await;
        let reply = c.login_as(json!({"msgType": 2, "sendUserId": user})).await;
        (c, reply)
    }

    /// Sends a login frame and returns the reply, which must be msgType 2.
    pub(crate) async fn login_as(&mut self, frame: Value) -> Value {
        self.send(&frame).await;
        let reply = self.recv().await;
        assert_eq!(reply["msgType"], 2, "login reply: {reply}");
        reply
    }

    /// Sends a JSON frame.
    pub(crate) async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// Sends `n` WebSocket Ping frames in one write.
    pub(crate) async fn send_pings(&mut self, n: usize) {
        for _ in 0..n {
            let ping = Message::Ping(b"hb".to_vec().into());
            self.ws.feed(ping).await.expect("ping sent");
        }
        self.ws.flush().await.expect("pings sent");
    }

    /// Sends `n` text frames of `s` in one write.
    pub(crate) async fn send_texts(&mut self, s: &str, n: usize) {
        for _ in 0..n {
            let text = Message::text(s.to_string());
            self.ws.feed(text).await.expect("frame sent");
        }
        self.ws.flush().await.expect("frames sent");
    }

    /// Sends a raw text frame.
    pub(crate) async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_string()))
            .await
            .expect("send");
    }

    /// Sends a raw binary frame.
    pub(crate) async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::binary(b)).await.expect("send");
    }

    /// The next text frame, as text; panics after [`WAIT`].
    pub(crate) async fn recv_text(&mut self) -> String {
        self.recv_text_within(WAIT).await
    }

    /// The next text frame, waiting up to `wait`.
    pub(crate) async fn recv_text_within(&mut self, wait: Duration) -> String {
        loop {
            match tokio::time::timeout(wait, self.ws.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next JSON frame.
    pub(crate) async fn recv(&mut self) -> Value {
        let t = self.recv_text().await;
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
    }

    /// The next JSON frame of a given msgType, skipping others.
    pub(crate) async fn recv_type(&mut self, msg_type: i64) -> Value {
        loop {
            let v = self.recv().await;
            if v["msgType"] == msg_type {
                return v;
            }
        }
    }

    /// Asserts nothing arrives (besides pings) for `d`.
    pub(crate) async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the connection ends; returns how, skipping other frames.
    pub(crate) async fn expect_end(&mut self) -> End {
        loop {
            match tokio::time::timeout(WAIT * 2, self.ws.next())
                .await
                .expect("connection ends in time")
            {
                Some(Ok(Message::Close(Some(f)))) => return End::Closed(f.code.into()),
                Some(Ok(Message::Close(None))) => return End::Closed(1005),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return End::Dropped,
            }
        }
    }
}

impl Client {
    /// Connects over a socket with a tiny receive buffer, to play a client
    /// that cannot keep up.
    pub(crate) async fn connect_small_buffer(url: &str) -> Client {
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("ws");
        Client { ws }
    }
}

/// Runs the binary with `args`, expects it to refuse to start, and returns
/// what it printed on stderr.
pub(crate) fn refuses_to_start(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .args(args)
        .output()
        .expect("rtgate runs");
    assert!(!out.status.success(), "rtgate started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Client {
    /// The next JSON frame, or how the connection ended. No time limit.
    pub(crate) async fn next_json_or_end(&mut self) -> Result<Value, End> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())));
                }
                Some(Ok(Message::Close(Some(f)))) => return Err(End::Closed(f.code.into())),
                Some(Ok(Message::Close(None))) => return Err(End::Closed(1005)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(End::Dropped),
            }
        }
    }

    /// Sends JSON frames in one write.
    pub(crate) async fn send_all(&mut self, frames: &[Value]) {
        for v in frames {
            self.ws
                .feed(Message::text(v.to_string()))
                .await
                .expect("frame sent");
        }
        self.ws.flush().await.expect("frames sent");
    }

    /// Sends a JSON frame, ignoring a connection that is closing.
    pub(crate) async fn try_send(&mut self, v: &Value) {
        let _ = self.ws.send(Message::text(v.to_string())).await;
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 token over `claims`, signed with `secret`.
pub(crate) fn jwt(secret: &str, claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

impl Client {
    /// A clean close: sends a close frame and waits for the server's.
    pub(crate) async fn close(&mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8
/// is all this host's, so tests can play several clients).
pub(crate) async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.expect("tcp connect")
}

impl Client {
    /// Connects to `url` on `server` from the loopback address `from`;
    /// `None` when the server closed the connection instead.
    pub(crate) async fn connect_from(server: &Server, from: &str, path: &str) -> Option<Client> {
        let stream = tcp_from(from, server.http).await;
        let url = server.ws_url(path);
        match tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await {
            Ok((ws, _)) => Some(Client { ws }),
            Err(_) => None,
        }
    }
}

impl Client {
    /// Logs in as `user`, retrying while the node refuses logins (a node
    /// of a cluster does while it reconnects to Redis).
    pub(crate) async fn login_retrying(server: &Server, user: &str) -> (Client, Value) {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let mut c = Client::connect(&server.ws_url("/ws")).await;
            c.send(&json!({"msgType": 2, "sendUserId": user})).await;
            let reply = c.recv().await;
            if reply["msgType"] == 2 {
                return (c, reply);
            }
            assert_eq!(reply["code"], 503, "a refusal while reconnecting: {reply}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "logins stayed refused"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// After ghost's inbox (which held seqs 1 and 2) was reset: alice's next
/// message to ghost starts the channel anew at seq 1, and a ghost client
/// still at position 2 is told (`unrecovered`) and gets it from the start.
pub(crate) async fn reset_is_reported_and_replayed(server: &Server, alice: &mut Client) {
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "ghost", "clientMsgId": "new", "msgBody": "new"}))
        .await;
    assert_eq!(
        alice.recv_type(4).await["seq"],
        1,
        "the channel started anew"
    );
    let mut ghost = Client::connect(&server.ws_url("/ws")).await;
    let reply = ghost
        .login_as(json!({"msgType": 2, "sendUserId": "ghost", "since": {"inbox": 2}}))
        .await;
    assert_eq!(reply["unrecovered"], json!(["inbox"]), "{reply}");
    let m = ghost.recv_type(3).await;
    assert_eq!(
        (m["seq"].as_i64(), m["msgBody"].as_str()),
        (Some(1), Some("new"))
    );
}

/// Path of an example binary built next to this test binary
/// (`cargo build --examples`, which scripts/test.sh runs first).
pub(crate) fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

impl Client {
    /// Reads until the server's close frame; its code and reason.
    pub(crate) async fn expect_close_frame(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT * 2, self.ws.next())
                .await
                .expect("connection ends in time")
            {
                Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

//! A WebTransport test client: `tests/wt/client.py` (aioquic, an
//! implementation independent of ours) driven over JSON lines.

use std::collections::VecDeque;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::common::{Server, WAIT};

pub(crate) struct WtClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read while waiting for another kind: frames with the stream
    /// they came on.
    frames: VecDeque<(Value, u64)>,
    datagrams: VecDeque<Value>,
    /// Server-opened streams the server has finished.
    pub(crate) ended_streams: Vec<u64>,
    /// SHA-256 (hex) of the certificate the server presented.
    pub(crate) cert_hash: String,
    /// The server's SETTINGS as the client received them (hex ids).
    pub(crate) server_settings: Value,
    /// Why the client would not send its CONNECT (a browser's check of the
    /// server's SETTINGS failed), if it would not.
    pub(crate) refused: Option<String>,
    /// Flow-control capsules from the server, in order.
    pub(crate) credits: Vec<Value>,
    /// Server-opened streams the client ignored (past `--stream-cap`).
    pub(crate) dropped_streams: u64,
}

impl WtClient {
    /// Opens a session at `url`; returns the client and the CONNECT status.
    pub(crate) async fn connect(url: &str, origin: Option<&str>) -> (WtClient, u16) {
        Self::connect_from(None, url, origin).await
    }

    /// Opens a session at `url` from inside network namespace `ns` (the
    /// network lab's client side).
    pub(crate) async fn connect_in(ns: &str, url: &str) -> (WtClient, u16) {
        Self::connect_from(Some(ns), url, None).await
    }

    /// Opens a session at `url` with extra arguments for the client
    /// (`--window BYTES`: the flow-control credit it grants at first;
    /// `--browser NAME`: the browser it imitates; see the script).
    pub(crate) async fn connect_args(url: &str, args: &[&str]) -> (WtClient, u16) {
        Self::spawn(None, url, None, args).await
    }

    async fn connect_from(ns: Option<&str>, url: &str, origin: Option<&str>) -> (WtClient, u16) {
        Self::spawn(ns, url, origin, &[]).await
    }

    async fn spawn(
        ns: Option<&str>,
        url: &str,
        origin: Option<&str>,
        args: &[&str],
    ) -> (WtClient, u16) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wt/client.py");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        cmd.arg(script).arg(url);
        if let Some(o) = origin {
            cmd.args(["--origin", o]);
        }
        cmd.args(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (aioquic is installed by scripts/test.sh)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = WtClient {
            child,
            stdin,
            lines,
            frames: VecDeque::new(),
            datagrams: VecDeque::new(),
            ended_streams: Vec::new(),
            cert_hash: String::new(),
            server_settings: Value::Null,
            refused: None,
            credits: Vec::new(),
            dropped_streams: 0,
        };
        loop {
            let e = c.event().await;
            if let Some(h) = e["cert_hash"].as_str() {
                c.cert_hash = h.to_string();
            } else if e.get("credit").is_some() {
                // Recorded by `event`.
            } else if e.get("server_settings").is_some() {
                c.server_settings = e["server_settings"].clone();
            } else if let Some(r) = e["refused"].as_str() {
                c.refused = Some(r.to_string());
                return (c, 0);
            } else if let Some(s) = e["connected"].as_u64() {
                return (c, s as u16);
            } else if e.get("closed").is_some() {
                return (c, 0);
            } else {
                panic!("unexpected before CONNECT answer: {e}");
            }
        }
    }

    /// Opens a session to the server's `/wt` and logs in as `user`.
    pub(crate) async fn login(server: &Server, user: &str) -> (WtClient, Value) {
        let (mut c, status) = WtClient::connect(&wt_url(server, "/wt"), None).await;
        assert_eq!(status, 200);
        c.send(&json!({"msgType": 2, "sendUserId": user})).await;
        let reply = c.recv().await;
        assert_eq!(reply["msgType"], 2, "{reply}");
        (c, reply)
    }

    async fn command(&mut self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("client stdin");
        self.stdin.flush().await.unwrap();
    }

    /// Sends one frame on the stream.
    pub(crate) async fn send(&mut self, v: &Value) {
        self.command(json!({ "send": v })).await;
    }

    /// Sends one frame holding literal text.
    pub(crate) async fn send_text(&mut self, t: &str) {
        self.command(json!({ "text": t })).await;
    }

    /// Sends raw bytes on the stream.
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.command(json!({ "raw": hex })).await;
    }

    /// Sends one datagram.
    pub(crate) async fn send_datagram(&mut self, v: &Value) {
        self.command(json!({ "datagram": v })).await;
    }

    async fn event(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("an event in time")
            .expect("client stdout")
            .expect("the client is running");
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert!(v.get("error").is_none(), "client failed: {v}");
        assert!(
            v.get("violation").is_none(),
            "the server broke the client's flow-control limits: {v}"
        );
        if v.get("credit").is_some() {
            self.credits.push(v["credit"].clone());
        }
        if v.get("stream_dropped").is_some() {
            self.dropped_streams += 1;
        }
        v
    }

    /// The next event as the client reported it, whatever it is (frames
    /// and datagrams carry `at`, when they came, in ms).
    pub(crate) async fn next_raw(&mut self) -> Value {
        self.event().await
    }

    /// Sends the client's own WebTransport flow-control grant
    /// (`{"max_data": N}` or `{"max_streams_uni": N}`).
    pub(crate) async fn grant(&mut self, credit: Value) {
        self.command(credit).await;
    }

    /// Closes the connection from the client side.
    pub(crate) async fn close(&mut self) {
        self.command(json!({ "close": true })).await;
    }

    /// The next frame from the stream.
    pub(crate) async fn recv(&mut self) -> Value {
        self.recv_on().await.0
    }

    /// The next frame and the stream it came on (the client's own, or one
    /// the server opened for a channel).
    pub(crate) async fn recv_on(&mut self) -> (Value, u64) {
        if let Some(f) = self.frames.pop_front() {
            return f;
        }
        loop {
            let mut e = self.event().await;
            if let Some(f) = e.get_mut("frame") {
                return (f.take(), e["stream"].as_u64().unwrap_or(0));
            } else if let Some(d) = e.get_mut("datagram") {
                self.datagrams.push_back(d.take());
            } else if e.get("closed").is_some() || e["main"] == true {
                panic!("expected a frame, the session ended: {e}");
            } else if e.get("stream_end").is_some() {
                self.ended_streams.push(e["stream"].as_u64().unwrap_or(0));
            }
        }
    }

    /// The next frame of a given msgType.
    pub(crate) async fn recv_type(&mut self, t: i64) -> Value {
        loop {
            let v = self.recv().await;
            if v["msgType"] == t {
                return v;
            }
        }
    }

    /// The next datagram.
    pub(crate) async fn recv_datagram(&mut self) -> Value {
        if let Some(d) = self.datagrams.pop_front() {
            return d;
        }
        loop {
            let mut e = self.event().await;
            if let Some(d) = e.get_mut("datagram") {
                return d.take();
            } else if let Some(f) = e.get_mut("frame") {
                self.frames
                    .push_back((f.take(), e["stream"].as_u64().unwrap_or(0)));
            } else if e.get("closed").is_some() {
                panic!("expected a datagram, the session ended: {e}");
            }
        }
    }

    /// Reads until the connection closes; returns the close code, skipping
    /// other events. A session close capsule before it must carry the same
    /// code (the server sends both: the capsule for browsers, the QUIC code
    /// for clients that read only that).
    pub(crate) async fn expect_closed(&mut self) -> u64 {
        let mut capsule = None;
        loop {
            let e = self.event().await;
            if let Some(code) = e["session_closed"].as_u64() {
                capsule = Some(code);
            }
            if let Some(code) = e["closed"].as_u64() {
                if let Some(c) = capsule {
                    assert_eq!(c, code, "capsule and QUIC close codes differ");
                }
                return code;
            }
        }
    }

    /// Reads until the server closes the session with a capsule; returns
    /// its code and reason.
    pub(crate) async fn expect_session_closed(&mut self) -> (u64, String) {
        loop {
            let e = self.event().await;
            if let Some(code) = e["session_closed"].as_u64() {
                return (code, e["reason"].as_str().unwrap_or("").to_string());
            }
            assert!(e.get("closed").is_none(), "closed without a capsule: {e}");
        }
    }

    /// Moves the connection to a new UDP socket (connection migration);
    /// answers the new local port.
    pub(crate) async fn rebind(&mut self) -> u16 {
        self.rebind_to(None).await
    }

    /// Moves the connection to a new UDP socket bound to `address` (another
    /// of this host's addresses) when given; answers the new local port.
    pub(crate) async fn rebind_to(&mut self, address: Option<&str>) -> u16 {
        let target = address.map_or(json!(true), |a| json!(a));
        self.command(json!({ "rebind": target })).await;
        loop {
            let mut e = self.event().await;
            if let Some(p) = e["rebound"].as_u64() {
                return p as u16;
            } else if let Some(f) = e.get_mut("frame") {
                self.frames
                    .push_back((f.take(), e["stream"].as_u64().unwrap_or(0)));
            } else if let Some(d) = e.get_mut("datagram") {
                self.datagrams.push_back(d.take());
            }
        }
    }

    /// Stops granting the server flow-control credit, as a client that
    /// stopped reading does (it still answers at the QUIC level).
    pub(crate) async fn withhold_credit(&mut self) {
        self.command(json!({ "withhold": true })).await;
    }

    /// The client's process id (to freeze it with SIGSTOP).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

/// `https://127.0.0.1:PORT{path}` for the server's WebTransport endpoint.
pub(crate) fn wt_url(server: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}{}", server.wt.port(), path)
}

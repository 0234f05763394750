//! Real headless browsers: Chromium (driven through chromedriver) and
//! Firefox ESR (through geckodriver). The demo page and client.js (`demo`),
//! the client package: reload-resume and the outbox (`package`),
//! WebTransport's browser-facing behaviour: close codes, fast fallback,
//! certificate rotation (`webtransport`), and the same in Firefox, with
//! Chromium and WebSocket users in the conversation (`firefox`).

mod admin;
mod demo;
mod firefox;
mod package;
mod push;
mod safari;
mod webtransport;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::common::Server;

/// A chromedriver process on a free loopback port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
    _profiles: tempfile::TempDir,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("chromedriver");
        cmd.args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()]);
        Self::launch(cmd, ("127.0.0.1", port))
    }

    /// A chromedriver (and so its Chromium) inside network namespace `ns`,
    /// reached at `addr` over the lab's control link; the browser's own
    /// traffic takes the namespace's routes.
    pub(crate) fn start_in(ns: &str, addr: &str, from: &str) -> Driver {
        let port = 9515;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "chromedriver"])
            .arg(format!("--port={port}"))
            .arg(format!("--allowed-ips={from}"));
        Self::launch(cmd, (addr, port))
    }

    fn launch(mut cmd: Command, (host, port): (&str, u16)) -> Driver {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is installed (Debian package chromium-driver; .ci/run installs it)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host, port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://{host}:{port}"),
            _profiles: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) async fn browser(&self, name: &str) -> Browser {
        self.browser_with(name, &[]).await
    }

    /// A browser with extra command-line switches.
    pub(crate) async fn browser_with(&self, name: &str, extra: &[String]) -> Browser {
        let profile = self._profiles.path().join(name);
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        // A switch given again in `extra` replaces the default.
        for e in extra {
            let name = e.split('=').next().unwrap_or(e);
            args.retain(|a| a.split('=').next() != Some(name));
        }
        args.extend_from_slice(extra);
        let caps = json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        session(&self.url, caps, "a Chromium session").await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session with these capabilities.
async fn session(driver: &str, caps: serde_json::Value, what: &str) -> Browser {
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A geckodriver process driving one headless Firefox (geckodriver runs one
/// session at a time), with a profile folder of its own; killed on drop.
pub(crate) struct Gecko {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Gecko {
    pub(crate) fn start() -> Gecko {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("geckodriver")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("geckodriver is installed (scripts/test.sh: cargo install geckodriver)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "geckodriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Gecko {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    /// The profile Firefox will use (to install certificates before
    /// [`Gecko::browser`]).
    pub(crate) fn profile(&self) -> &std::path::Path {
        self.profile.path()
    }

    pub(crate) async fn browser(&self) -> Browser {
        self.browser_with_prefs(json!({})).await
    }

    /// A browser with extra preferences.
    pub(crate) async fn browser_with_prefs(&self, extra: serde_json::Value) -> Browser {
        let mut caps = json!({
            "moz:firefoxOptions": {
                "binary": "/usr/bin/firefox-esr",
                "args": ["-headless", "-profile", self.profile.path().to_str().unwrap()],
                "prefs": {
                    "network.http.http3.enable": true,
                    "network.webtransport.enabled": true,
                    "network.webtransport.datagrams.enabled": true,
                    // Firefox turns HTTP/3 off when it finds roots a user
                    // added (against TLS-intercepting proxies); the operator
                    // certificate test adds one.
                    "network.http.http3.disable_when_third_party_roots_found": false,
                    "datareporting.policy.dataSubmissionEnabled": false,
                    "app.update.enabled": false,
                }
            }
        });
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                caps["moz:firefoxOptions"]["prefs"][k] = v.clone();
            }
        }
        session(
            &self.url,
            caps,
            "a Firefox session (Debian package firefox-esr; scripts/test.sh installs it)",
        )
        .await
    }
}

impl Drop for Gecko {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn fill(b: &Browser, id: &str, value: &str) {
    let el = b.find(Locator::Id(id)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

pub(crate) async fn click(b: &Browser, id: &str) {
    b.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub(crate) async fn text(b: &Browser, id: &str) -> String {
    b.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// Waits until the element's text contains `needle`.
pub(crate) async fn wait_for(b: &Browser, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = text(b, id).await;
        if t.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} never showed {needle:?}; it shows {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo page's query that skips the WebTransport/WebSocket race: tests
/// about WebTransport itself use it, since on a loaded machine the race may
/// rightly pick WebSocket (the race has tests of its own).
pub(crate) const WT_ONLY: &str = "?transport=webtransport";

pub(crate) async fn open_and_login(
    b: &Browser,
    server: &Server,
    query: &str,
    user: &str,
    transport: &str,
) -> String {
    b.goto(&format!("http://{}/{query}", server.http))
        .await
        .unwrap();
    fill(b, "user", user).await;
    click(b, "connect").await;
    wait_for(b, "state", "connected").await;
    // "via webtransport (draft-02)": the draft follows on WebTransport.
    let shown = text(b, "transport").await;
    assert!(
        shown == format!("via {transport}") || shown.starts_with(&format!("via {transport} (")),
        "{shown}"
    );
    shown
}

/// A raw WebTransport session in the page: sends `frames` (JSON values, or a
/// string of that many bytes' worth of `x` when a number) on the stream and
/// records what `WebTransport.closed` resolves with in `window.closes[name]`.
pub(crate) const WT_CLOSE_PROBE: &str = r#"
const [name, frames] = arguments;
window.closes = window.closes || {};
(async () => {
  const info = await (await fetch("/cert-hash")).json();
  const value = Uint8Array.from(atob(info.value), (c) => c.charCodeAt(0));
  const wt = new WebTransport(info.url, { serverCertificateHashes: [{ algorithm: "sha-256", value }] });
  await wt.ready;
  const s = await wt.createBidirectionalStream();
  const r = s.readable.getReader();
  (async () => { try { for (;;) { if ((await r.read()).done) break; } } catch (_) {} })();
  const w = s.writable.getWriter();
  const enc = new TextEncoder();
  for (const f of frames) {
    const body = enc.encode(typeof f === "number" ? "x".repeat(f) : JSON.stringify(f));
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    w.write(frame).catch(() => {});
  }
  const c = await wt.closed;
  window.closes[name] = { code: c.closeCode, reason: c.reason };
})().catch((e) => { window.closes[name] = { error: String(e) }; });
"#;

/// Waits until the page's script has set `window[global][name]`, and
/// answers it (a probe started with `execute` records its outcome there).
pub(crate) async fn page_result(b: &Browser, global: &str, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = b
            .execute(
                &format!("return (window[{global:?}] || {{}})[{name:?}] || null"),
                vec![],
            )
            .await
            .unwrap();
        if !v.is_null() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the page never set window.{global}.{name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every close code of a WebTransport session reaches the page as
/// `WebTransport.closed`'s `closeCode` and reason: 4401, 4403, 4408, 4413,
/// 4429 from one node, then 1001 when the node shuts down.
pub(crate) async fn close_codes_reach(b: &Browser) {
    let mut s = Server::start(&[
        "--jwt-secret",
        "k3y",
        "--max-frame",
        "1024",
        "--login-timeout-sec",
        "1",
        "--rate-limit",
        "5",
    ]);
    let token = |sub: &str, exp_in: i64| {
        crate::common::jwt(
            "k3y",
            json!({"sub": sub, "exp": crate::common::unix_now() + exp_in}),
        )
    };
    let login = |sub: &str| json!({"msgType": 2, "token": token(sub, 60)});
    let flood: Vec<_> = std::iter::once(login("dora"))
        .chain((0..60).map(|_| json!({"msgType": 8, "userIds": ["x"]})))
        .collect();
    let cases = [
        (
            "unauthorized",
            json!([{"msgType": 2, "token": "forged"}]),
            4401,
            "unauthorized",
        ),
        (
            "forbidden",
            json!([{"msgType": 2, "sendUserId": "mallory", "token": token("bob", 60)}]),
            4403,
            "forbidden",
        ),
        ("timeout", json!([]), 4408, "timeout"),
        (
            "too_large",
            json!([login("carol"), 2000]),
            4413,
            "too large",
        ),
        ("rate", json!(flood), 4429, "rate"),
    ];
    b.goto(&format!("http://{}/", s.http)).await.unwrap();
    for (name, frames, _, _) in &cases {
        b.execute(WT_CLOSE_PROBE, vec![json!(name), frames.clone()])
            .await
            .unwrap();
    }
    for (name, _, code, reason) in &cases {
        let c = page_result(b, "closes", name).await;
        assert_eq!(c["code"], *code, "{name}: {c}");
        assert!(
            c["reason"].as_str().unwrap_or("").contains(reason),
            "{name}: {c}"
        );
    }
    // A node that shuts down closes its sessions with 1001.
    b.execute(
        WT_CLOSE_PROBE,
        vec![json!("going_away"), json!([login("erin")])],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s
        .metrics()
        .await
        .get(r#"rtgate_connections{transport="webtransport"}"#)
        .is_none_or(|n| *n < 1.0)
    {
        assert!(Instant::now() < deadline, "the session never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Logged in: its login frame was handled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || {
        s.terminate();
        s
    })
    .await
    .unwrap();
    let c = page_result(b, "closes", "going_away").await;
    assert_eq!(c["code"], 1001, "{c}");
}

//! Real headless Chromium (driven through chromedriver): the demo page and
//! client.js (`demo`), and WebTransport's browser-facing behaviour: close
//! codes, fast fallback (`webtransport`).

mod demo;
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
        let child = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is installed (Debian package chromium-driver; .ci/run installs it)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _profiles: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) async fn browser(&self, name: &str) -> Browser {
        let profile = self._profiles.path().join(name);
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
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

pub(crate) async fn open_and_login(
    b: &Browser,
    server: &Server,
    query: &str,
    user: &str,
    transport: &str,
) {
    b.goto(&format!("http://{}/{query}", server.http))
        .await
        .unwrap();
    fill(b, "user", user).await;
    click(b, "connect").await;
    wait_for(b, "state", "connected").await;
    assert_eq!(text(b, "transport").await, format!("via {transport}"));
}

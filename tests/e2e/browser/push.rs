//! Push in browsers. Firefox end to end: it subscribes through a stand-in of
//! Mozilla's push service, so `enablePush()` runs for real and the node's
//! push reaches the browser encrypted, is decrypted with the browser's own
//! keys and shown by the demo's service worker (`/push-sw.js`). Chromium
//! cannot reach Google's push service here: `enablePush()` fails with a
//! clear error, and the server's push, decrypted by the test, is handed to
//! the worker through the DevTools protocol as a push service would.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Driver, page_result};
use crate::common::{Client, Server};
use crate::push_services::{Expect, PushServices};

/// A DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.0, "params": self.1});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A node that pushes to the stand-ins, with previews, after 300 ms.
fn push_server(services: &PushServices) -> Server {
    Server::start(&[
        "--push-delay-ms",
        "300",
        "--push-ca",
        services.ca.to_str().unwrap(),
        "--webpush-host",
        "127.0.0.1",
        "--push-preview",
    ])
}

/// The notifications the page's service worker shows now (title, body,
/// tag, data).
async fn notifications(b: &fantoccini::Client) -> Value {
    b.execute_async(
        r#"const done = arguments[0];
        navigator.serviceWorker.ready
          .then((r) => r.getNotifications())
          .then((ns) => done(ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))))
          .catch((e) => done([{ error: String(e) }]));"#,
        vec![],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_service_worker_shows_the_servers_push_and_enable_push_fails_clearly_without_a_push_service()
 {
    let services = PushServices::start(Expect::default()).await;
    let server = push_server(&services);
    let origin = format!("http://{}", server.http);
    let driver = Driver::start();
    let b = driver.browser("push").await;
    b.goto(&format!("{origin}/")).await.unwrap();
    b.issue_cmd(Cdp(
        "Browser.grantPermissions",
        json!({"origin": origin, "permissions": ["notifications"]}),
    ))
    .await
    .unwrap();
    // The client asks the server for its key, the browser for a
    // subscription: Chromium cannot reach its push service here.
    b.execute(
        r#"window.t = {};
        const c = new RtgateClient({ userId: "pat", transport: "websocket" });
        c.connect()
          .then(() => c.enablePush({ timeoutMs: 2000 }))
          .then(() => { window.t.enable = { ok: true }; })
          .catch((e) => { window.t.enable = { code: e.code, message: e.message }; })
          .finally(() => c.close());"#,
        vec![],
    )
    .await
    .unwrap();
    let enable = page_result(&b, "t", "enable").await;
    assert_eq!(enable["code"], 503, "{enable}");
    assert!(
        enable["message"].as_str().unwrap().contains("push service"),
        "{enable}"
    );
    // The worker the client registered is active.
    b.execute(
        r#"navigator.serviceWorker.ready.then((r) => { window.t.scope = r.scope; });"#,
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(page_result(&b, "t", "scope").await, format!("{origin}/"));

    // What the server pushes for pat (whose page's session is closed), as
    // a browser's subscription gets it.
    let browser_keys = crate::push::Browser::new();
    let (mut pat, _) = Client::login(&server, "pat").await;
    pat.send(&json!({"msgType": 16, "push": browser_keys.subscription(&services.url("/wp/pat"))}))
        .await;
    assert_eq!(pat.recv().await["msgType"], 16);
    pat.close().await;
    let (mut alice, _) = Client::login(&server, "alice").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "pat", "msgBody": {"text": "lunch?"}}))
        .await;
    alice.recv_type(4).await;
    let pushed = services.wait_for("/wp/pat", 1).await;
    let payload = String::from_utf8(browser_keys.decrypt(&pushed[0].body)).unwrap();

    // Handed to the worker; the page finds the notification it showed.
    b.issue_cmd(Cdp("ServiceWorker.enable", json!({})))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let shown = loop {
        for id in 0..4 {
            // The registration's id is the browser's; a fresh profile's
            // first ones are small numbers.
            let _ = b
                .issue_cmd(Cdp(
                    "ServiceWorker.deliverPushMessage",
                    json!({"origin": origin, "registrationId": id.to_string(), "data": payload}),
                ))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let shown = notifications(&b).await;
        if shown.as_array().is_some_and(|a| !a.is_empty()) {
            break shown;
        }
        assert!(Instant::now() < deadline, "no notification shown");
    };
    let n = &shown[0];
    assert_eq!(n["title"], "New message from alice", "{shown}");
    assert_eq!(n["body"], "lunch?");
    assert_eq!(n["tag"], "rtgate-inbox");
    assert_eq!(n["data"]["from"], "alice");
    b.close().await.unwrap();
}

/// Firefox ESR subscribes for real, through a stand-in of Mozilla's push
/// service (its WebSocket protocol, which Firefox's `dom.push.serverURL`
/// names): the client's `enablePush()` gets the subscription with the
/// node's VAPID key and registers it; the node's push reaches the browser,
/// which decrypts it with its own keys and whose worker shows it.
#[tokio::test]
async fn firefox_subscribes_with_enable_push_and_shows_what_the_server_pushes() {
    let services = PushServices::start(Expect::default()).await;
    let autopush = services.autopush().await;
    let server = push_server(&services);
    let origin = format!("http://{}", server.http);
    let gecko = super::Gecko::start();
    let b = gecko
        .browser_with_prefs(json!({
            "dom.push.serverURL": autopush,
            "dom.push.testing.allowInsecureServerURL": true,
            "dom.push.connection.enabled": true,
            "permissions.default.desktop-notification": 1,
            "dom.webnotifications.requireuserinteraction": false,
            // Headless Firefox has no desktop's notification service:
            // its own alert windows show them.
            "alerts.useSystemBackend": false,
        }))
        .await;
    b.goto(&format!("{origin}/")).await.unwrap();
    b.execute(
        r#"window.t = {};
        navigator.serviceWorker.addEventListener("message", (e) => {
          if (e.data && e.data.type === "rtgate-push") window.t.pushed = e.data;
        });
        const c = new RtgateClient({ userId: "zoe", transport: "websocket" });
        c.connect()
          .then(() => c.enablePush())
          .then((sub) => { window.t.enable = { endpoint: sub.endpoint, keys: Object.keys(sub.keys || {}).sort() }; })
          .catch((e) => { window.t.enable = { code: e.code, message: e.message }; })
          .finally(() => c.close());"#,
        vec![],
    )
    .await
    .unwrap();
    let enable = page_result(&b, "t", "enable").await;
    assert!(
        enable["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with(&services.url("/wp/"))),
        "{enable}"
    );
    assert_eq!(enable["keys"], json!(["auth", "p256dh"]));

    let (mut alice, _) = Client::login(&server, "alice").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "zoe", "msgBody": "dinner at 8"}))
        .await;
    alice.recv_type(4).await;
    let pushed = services.wait_for("/wp/", 1).await;
    assert_eq!(pushed[0].header("content-encoding"), "aes128gcm");
    assert_eq!(
        pushed[0].status, 201,
        "signed with the key Firefox subscribed with"
    );
    // Firefox decrypted it with its own keys; the worker tells the page.
    let heard = page_result(&b, "t", "pushed").await;
    assert_eq!(heard["payload"]["from"], "alice", "{heard}");
    assert_eq!(heard["payload"]["preview"], "dinner at 8");
    assert_eq!(heard["shown"], true, "{heard}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let shown = loop {
        let shown = notifications(&b).await;
        if shown.as_array().is_some_and(|a| !a.is_empty()) {
            break shown;
        }
        assert!(Instant::now() < deadline, "no notification shown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(shown[0]["title"], "New message from alice", "{shown}");
    assert_eq!(shown[0]["body"], "dinner at 8");
    b.close().await.unwrap();
}

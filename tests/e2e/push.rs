//! Push to offline users (PROTOCOL.md section 12) against local stand-ins
//! of the push services (`push_services.rs`): Web Push payloads decrypted
//! with the subscription's keys by a receiver written here from RFC 8291
//! (checked against the RFC's example), VAPID verified with the node's
//! public key, APNs and FCM requests checked as Apple and Google document
//! them; no push for a user whose session got the message, anywhere in the
//! cluster; bursts merged; gone registrations removed; registrations kept
//! across a restart; `inbox.undelivered` events.

use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};

use crate::common::{Client, Server, WAIT};
use crate::push_services::{Expect, PushServices, Recorded};

const DELAY: &str = "300";

/// A browser's push subscription: its key pair and auth secret.
pub(crate) struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    pub(crate) fn new() -> Browser {
        let mut bytes = [0u8; 32];
        loop {
            fastrand::fill(&mut bytes);
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                let mut auth = [0u8; 16];
                fastrand::fill(&mut auth);
                return Browser { secret, auth };
            }
        }
    }

    fn public(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .as_affine()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// `PushSubscription.toJSON()` for `endpoint`.
    pub(crate) fn subscription(&self, endpoint: &str) -> Value {
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": B64.encode(self.public()), "auth": B64.encode(self.auth)},
        })
    }

    /// Decrypts an `aes128gcm` push message (RFC 8291 section 3.4 and RFC
    /// 8188 section 2).
    pub(crate) fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        rfc8291_decrypt(&self.secret, &self.auth, body)
    }
}

fn rfc8291_decrypt(ua: &p256::SecretKey, auth: &[u8], body: &[u8]) -> Vec<u8> {
    use hkdf::Hkdf;
    use sha2::Sha256;
    // Header: salt (16) | rs (4) | idlen (1) | keyid (the sender's key).
    let salt = &body[..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
    let idlen = body[20] as usize;
    assert_eq!(idlen, 65, "keyid is the application server's P-256 key");
    let as_public = &body[21..21 + idlen];
    let records = &body[21 + idlen..];
    assert!(records.len() <= rs, "one record");
    let as_key = p256::PublicKey::from_sec1_bytes(as_public).unwrap();
    let shared = p256::ecdh::diffie_hellman(ua.to_nonzero_scalar(), as_key.as_affine());
    let ua_public = ua.public_key().as_affine().to_encoded_point(false);
    // IKM = HKDF(auth, ecdh, "WebPush: info" 0x00 ua_public as_public, 32).
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public.as_bytes());
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), &shared.raw_secret_bytes()[..])
        .expand(&info, &mut ikm)
        .unwrap();
    // CEK and NONCE from the salt (RFC 8188 section 2.2 and 2.3).
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .unwrap();
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .unwrap();
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).unwrap();
    let mut plain = cipher
        .decrypt(&aes_gcm::Nonce::from(nonce), records)
        .expect("the payload decrypts with the subscription's keys");
    // The last record ends with 0x02 and zero padding.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    assert_eq!(plain.pop(), Some(2), "the last record's delimiter");
    plain
}

#[test]
fn the_receiver_decrypts_the_example_of_rfc_8291() {
    // RFC 8291 section 5 (and appendix A): the example message.
    let ua = p256::SecretKey::from_slice(
        &B64.decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        B64.encode(
            ua.public_key()
                .as_affine()
                .to_encoded_point(false)
                .as_bytes()
        ),
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    );
    let auth = B64.decode("BTBZMqHH6r4Tts7J_aSIgg").unwrap();
    let message = B64
        .decode("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
        .unwrap();
    assert_eq!(
        rfc8291_decrypt(&ua, &auth, &message),
        b"When I grow up, I want to be a watermelon"
    );
}

/// The VAPID `Authorization` of a request, verified with the node's key:
/// the JWT's claims.
fn verify_vapid(r: &Recorded, node_key: &str, audience: &str) -> Value {
    let auth = r.header("authorization");
    let rest = auth
        .strip_prefix("vapid ")
        .expect("vapid scheme (RFC 8292 section 3)");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').unwrap();
        match name {
            "t" => t = Some(value.to_string()),
            "k" => k = Some(value.to_string()),
            _ => {}
        }
    }
    assert_eq!(k.as_deref(), Some(node_key), "k is the node's public key");
    let point = B64.decode(node_key).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(&t.unwrap(), &DecodingKey::from_ec_der(&point), &v)
        .expect("the VAPID JWT verifies with the node's public key");
    let exp = data.claims["exp"].as_i64().unwrap();
    let now = crate::common::unix_now();
    assert!(exp > now && exp <= now + 24 * 3600, "exp within 24 hours");
    data.claims
}

/// Waits (bounded) until a counter reaches `value`.
async fn until_metric(s: &Server, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let m = s.metrics().await;
        if m.get(name).copied().unwrap_or(0.0) >= value {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} < {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn register(c: &mut Client, frame: Value) -> Value {
    c.send(&frame).await;
    c.recv().await
}

async fn send_to(c: &mut Client, to: &str, body: Value) -> Value {
    c.send(&json!({"msgType": 3, "receivedUserId": to, "msgBody": body}))
        .await;
    c.recv_type(4).await
}

fn server_args<'a>(services: &'a PushServices, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--push-delay-ms",
        DELAY,
        "--push-ca",
        services.ca.to_str().unwrap(),
        "--webpush-host",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn an_offline_users_burst_is_one_encrypted_push_signed_with_vapid() {
    let services = PushServices::start(Expect::default()).await;
    let server = Server::start(&server_args(&services, &["--push-preview"]));
    let (status, key) = server.http("GET", "/push/vapid-public-key", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(B64.decode(&key).unwrap().len(), 65);
    let browser = Browser::new();
    let (mut bob, _) = Client::login(&server, "bob").await;
    let answer = register(
        &mut bob,
        json!({"msgType": 16, "push": browser.subscription(&services.url("/wp/bob"))}),
    )
    .await;
    assert_eq!(answer, json!({"msgType": 16}));
    bob.close().await;

    let (mut alice, _) = Client::login(&server, "alice").await;
    for n in 0..100 {
        send_to(&mut alice, "bob", json!({"text": format!("message {n} ✓")})).await;
    }
    let first = services.wait_for("/wp/bob", 1).await;
    // Bounded: the burst is one push per window (at most a few windows).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pushes = services.requests("/wp/bob");
    assert!(pushes.len() <= 3, "{} pushes for one burst", pushes.len());
    let mut total = 0;
    let mut last = Value::Null;
    for p in &pushes {
        assert_eq!(p.status, 201);
        assert_eq!(p.header("content-encoding"), "aes128gcm");
        assert_eq!(p.header("urgency"), "high");
        assert_eq!(p.header("ttl"), "86400");
        assert!(!p.header("topic").is_empty());
        let claims = verify_vapid(
            p,
            &key,
            &format!("https://127.0.0.1:{}", services.addr.port()),
        );
        assert!(claims["sub"].as_str().unwrap().starts_with("mailto:"));
        last = serde_json::from_slice(&browser.decrypt(&p.body)).unwrap();
        total += last["count"].as_u64().unwrap();
    }
    assert_eq!(total, 100, "every message counted once: {last}");
    assert_eq!(last["from"], "alice");
    assert_eq!(last["preview"], "message 99 ✓");
    assert!(last["msgId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        first[0].body.len() < 4096,
        "a push payload fits Web Push's 4 KB"
    );
    let m = server.metrics().await;
    assert_eq!(
        m[r#"rtgate_pushes_total{service="webpush",result="sent"}"#],
        pushes.len() as f64
    );
}

#[tokio::test]
async fn an_online_user_is_not_pushed_a_gone_subscription_is_removed_and_registrations_survive_a_restart()
 {
    let services = PushServices::start(Expect::default()).await;
    let server = Server::start(&server_args(&services, &[]));
    let browser = Browser::new();
    for (user, path) in [("bob", "/wp/gone-bob"), ("carol", "/wp/carol")] {
        let (mut c, _) = Client::login(&server, user).await;
        let sub = browser.subscription(&services.url(path));
        assert_eq!(
            register(&mut c, json!({"msgType": 16, "push": sub})).await["msgType"],
            16
        );
        c.close().await;
    }
    // Bob online: he gets the message, so no push.
    let (mut bob, _) = Client::login(&server, "bob").await;
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "bob", json!("hello")).await;
    assert_eq!(bob.recv_type(3).await["msgBody"], "hello");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        services.requests("/wp/gone-bob").is_empty(),
        "bob was online"
    );
    // Offline: pushed; the service says the subscription is gone (410).
    bob.close().await;
    send_to(&mut alice, "bob", json!("are you there")).await;
    services.wait_for("/wp/gone-bob", 1).await;
    until_metric(
        &server,
        r#"rtgate_pushes_total{service="webpush",result="gone"}"#,
        1.0,
    )
    .await;
    // ... and was removed: the next window pushes nothing to it. No
    // preview without --push-preview.
    send_to(&mut alice, "bob", json!("again")).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(services.requests("/wp/gone-bob").len(), 1);

    // Carol's registration survives a restart of the node.
    let place = server.terminate_keep_place();
    let server = Server::start_at(place, &server_args(&services, &[]));
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "carol", json!({"text": "secret"})).await;
    let pushed = services.wait_for("/wp/carol", 1).await;
    let payload: Value = serde_json::from_slice(&browser.decrypt(&pushed[0].body)).unwrap();
    assert_eq!(payload["from"], "alice");
    assert_eq!(payload["count"], 1);
    assert!(
        payload.get("preview").is_none(),
        "no body without --push-preview: {payload}"
    );
}

#[tokio::test]
async fn a_window_whose_node_was_killed_at_the_ack_is_pushed_after_the_restart() {
    let services = PushServices::start(Expect::default()).await;
    let args = |delay| {
        let mut a = server_args(&services, &[]);
        a[1] = delay;
        a
    };
    let server = Server::start(&args("2000"));
    let browser = Browser::new();
    let (mut fay, _) = Client::login(&server, "fay").await;
    let sub = browser.subscription(&services.url("/wp/fay"));
    register(&mut fay, json!({"msgType": 16, "push": sub})).await;
    fay.close().await;
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "fay", json!("before the crash")).await;
    // SIGKILL the moment the message is acknowledged: the window's job is
    // written before the ack, so nothing of it is lost (a job written a
    // moment after the ack was lost with the node).
    let place = server.kill_keep_place();
    assert!(services.requests("/wp/fay").is_empty());
    let server = Server::start_at(place, &args("2000"));
    // The window's job is taken over once it is overdue (10 s after it
    // should have ended) and read back from fay's inbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while services.requests("/wp/fay").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no push after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pushed = services.requests("/wp/fay");
    assert_eq!(pushed.len(), 1);
    let payload: Value = serde_json::from_slice(&browser.decrypt(&pushed[0].body)).unwrap();
    assert_eq!(
        (payload["from"].as_str(), payload["count"].as_u64()),
        (Some("alice"), Some(1))
    );
    drop(server);
}

#[tokio::test]
async fn a_busy_service_is_tried_again_after_its_retry_after() {
    let services = PushServices::start(Expect::default()).await;
    let server = Server::start(&server_args(&services, &[]));
    let browser = Browser::new();
    let (mut dan, _) = Client::login(&server, "dan").await;
    let sub = browser.subscription(&services.url("/wp/busy-dan"));
    register(&mut dan, json!({"msgType": 16, "push": sub})).await;
    dan.close().await;
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "dan", json!("ping")).await;
    let tries = services.wait_for("/wp/busy-dan", 2).await;
    assert_eq!((tries[0].status, tries[1].status), (429, 201));
    let m = server.metrics().await;
    assert_eq!(
        m[r#"rtgate_pushes_total{service="webpush",result="retried"}"#],
        1.0
    );
    assert_eq!(
        m[r#"rtgate_pushes_total{service="webpush",result="sent"}"#],
        1.0
    );
    // Both tries carried the same payload.
    assert_eq!(
        browser.decrypt(&tries[0].body),
        browser.decrypt(&tries[1].body)
    );
}

#[tokio::test]
async fn bad_and_unconfigured_registrations_are_refused() {
    let services = PushServices::start(Expect::default()).await;
    let server = Server::start(&server_args(&services, &[]));
    let (mut eve, _) = Client::login(&server, "eve").await;
    let browser = Browser::new();
    for (frame, reason) in [
        (json!({"msgType": 16, "apns": "abcd"}), "APNs"),
        (json!({"msgType": 16, "fcm": "tok"}), "FCM"),
        (
            json!({"msgType": 16, "push": browser.subscription("https://evil.example/x")}),
            "not a push service",
        ),
        (
            json!({"msgType": 16, "push": {"endpoint": "https://127.0.0.1/x"}}),
            "keys",
        ),
    ] {
        let e = register(&mut eve, frame.clone()).await;
        assert_eq!(
            (e["msgType"].as_i64(), e["code"].as_i64()),
            (Some(9), Some(400)),
            "{frame}"
        );
        assert!(
            e["reason"].as_str().unwrap_or_default().contains(reason),
            "{e}"
        );
    }
    // Removing one that is not there is fine.
    let gone = json!({"msgType": 16, "push": {"endpoint": services.url("/wp/x")}, "remove": true});
    assert_eq!(register(&mut eve, gone).await, json!({"msgType": 16}));
}

#[tokio::test]
async fn apns_gets_token_authenticated_http2_alerts_and_dead_tokens_are_removed() {
    let key = rcgen::KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p8 = dir.path().join("AuthKey_ABC123DEFG.p8");
    std::fs::write(&p8, key.serialize_pem()).unwrap();
    let (kid, team, topic) = ("ABC123DEFG", "TEAM123456", "com.example.chat");
    let services = PushServices::start(Expect {
        apns: Some((
            key.public_key_raw().to_vec(),
            kid.into(),
            team.into(),
            topic.into(),
        )),
        oauth: None,
    })
    .await;
    let endpoint = services.url("");
    let p8 = p8.to_str().unwrap();
    let apns = [
        "--apns-key",
        p8,
        "--apns-key-id",
        kid,
        "--apns-team-id",
        team,
        "--apns-topic",
        topic,
        "--apns-endpoint",
        &endpoint,
    ];
    let server = Server::start(&server_args(&services, &apns));
    let (mut ivy, _) = Client::login(&server, "ivy").await;
    // A good token, two Apple calls gone, one refused once for load.
    for token in ["a1b2c3", "bad0", "dead", "0429"] {
        let answer = register(&mut ivy, json!({"msgType": 16, "apns": token})).await;
        assert_eq!(answer, json!({"msgType": 16}));
    }
    ivy.close().await;
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "ivy", json!({"text": "not in the push"})).await;
    let sent = services.wait_for("/3/device/", 5).await;
    let status = |token: &str| -> Vec<u16> {
        sent.iter()
            .filter(|r| r.path == format!("/3/device/{token}"))
            .map(|r| r.status)
            .collect()
    };
    assert_eq!(status("a1b2c3"), [200]);
    assert_eq!(status("bad0"), [400]);
    assert_eq!(status("dead"), [410]);
    assert_eq!(status("0429"), [429, 200]);
    let now = crate::common::unix_now();
    for r in &sent {
        assert_eq!(r.version, http::Version::HTTP_2, "APNs takes HTTP/2 only");
        assert_eq!(r.header("apns-priority"), "10");
        let exp: i64 = r.header("apns-expiration").parse().unwrap();
        assert!(exp > now);
        assert!(!r.header("apns-collapse-id").is_empty());
        let body = r.json();
        assert_eq!(body["aps"]["alert"]["title"], "alice");
        assert_eq!(body["aps"]["alert"]["body"], "New message");
        assert_eq!(body["rtgate"]["count"], 1);
        assert!(body["rtgate"].get("preview").is_none());
    }
    until_metric(
        &server,
        r#"rtgate_pushes_total{service="apns",result="sent"}"#,
        2.0,
    )
    .await;
    let m = server.metrics().await;
    assert_eq!(
        m[r#"rtgate_pushes_total{service="apns",result="gone"}"#],
        2.0
    );
    assert_eq!(
        m[r#"rtgate_pushes_total{service="apns",result="retried"}"#],
        1.0
    );
    // The two gone tokens were removed: the next push reaches the others.
    send_to(&mut alice, "ivy", json!("again")).await;
    services.wait_for("/3/device/", 7).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = services.requests("/3/device/");
    assert_eq!(again.len(), 7, "{again:#?}");
    assert!(again[5..].iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn fcm_trades_one_service_account_jwt_for_a_token_and_sends_http_v1_messages() {
    let email = "rtgate-test@proj-1.iam.gserviceaccount.com";
    let services = PushServices::start(Expect {
        apns: None,
        oauth: Some((
            include_bytes!("fixtures/fcm-test-key.pub.pem").to_vec(),
            email.into(),
        )),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("service-account.json");
    let account = json!({
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "k1",
        "private_key": include_str!("fixtures/fcm-test-key.pem"),
        "client_email": email,
        "token_uri": services.url("/token"),
    });
    std::fs::write(&creds, account.to_string()).unwrap();
    let endpoint = services.url("");
    let fcm = [
        "--fcm-credentials",
        creds.to_str().unwrap(),
        "--fcm-endpoint",
        &endpoint,
        "--push-preview",
    ];
    let server = Server::start(&server_args(&services, &fcm));
    for (user, token) in [
        ("jay", "tok-jay:APA91b"),
        ("jay", "dead-tok"),
        ("jay", "bogus-tok"),
        ("kim", "tok-kim"),
        ("kim", "badfield-tok"),
    ] {
        let (mut c, _) = Client::login(&server, user).await;
        assert_eq!(
            register(&mut c, json!({"msgType": 16, "fcm": token})).await["msgType"],
            16
        );
        c.close().await;
    }
    let (mut alice, _) = Client::login(&server, "alice").await;
    send_to(&mut alice, "jay", json!("hi jay")).await;
    send_to(&mut alice, "kim", json!({"text": "hi kim"})).await;
    let sends = services
        .wait_for("/v1/projects/proj-1/messages:send", 5)
        .await;
    let tokens = services.requests("/token");
    assert_eq!(tokens.len(), 1, "one access token, cached: {tokens:#?}");
    assert_eq!(tokens[0].status, 200, "the assertion verified");
    for r in &sends {
        assert_eq!(r.header("authorization"), "Bearer ya29.test-0");
        let m = &r.json()["message"];
        assert_eq!(m["notification"]["title"], "alice");
        assert_eq!(m["android"]["priority"], "high");
        assert!(
            m["data"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string),
            "{m}"
        );
        assert_eq!(m["data"]["count"], "1");
        let expected = match m["token"].as_str().unwrap() {
            "tok-jay:APA91b" | "tok-kim" => 200,
            "dead-tok" => 404,
            "bogus-tok" | "badfield-tok" => 400,
            other => panic!("unexpected token {other}"),
        };
        assert_eq!(r.status, expected);
        let preview = if m["token"] == "tok-kim" || m["token"] == "badfield-tok" {
            "hi kim"
        } else {
            "hi jay"
        };
        assert_eq!(m["notification"]["body"], preview);
    }
    // A 404 UNREGISTERED and both shapes of a 400 about the token: gone.
    until_metric(
        &server,
        r#"rtgate_pushes_total{service="fcm",result="gone"}"#,
        3.0,
    )
    .await;
    // Counted once each answer is handled, which may follow the request.
    until_metric(
        &server,
        r#"rtgate_pushes_total{service="fcm",result="sent"}"#,
        2.0,
    )
    .await;
    // They were removed: the next messages go to the good tokens only.
    send_to(&mut alice, "jay", json!("again")).await;
    send_to(&mut alice, "kim", json!("again")).await;
    let path = "/v1/projects/proj-1/messages:send";
    services.wait_for(path, 7).await;
    // A window's pushes go together: any to a removed token would be here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sends = services.requests(path);
    let mut later: Vec<String> = sends[5..]
        .iter()
        .map(|r| r.json()["message"]["token"].as_str().unwrap().to_owned())
        .collect();
    later.sort();
    assert_eq!(later, ["tok-jay:APA91b", "tok-kim"]);
}

#[tokio::test]
async fn undelivered_messages_become_one_event_per_window() {
    let backend = crate::hooks::Backend::start();
    let url = backend.url("events");
    let server = Server::start(&[
        "--push-delay-ms",
        DELAY,
        "--event-hook",
        &url,
        "--hook-secret",
        crate::hooks::HOOK_SECRET,
    ]);
    let (mut alice, _) = Client::login(&server, "alice").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(send_to(&mut alice, "lee", json!(n)).await["msgId"].clone());
    }
    // A backend's message through the server API counts too.
    let (status, body) = server
        .http(
            "POST",
            "/api/publish",
            &[],
            r#"{"receivedUserId":"lee","msgBody":"from billing","sendUserId":"billing"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ids.push(serde_json::from_str::<Value>(&body).unwrap()["msgId"].clone());
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let event = loop {
        let events: Vec<Value> = backend
            .calls("events")
            .await
            .into_iter()
            .flat_map(|c| c["body"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "inbox.undelivered")
            .collect();
        if let Some(e) = events.first() {
            assert_eq!(events.len(), 1, "{events:#?}");
            break e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no inbox.undelivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["userId"], "lee");
    assert_eq!(event["count"], 4);
    assert_eq!(event["from"], "billing", "the newest message's sender");
    assert_eq!(event["msgIds"], Value::Array(ids));
    assert!(event["id"].as_str().is_some() && event["ts"].as_u64().is_some());
}

#[tokio::test]
async fn in_a_cluster_a_user_online_on_another_node_is_not_pushed_and_one_node_pushes_at_a_time() {
    let redis = crate::redis_server::RedisServer::start();
    let services = PushServices::start(Expect::default()).await;
    let url = redis.url();
    let node = || Server::start(&server_args(&services, &["--redis", url.as_str()]));
    let (a, b) = (node(), node());
    let browser = Browser::new();
    let (mut max, _) = Client::login(&b, "max").await;
    let sub = browser.subscription(&services.url("/wp/max"));
    register(&mut max, json!({"msgType": 16, "push": sub})).await;
    // Online on node B, written to from node A: not pushed.
    let (mut alice, _) = Client::login(&a, "alice").await;
    send_to(&mut alice, "max", json!("over there")).await;
    assert_eq!(max.recv_type(3).await["msgBody"], "over there");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        services.requests("/wp/max").is_empty(),
        "max was online on B"
    );
    max.close().await;
    // Offline: messages stored on both nodes at once; the two windows end
    // together, one node pushes, the other's messages go in the next push.
    let (mut bea, _) = Client::login(&b, "bea").await;
    send_to(&mut alice, "max", json!("from a")).await;
    send_to(&mut bea, "max", json!("from b")).await;
    let pushes = services.wait_for("/wp/max", 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pushes = services.requests("/wp/max").len().max(pushes.len());
    let all = services.requests("/wp/max");
    let counts: u64 = all
        .iter()
        .map(|p| {
            serde_json::from_slice::<Value>(&browser.decrypt(&p.body)).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(counts, 2, "both messages pushed once");
    assert!(pushes <= 2);
    let m = a.metrics().await;
    let n = b.metrics().await;
    let deferred = m[r#"rtgate_push_checks_total{outcome="deferred"}"#]
        + n[r#"rtgate_push_checks_total{outcome="deferred"}"#];
    if pushes == 2 {
        assert!(
            deferred >= 1.0,
            "two pushes in one window without a deferral"
        );
    }
    // The claim works: a node defers once, not until it gives up (5).
    assert!(deferred <= 2.0, "{deferred} deferrals");
}

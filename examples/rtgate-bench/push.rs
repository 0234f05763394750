//! Push to offline users (issue 29): how late a notification is, from the
//! message's ack to the push service taking the push, and what pushing
//! costs the server. The push service is a local HTTPS (HTTP/2) Web Push
//! endpoint that takes every push (201), so the figures are rtgate's: the
//! window, the check that no session got the message, the payload's
//! encryption (RFC 8291), the VAPID signature and the request. The same
//! messages to offline users without a registration, in the same
//! invocation, are the baseline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Target, Window, metric, start, ws_login};

/// A browser's public key and auth secret (RFC 8291's example receiver):
/// valid, and the same for every subscription (the service never decrypts).
const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

type Arrivals = Arc<Mutex<HashMap<usize, Instant>>>;

/// A Web Push service on loopback: answers 201 and notes when each
/// endpoint (`/wp/<n>`) got its push. Answers its address and certificate.
async fn service(arrivals: Arrivals) -> anyhow::Result<(SocketAddr, tempfile::TempDir)> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse()?));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("ca.pem"), cert.pem())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, arrivals) = (acceptor.clone(), arrivals.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let arrivals = arrivals.clone();
                        async move {
                            let n = req
                                .uri()
                                .path()
                                .strip_prefix("/wp/")
                                .and_then(|n| n.parse::<usize>().ok());
                            if let Some(n) = n {
                                arrivals
                                    .lock()
                                    .unwrap()
                                    .entry(n)
                                    .or_insert_with(Instant::now);
                            }
                            let mut res =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *res.status_mut() = http::StatusCode::CREATED;
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
            });
        }
    });
    Ok((addr, dir))
}

/// Registers `users` (`<prefix><n>`) for Web Push at the service, then
/// closes their sessions: they are offline.
async fn register(
    http: SocketAddr,
    service: SocketAddr,
    prefix: &str,
    users: usize,
) -> anyhow::Result<()> {
    for n in 0..users {
        let mut ws = ws_login(http, &format!("{prefix}{n}"), None).await?;
        let sub = json!({"endpoint": format!("https://127.0.0.1:{}/wp/{n}", service.port()),
                         "keys": {"p256dh": P256DH, "auth": AUTH}});
        ws.send(Message::text(
            json!({"msgType": 16, "push": sub}).to_string(),
        ))
        .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":16") => break,
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":9") => {
                    bail!("registration refused: {t}")
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("registration: {other:?}"),
                Err(_) => bail!("no answer to the registration of {prefix}{n} in 10 s"),
            }
        }
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// One message to each of `users` (`<prefix><n>`) at `rate` a second;
/// answers when each was acked.
async fn send_all(
    http: SocketAddr,
    prefix: &str,
    users: usize,
    rate: u64,
) -> anyhow::Result<Vec<Instant>> {
    let ws = ws_login(http, &format!("sender-{prefix}"), None).await?;
    let (mut tx, mut rx) = ws.split();
    let acks = tokio::spawn(async move {
        let mut at = vec![None; users];
        let mut got = 0;
        while got < users {
            match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":9") => {
                    bail!("a send was refused: {t}")
                }
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":4") => {
                    let v: Value = serde_json::from_str(&t)?;
                    let n: usize = v["clientMsgId"].as_str().unwrap_or("").parse()?;
                    at[n] = Some(Instant::now());
                    got += 1;
                }
                Ok(Some(Ok(_))) => {}
                other => bail!("acks: {other:?}"),
            }
        }
        Ok::<_, anyhow::Error>(at.into_iter().map(|a| a.unwrap()).collect::<Vec<_>>())
    });
    let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let t0 = Instant::now();
    for n in 0..users {
        tokio::time::sleep_until((t0 + every * n as u32).into()).await;
        let m = json!({"msgType": 3, "receivedUserId": format!("{prefix}{n}"),
                       "clientMsgId": n.to_string(), "msgBody": {"text": format!("hello {n}")}});
        tx.send(Message::text(m.to_string())).await?;
    }
    acks.await?
}

/// Offline users with and without a Web Push registration, one message
/// each: push latency and server CPU per message.
pub(crate) async fn push(
    target: &Target,
    users: usize,
    rate: u64,
    delay_ms: u64,
    pin: bool,
) -> anyhow::Result<Value> {
    let arrivals: Arrivals = Arc::default();
    let (svc, ca) = service(arrivals.clone()).await?;
    let ca_path = ca.path().join("ca.pem").display().to_string();
    let delay = delay_ms.to_string();
    let args = [
        "--push-delay-ms",
        delay.as_str(),
        "--push-ca",
        ca_path.as_str(),
        "--webpush-host",
        "127.0.0.1",
        // One sender writes to every user.
        "--max-recipients-per-min",
        "0",
    ];
    let server = start(target, &args, pin).await?;
    println!("registering {users} users for Web Push");
    register(server.http, svc, "r", users).await?;
    // Baseline: the same sends to offline users nothing can reach (their
    // windows end at once: no registration, no event hook).
    let w = Window::open(&[server.pid]);
    send_all(server.http, "plain", users, rate).await?;
    tokio::time::sleep(Duration::from_millis(delay_ms) + Duration::from_secs(1)).await;
    let (_, base_cpu, _) = w.close(&[server.pid]);
    // Pushed.
    let w = Window::open(&[server.pid]);
    let acked = send_all(server.http, "r", users, rate).await?;
    let deadline = Instant::now() + Duration::from_millis(delay_ms) + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < users {
        if Instant::now() > deadline {
            bail!(
                "{} of {users} pushes arrived",
                arrivals.lock().unwrap().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (secs, push_cpu, _) = w.close(&[server.pid]);
    let mut h = Histogram::<u64>::new(3).context("histogram")?;
    let got = arrivals.lock().unwrap().clone();
    for (n, at) in &got {
        h.record(at.saturating_duration_since(acked[*n]).as_micros() as u64)?;
    }
    let sent = metric(
        server.http,
        r#"rtgate_pushes_total{service="webpush",result="sent"}"#,
    )
    .await?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let out = json!({
        "scenario": "push",
        "users": users,
        "rate": rate,
        "delay_ms": delay_ms,
        "pushes": got.len(),
        "pushes_sent_metric": sent,
        "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": h.max() as f64 / 1000.0},
        "server_cpu_s": {"pushed": push_cpu, "baseline": base_cpu},
        "server_us_per_message": {
            "pushed": push_cpu * 1e6 / users as f64,
            "baseline": base_cpu * 1e6 / users as f64,
        },
        "push_phase_s": secs,
    });
    println!(
        "push: {users} offline users, {rate}/s, window {delay_ms} ms: ack -> push p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server CPU per message {:.0} us pushed, {:.0} us without a registration",
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
        push_cpu * 1e6 / users as f64,
        base_cpu * 1e6 / users as f64
    );
    Ok(out)
}

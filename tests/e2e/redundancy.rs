//! Issue 26: redundant datagram copies. A WebTransport login with
//! `"redundancy":"datagram"` gets every stored-channel frame twice, on its
//! channel's stream and as a datagram; `"auto"` only while the connection
//! loses packets (so nothing on a clean link); a client that does not ask
//! sees nothing new. Behind the lab's loss, a message whose stream copy was
//! lost arrives by its datagram copy first; on a link the copies would
//! fill, `"auto"` pauses them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server, http_request, jwt, unix_now};
use crate::lab::lab_with;
use crate::netlab::Impairment;
use crate::wt_client::{WtClient, wt_url};

/// Logs `user` in over WebTransport with `redundancy` (none when `None`),
/// in room `r`.
async fn phone(url: &str, ns: Option<&str>, login: Value) -> WtClient {
    let (mut c, status) = match ns {
        Some(ns) => WtClient::connect_in(ns, url).await,
        None => WtClient::connect(url, None).await,
    };
    assert_eq!(status, 200);
    c.send(&login).await;
    c.recv_type(2).await;
    c
}

/// Events until `quiet` passes without one: (msgId, way, at) of every
/// stored message, the way being "stream" or "datagram".
async fn arrivals(c: &mut WtClient, quiet: Duration) -> Vec<(String, &'static str, f64, Value)> {
    let mut out = Vec::new();
    while let Ok(e) = tokio::time::timeout(quiet, c.next_raw()).await {
        let (m, way) = match (e.get("frame"), e.get("datagram")) {
            (Some(f), _) => (f.clone(), "stream"),
            (_, Some(d)) => (d.clone(), "datagram"),
            _ => continue,
        };
        if let Some(id) = m["msgId"].as_str() {
            out.push((id.to_string(), way, e["at"].as_f64().unwrap_or(0.0), m));
        }
    }
    out
}

/// `rtgate_datagram_copies_total{outcome}` in a `/metrics` text (0 when
/// absent).
fn copies_counted(metrics: &str, outcome: &str) -> f64 {
    let key = format!("rtgate_datagram_copies_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.parse::<f64>().unwrap())
}

#[tokio::test]
async fn each_channel_frame_comes_twice_when_asked_and_never_unasked() {
    let s = Server::start(&[]);
    let url = wt_url(&s, "/wt");
    let mut both = phone(
        &url,
        None,
        json!({"msgType": 2, "sendUserId": "both", "roomId": "r", "redundancy": "datagram"}),
    )
    .await;
    let mut auto = phone(
        &url,
        None,
        json!({"msgType": 2, "sendUserId": "auto", "roomId": "r", "redundancy": "auto"}),
    )
    .await;
    let mut plain = phone(
        &url,
        None,
        json!({"msgType": 2, "sendUserId": "plain", "roomId": "r"}),
    )
    .await;
    let (mut ws, _) = Client::login(&s, "ws").await;
    ws.send(&json!({"msgType": 5, "roomId": "r"})).await;
    ws.recv_type(5).await;
    for i in 0..5 {
        ws.send(&json!({"msgType": 3, "roomId": "r", "msgBody": i}))
            .await;
    }
    ws.send(&json!({"msgType": 3, "receivedUserId": "both", "msgBody": "direct"}))
        .await;
    let got = arrivals(&mut both, Duration::from_millis(700)).await;
    let mut ways: HashMap<String, Vec<&str>> = HashMap::new();
    for (id, way, _, _) in &got {
        ways.entry(id.clone()).or_default().push(way);
    }
    assert_eq!(ways.len(), 6, "{got:?}");
    for (id, w) in &ways {
        let mut w = w.clone();
        w.sort();
        assert_eq!(w, ["datagram", "stream"], "{id}");
    }
    // A clean link loses nothing: "auto" sends no copies; unasked, none.
    for c in [&mut auto, &mut plain] {
        let got = arrivals(c, Duration::from_millis(500)).await;
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got.iter().all(|(_, way, _, _)| *way == "stream"), "{got:?}");
    }
    // An unknown mode is refused.
    let (mut bad, _) = WtClient::connect(&url, None).await;
    bad.send(&json!({"msgType": 2, "sendUserId": "bad", "redundancy": "twice"}))
        .await;
    assert_eq!(bad.recv_type(9).await["code"], 400);
}

#[tokio::test]
async fn behind_loss_a_lost_stream_copy_is_outrun_by_its_datagram() {
    let imp = Impairment {
        loss: 8.0,
        delay_ms: 100.0,
        ..Impairment::default()
    };
    let Some((mut lab, s)) = lab_with("redundancy::behind_loss", imp) else {
        return;
    };
    let token = |u: &str| jwt("k3y", json!({"sub": u, "exp": unix_now() + 600}));
    let url = format!("https://{}:{}/wt", lab.server_ip, s.wt.port());
    let login =
        |u: &str, r: &str| json!({"msgType": 2, "token": token(u), "roomId": "r", "redundancy": r});
    let mut p = phone(&url, Some(&lab.client_ns), login("p", "datagram")).await;
    let mut a = phone(&url, Some(&lab.client_ns), login("a", "auto")).await;
    let mut w = Client::connect(&format!(
        "ws://{}:{}/ws",
        lab.server_direct_ip,
        s.http.port()
    ))
    .await;
    w.login_as(json!({"msgType": 2, "token": token("w"), "roomId": "r"}))
        .await;
    let sender = tokio::spawn(async move {
        for i in 0..200 {
            let m = match i % 2 {
                0 => json!({"msgType": 3, "roomId": "r", "msgBody": i}),
                _ => json!({"msgType": 3, "receivedUserId": "p", "msgBody": i}),
            };
            w.send(&m).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w
    });
    // Both phones are read while the messages go: a client whose output
    // is not read stops acknowledging.
    let (got, copies) = tokio::join!(
        arrivals(&mut p, Duration::from_secs(3)),
        arrivals(&mut a, Duration::from_secs(3))
    );
    let _w = sender.await.unwrap();
    // Every message came by its stream (reliable); some first by datagram,
    // well before the stream copy: that stream copy was lost and resent.
    let mut first: BTreeMap<String, (&str, f64)> = BTreeMap::new();
    let mut stream_at: HashMap<String, f64> = HashMap::new();
    let mut by_channel: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, way, at, m) in &got {
        if !first.contains_key(id) {
            first.insert(id.clone(), (way, *at));
            // What a client hands on: the first copy of each, per channel.
            let channel = m["roomId"].as_str().unwrap_or("inbox").to_string();
            by_channel
                .entry(channel)
                .or_default()
                .push(m["seq"].as_u64().unwrap());
        }
        if *way == "stream" {
            stream_at.entry(id.clone()).or_insert(*at);
        }
    }
    assert_eq!(stream_at.len(), 200, "every message by its stream");
    let rescued = first
        .iter()
        .filter(|(id, (way, at))| *way == "datagram" && stream_at[*id] - at >= 100.0)
        .count();
    assert!(
        rescued >= 1,
        "no stream copy was outrun by its datagram ({} by datagram first)",
        first.values().filter(|(w, _)| *w == "datagram").count()
    );
    // In seq order per channel once the first copies are put in order:
    // nothing missing, nothing twice.
    for (channel, mut seqs) in by_channel {
        seqs.sort_unstable();
        let want: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
        assert_eq!(seqs, want, "{channel}");
    }
    // "auto" saw the loss: it sent copies too, or, had the round trip
    // risen as a filling link's does (a loaded machine's scheduling can do
    // that to the lab's 200 ms, as in one CI run), it held them and counted
    // that; it does either only once it has seen packets lost. When it
    // holds and when not is `link_queue`'s unit tests' (a steady round trip
    // never holds).
    if !copies.iter().any(|(_, way, _, _)| *way == "datagram") {
        let direct = format!("{}:{}", lab.server_direct_ip, s.http.port());
        let (_, text) = http_request(direct.parse().unwrap(), "GET", "/metrics", &[], "").await;
        let copy_counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("rtgate_datagram_copies_total"))
            .collect();
        let held = copies_counted(&text, "held");
        let dropped = lab.stats().dropped;
        assert!(
            held > 0.0,
            "auto sent no copy behind 8 % loss and held none: {copy_counts:?}; the lab dropped {dropped} packets"
        );
        eprintln!("redundancy lab: auto held its copies (the round trip rose): {copy_counts:?}");
    }
    eprintln!("redundancy lab: {rescued} of 200 rescued by their datagram copy");
}

/// A link the copies would fill: 200 kbit/s, 5 % loss (so that `auto` is
/// sure to see two losses early), 100 ms one way, and
/// 20 messages a second of about 800 bytes (about 130 kbit/s alone, over
/// 200 with copies). `"auto"` sees the loss and tries copies; the round
/// trip grows as the link's buffer fills, and the copies pause (counted
/// `held`) instead of doubling the queue. Nothing is lost or reordered.
#[tokio::test]
async fn on_a_link_the_copies_would_fill_auto_pauses_them() {
    let imp = Impairment {
        loss: 5.0,
        delay_ms: 100.0,
        rate_kbit: 200.0,
        ..Impairment::default()
    };
    let Some((lab, s)) = lab_with("redundancy::on_a_full_link", imp) else {
        return;
    };
    let token = |u: &str| jwt("k3y", json!({"sub": u, "exp": unix_now() + 600}));
    let url = format!("https://{}:{}/wt", lab.server_ip, s.wt.port());
    let login = json!({"msgType": 2, "token": token("a"), "roomId": "r", "redundancy": "auto"});
    let mut a = phone(&url, Some(&lab.client_ns), login).await;
    let direct = format!("{}:{}", lab.server_direct_ip, s.http.port());
    let mut w = Client::connect(&format!("ws://{direct}/ws")).await;
    w.login_as(json!({"msgType": 2, "token": token("w"), "roomId": "r"}))
        .await;
    let pad = "x".repeat(700);
    let sent = 200;
    let sender = tokio::spawn(async move {
        for i in 0..sent {
            w.send(&json!({"msgType": 3, "roomId": "r", "msgBody": {"i": i, "pad": pad}}))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w
    });
    // Read while the messages go (a client whose output is not read stops
    // acknowledging), until every message came by its stream.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.iter().filter(|(_, way, _, _)| *way == "stream").count() < sent
        && tokio::time::Instant::now() < deadline
    {
        got.extend(arrivals(&mut a, Duration::from_secs(4)).await);
    }
    let _w = sender.await.unwrap();
    let mut seqs: Vec<u64> = got
        .iter()
        .filter(|(_, way, _, _)| *way == "stream")
        .map(|(_, _, _, m)| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), sent, "every message by its stream, once");
    let first = seqs[0];
    seqs.dedup();
    assert_eq!(seqs, (first..first + sent as u64).collect::<Vec<_>>());
    let (_, text) = http_request(direct.parse().unwrap(), "GET", "/metrics", &[], "").await;
    let count = |outcome: &str| copies_counted(&text, outcome);
    let copies = got
        .iter()
        .filter(|(_, way, _, _)| *way == "datagram")
        .count();
    eprintln!(
        "full link: {copies} copies arrived, sent {}, held {}",
        count("sent"),
        count("held")
    );
    assert!(count("held") > 0.0, "auto never paused its copies: {text}");
    assert!(
        (count("sent") as usize) < sent / 2,
        "auto copied most messages into a full link"
    );
}

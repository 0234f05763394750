//! Delivery latency on an impaired network (the mobile issue): a phone, one
//! client in 8 rooms plus its inbox, behind the network lab
//! (`tools/netlab.py`) at a given loss and one-way delay, and chat-like
//! durable traffic from a sender on the unimpaired side. The phone runs as
//! this binary's hidden `phone` subcommand inside the lab's client
//! namespace; the server inside the server's. For each network, WebSocket,
//! WebTransport on one stream (`"streams":"single"`) and WebTransport with a
//! stream per channel run one after the other against the same server.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{cert_hash, wt_frame, wt_read};
use crate::netlab::{Impairment, Lab};

const SECRET: &str = "bench-secret";
/// Rooms the phone is in (plus its inbox).
pub(crate) const ROOMS: usize = 8;
/// A gap between deliveries longer than this, while messages are due, is a
/// stall.
const STALL_GAP: Duration = Duration::from_millis(150);
/// The phone's run is over once nothing came for this long.
const QUIET_END: Duration = Duration::from_secs(5);

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// What the lab does besides loss and delay, the messages' size and the
/// server's congestion controller.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    /// The server's QUIC congestion controller.
    pub(crate) congestion: String,
    /// Bandwidth cap per direction, kbit/s (0: none).
    pub(crate) rate_kbit: f64,
    /// Gilbert-Elliott loss: good to bad, bad to good, loss when bad (%).
    pub(crate) burst: Option<(f64, f64, f64)>,
    /// Bodies are padded to a size taken evenly up to this.
    pub(crate) max_size: usize,
}

/// The whole table: every network, every transport.
pub(crate) async fn lossy(
    server: &Path,
    losses: &[f64],
    delays: &[f64],
    secs: u64,
    rate: u64,
    transports: &[String],
    net: Net,
) -> anyhow::Result<Value> {
    if let Some(why) = Lab::unavailable() {
        bail!("the network lab cannot run here: {why}");
    }
    let mut rows = Vec::new();
    for &delay in delays {
        for &loss in losses {
            let mut lab = Lab::start(
                Impairment {
                    loss,
                    delay_ms: delay,
                    jitter_ms: delay / 10.0,
                    rate_kbit: net.rate_kbit,
                    burst: net.burst,
                },
                (secs + 20) * transports.len() as u64 + 60,
            );
            let (mut child, http, wt) = start_server(server, &lab, &net.congestion).await?;
            let direct = format!("{}:{}", lab.server_direct_ip, http);
            let hash = cert_hash(direct.parse()?).await?;
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            for transport in transports {
                let transport = transport.as_str();
                let run = format!("{transport}-{loss}-{delay}").replace('.', "_");
                let before = lab.stats();
                let mut r = one_run(
                    &lab,
                    &direct,
                    http,
                    wt,
                    &hex,
                    transport,
                    &run,
                    secs,
                    rate,
                    net.max_size,
                )
                .await?;
                let after = lab.stats();
                let received = r["received"].as_u64().unwrap_or(0).max(1);
                let wire =
                    (after.bytes_to_client - before.bytes_to_client) as f64 / received as f64;
                r["wire_bytes_per_msg"] = json!(wire.round());
                println!(
                    "    loss {loss:>4} %  delay {delay:>4} ms  {transport:<12} p50 {:>7.1} ms  p99 {:>7.1} ms  p99.9 {:>7.1} ms  max {:>7.1} ms  stalled {:>6} ms  {:>6.0} B/msg  ({} msgs)",
                    r["p50_ms"].as_f64().unwrap_or(0.0),
                    r["p99_ms"].as_f64().unwrap_or(0.0),
                    r["p999_ms"].as_f64().unwrap_or(0.0),
                    r["max_ms"].as_f64().unwrap_or(0.0),
                    r["stalled_ms"].as_u64().unwrap_or(0),
                    wire,
                    r["received"].as_u64().unwrap_or(0),
                );
                rows.push(
                    json!({"loss": loss, "delay_ms": delay, "transport": transport, "result": r}),
                );
            }
            let _ = child.kill().await;
        }
    }
    Ok(
        json!({"scenario": "lossy", "secs": secs, "rate": rate, "rooms": ROOMS,
        "rate_kbit": net.rate_kbit, "burst": net.burst.map(|(a, b, c)| vec![a, b, c]),
        "max_size": net.max_size, "congestion": net.congestion, "rows": rows}),
    )
}

async fn start_server(
    server: &Path,
    lab: &Lab,
    congestion: &str,
) -> anyhow::Result<(tokio::process::Child, u16, u16)> {
    let data = tempfile::tempdir()?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.server_ns])
        .arg(server)
        .args([
            "--http",
            "0.0.0.0:0",
            "--wt",
            "0.0.0.0:0",
            "--jwt-secret",
            SECRET,
        ])
        .args([
            "--rate-limit",
            "0",
            "--user-rate-limit",
            "0",
            "--max-rooms",
            "64",
            "--congestion",
            congestion,
        ])
        .arg("--data")
        .arg(data.keep())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting rtgate in the lab")?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.strip_prefix("rtgate listening http=") {
            let mut w = rest.split_whitespace();
            let port = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            let http = w.next().and_then(port).context("http port")?;
            let wt = w
                .next()
                .and_then(|a| a.strip_prefix("wt="))
                .and_then(port)
                .context("wt port")?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, http, wt));
        }
    }
    bail!("rtgate did not start in the lab")
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    lab: &Lab,
    direct: &str,
    http: u16,
    wt: u16,
    hash: &str,
    transport: &str,
    run: &str,
    secs: u64,
    rate: u64,
    max_size: usize,
) -> anyhow::Result<Value> {
    let phone_user = format!("phone-{run}");
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("{run}-room{i}")).collect();
    let me = std::env::current_exe()?;
    let mut phone = Command::new("ip");
    phone
        .args(["netns", "exec", &lab.client_ns])
        .arg(me)
        .arg("phone")
        .args(["--ws", &format!("ws://{}:{http}/ws", lab.server_ip)])
        .args(["--wt", &format!("https://{}:{wt}/wt", lab.server_ip)])
        .args([
            "--hash",
            hash,
            "--transport",
            transport,
            "--token",
            &token(&phone_user),
        ])
        .args([
            "--rooms",
            &rooms.join(","),
            "--secs",
            &(secs + 10).to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut phone = phone.spawn()?;
    let mut out = BufReader::new(phone.stdout.take().unwrap()).lines();
    let ready = out.next_line().await?.context("the phone said nothing")?;
    anyhow::ensure!(ready.contains("ready"), "phone: {ready}");
    // The sender, on the unimpaired side.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{direct}/ws")).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(
        json!({"msgType": 2, "token": token(&format!("sender-{run}"))}).to_string(),
    ))
    .await?;
    for room in &rooms {
        tx.send(Message::text(
            json!({"msgType": 5, "roomId": room}).to_string(),
        ))
        .await?;
    }
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let total = secs * rate;
    for i in 0..total {
        tick.tick().await;
        let pad = "x".repeat(fastrand::usize(0..=max_size));
        let body = json!({"t": micros(), "pad": pad});
        let msg = match (i as usize) % (ROOMS + 1) {
            ROOMS => json!({"msgType": 3, "receivedUserId": phone_user, "msgBody": body}),
            r => json!({"msgType": 3, "roomId": rooms[r], "msgBody": body}),
        };
        tx.send(Message::text(msg.to_string())).await?;
    }
    let result = out.next_line().await?.context("the phone gave no result")?;
    drain.abort();
    let mut r: Value = serde_json::from_str(&result)?;
    r["sent"] = json!(total);
    Ok(r)
}

/// The phone: logs in, joins the rooms, and measures each message's
/// latency from the timestamp in its body until `total` arrived or `secs`
/// passed. Prints `ready`, then one JSON line.
pub(crate) async fn phone(
    ws: &str,
    wt: &str,
    hash: &str,
    transport: &str,
    token: &str,
    rooms: &[String],
    secs: u64,
) -> anyhow::Result<()> {
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let redundancy = match transport {
        "wt-datagram" => "datagram",
        "wt-auto" => "auto",
        _ => "off",
    };
    let login = json!({"msgType": 2, "token": token, "rooms": rooms, "redundancy": redundancy,
        "streams": if transport == "wt-single" { "single" } else { "channels" }});
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    if transport == "ws" {
        let (s, _) = tokio_tungstenite::connect_async(ws).await?;
        let (mut tx, mut rx) = s.split();
        tx.send(Message::text(login.to_string())).await?;
        keep.push(Box::new(tx));
        tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m {
                    let _ = frames_tx.send(t.as_bytes().to_vec());
                }
            }
        });
    } else {
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16)?;
        }
        let endpoint = crate::load::wt_endpoint(h, None)?;
        let conn = endpoint.connect(wt).await?;
        let (mut send, mut recv) = conn.open_bi().await?.await?;
        wt_frame(&mut send, login.to_string().as_bytes()).await?;
        let main_tx = frames_tx.clone();
        tokio::spawn(async move {
            while let Ok(b) = wt_read(&mut recv).await {
                let _ = main_tx.send(b);
            }
        });
        let dg_conn = conn.clone();
        let dg_tx = frames_tx.clone();
        tokio::spawn(async move {
            while let Ok(d) = dg_conn.receive_datagram().await {
                let _ = dg_tx.send(d.payload().to_vec());
            }
        });
        let uni_conn = conn.clone();
        tokio::spawn(async move {
            while let Ok(mut s) = uni_conn.accept_uni().await {
                let tx = frames_tx.clone();
                tokio::spawn(async move {
                    while let Ok(b) = wt_read(&mut s).await {
                        let _ = tx.send(b);
                    }
                });
            }
        });
        keep.push(Box::new((endpoint, conn, send)));
    }
    println!("ready");
    // As a chat client does: the first copy of each message (by seq; a
    // copy may come by datagram too) is handed on in seq order per channel,
    // a message whose predecessor has not come yet waits for it.
    let mut order = InOrder::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut stalled, mut last) = (Duration::ZERO, None::<tokio::time::Instant>);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        // Until the first message, as long as the run lasts; after it, the
        // run is over once nothing came for five seconds.
        let wait = match last {
            None => deadline.saturating_duration_since(tokio::time::Instant::now()),
            Some(_) => QUIET_END,
        };
        let Ok(Some(f)) = tokio::time::timeout(wait, frames.recv()).await else {
            break;
        };
        let Ok(m) = serde_json::from_slice::<Value>(&f) else {
            continue;
        };
        let (Some(t), Some(seq)) = (m["msgBody"]["t"].as_u64(), m["seq"].as_u64()) else {
            continue;
        };
        let channel = m["roomId"].as_str().unwrap_or("").to_string();
        let delivered = order.arrived(channel, seq, t);
        if delivered.is_empty() {
            continue;
        }
        let now = tokio::time::Instant::now();
        if let Some(l) = last
            && now - l > STALL_GAP
        {
            stalled += now - l;
        }
        last = Some(now);
        let at = micros();
        for t in delivered {
            hist.record(at.saturating_sub(t).max(1))?;
        }
        if now > deadline {
            break;
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        json!({"received": hist.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
               "max_ms": hist.max() as f64 / 1000.0, "stalled_ms": stalled.as_millis() as u64})
    );
    drop(keep);
    Ok(())
}

/// Per channel, the next seq to hand on and those that came early.
#[derive(Default)]
struct InOrder(std::collections::HashMap<String, (u64, std::collections::BTreeMap<u64, u64>)>);

impl InOrder {
    /// A copy of `seq` (sent at `t`) came on `channel`: the send times of
    /// the messages it lets through, in order (none for a second copy or
    /// one that must wait). Channels start at seq 1 (fresh rooms).
    fn arrived(&mut self, channel: String, seq: u64, t: u64) -> Vec<u64> {
        let (next, early) = self.0.entry(channel).or_insert((1, Default::default()));
        if seq < *next {
            return Vec::new();
        }
        early.insert(seq, t);
        let mut out = Vec::new();
        while let Some(t) = early.remove(next) {
            out.push(t);
            *next += 1;
        }
        out
    }
}

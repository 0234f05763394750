//! The chaos run: two nodes on a durable Redis, clients over WebSocket and
//! WebTransport sending durable direct and room messages, while Redis is
//! SIGKILLed and restarted, one node is SIGKILLed and restarted, and one is
//! drained (SIGTERM) and restarted. Clients resend unacked messages with the
//! same clientMsgId and resume with `since` after every disconnect. At the
//! end each client resumes once more, and the checker counts: every acked
//! message delivered to every recipient at least once, first deliveries in
//! seq order per channel, gaps only where the login reported `unrecovered`.
//! Loopback only; bounded in time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Target, cert_hash, start, wt_endpoint, wt_frame, wt_read};
use crate::redis_server::RedisServer;

/// Rooms the clients are spread over.
const ROOMS: usize = 10;

/// What the run found.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    reconnects: AtomicU64,
    duplicates: AtomicU64,
    out_of_order: AtomicU64,
    unreported_gaps: AtomicU64,
}

/// An acked message and who must get it.
struct Acked {
    msg_id: String,
    recipients: Vec<usize>,
    direct: bool,
    seq: u64,
}

/// What all clients share with the conductor.
struct Shared {
    /// The nodes up now: (HTTP, WebTransport).
    nodes: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    acked: Mutex<Vec<Acked>>,
    tally: Tally,
    /// No new messages from here on (in-flight ones are still resent).
    stop_sending: AtomicBool,
    /// Every client reconnects once more and resumes, then ends.
    final_resume: AtomicBool,
    clients: usize,
    /// Clients that have logged in at least once: nobody sends before all
    /// have joined their rooms, so every room member is owed every message.
    ready: std::sync::atomic::AtomicUsize,
    /// Messages sent and not yet acked, over all clients.
    outstanding: AtomicU64,
}

/// One client's view: what it got, and where it is in each channel.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    last: HashMap<String, u64>,
    /// Seqs of this client's own room messages: a room message is not sent
    /// back to the session that sent it, so they are no gap.
    own: HashSet<u64>,
    /// Seqs skipped in a channel, judged at the end (an own message's ack
    /// may come after the next message of the room).
    skipped: Vec<(String, u64)>,
}

/// A connection of either transport: frames out, frames in (a reader task
/// per link, so the client's loop can select on them).
struct Link {
    out: mpsc::Sender<String>,
    inbound: mpsc::Receiver<String>,
}

async fn ws_link(http: SocketAddr) -> anyhow::Result<Link> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await?;
    let (mut tx, mut rx) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<String>(256);
    let (in_tx, inbound) = mpsc::channel::<String>(1024);
    tokio::spawn(async move {
        while let Some(t) = out_rx.recv().await {
            if tx.send(Message::text(t)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m
                && in_tx.send(t.to_string()).await.is_err()
            {
                return;
            }
        }
    });
    Ok(Link { out, inbound })
}

async fn wt_link(http: SocketAddr, wt: SocketAddr) -> anyhow::Result<Link> {
    let hash = cert_hash(http).await?;
    let endpoint = wt_endpoint(hash, Some(Duration::from_secs(3)))?;
    let conn = endpoint
        .connect(format!("https://127.0.0.1:{}/wt", wt.port()))
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?.await?;
    let (out, mut out_rx) = mpsc::channel::<String>(256);
    let (in_tx, inbound) = mpsc::channel::<String>(1024);
    // The server sends each channel's messages on a stream it opens for it;
    // each is read into the same inbound queue (order holds per channel).
    let (uni_conn, uni_tx) = (conn.clone(), in_tx.clone());
    tokio::spawn(async move {
        while let Ok(mut stream) = uni_conn.accept_uni().await {
            let tx = uni_tx.clone();
            tokio::spawn(async move {
                while let Ok(body) = wt_read(&mut stream).await {
                    if tx
                        .send(String::from_utf8_lossy(&body).into_owned())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    tokio::spawn(async move {
        let _keep = (endpoint, conn);
        while let Some(t) = out_rx.recv().await {
            if wt_frame(&mut send, t.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(body) = wt_read(&mut recv).await {
            if in_tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Link { out, inbound })
}

/// Who gets a message client `i` sends: `to` for a direct one, the room's
/// other members for a room one.
fn recipients(i: usize, to: Option<usize>, clients: usize) -> Vec<usize> {
    match to {
        Some(j) => vec![j],
        None => (0..clients)
            .filter(|k| k % ROOMS == i % ROOMS && *k != i)
            .collect(),
    }
}

/// One client, until the final resume is done.
async fn client(i: usize, wt: bool, rate: f64, shared: Arc<Shared>) -> Seen {
    let me = format!("c{i}");
    let room = format!("r{}", i % ROOMS);
    let mut seen = Seen::default();
    // clientMsgId -> (frame, recipients): resent until acked.
    let mut pending: HashMap<String, (String, Vec<usize>)> = HashMap::new();
    let mut next = 0u64;
    let mut resumed_at_end = false;
    let mut ever_logged_in = false;
    let mut rng = fastrand::Rng::with_seed(i as u64);
    // Exponential back-off with full jitter (a uniform wait up to a cap
    // that doubles per failed attempt, 250 ms to 2 s): a fleet that lost its
    // node at once comes back spread out instead of in lockstep.
    let mut cap_ms = 250u64;
    let mut back_off = move |rng: &mut fastrand::Rng, ok: bool| {
        cap_ms = if ok { 250 } else { (cap_ms * 2).min(2_000) };
        Duration::from_millis(rng.u64(..=cap_ms))
    };
    loop {
        let final_round = shared.final_resume.load(Ordering::Relaxed);
        let nodes = shared.nodes.lock().unwrap().clone();
        let Some(&(http, wtaddr)) = (!nodes.is_empty()).then(|| &nodes[rng.usize(..nodes.len())])
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let link = if wt {
            wt_link(http, wtaddr).await
        } else {
            ws_link(http).await
        };
        let Ok(mut link) = link else {
            tokio::time::sleep(back_off(&mut rng, false)).await;
            continue;
        };
        // The room's position always travels (0 before anything arrived),
        // so what was sent to the room while this client was away replays.
        let mut rooms = serde_json::Map::new();
        rooms.insert(
            room.clone(),
            json!(seen.last.get(&room).copied().unwrap_or(0)),
        );
        let since = json!({"inbox": seen.last.get("inbox").copied().unwrap_or(0), "rooms": rooms});
        let login = json!({"msgType": 2, "sendUserId": me, "roomId": room, "since": since});
        if link.out.send(login.to_string()).await.is_err() {
            continue;
        }
        let mut unrecovered: HashSet<String> = HashSet::new();
        let mut logged_in = false;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut resend = tokio::time::interval(Duration::from_secs(2));
        let mut quiet_until = None;
        loop {
            tokio::select! {
                f = link.inbound.recv() => {
                    let Some(text) = f else { break };
                    let Ok(m) = serde_json::from_str::<Value>(&text) else { continue };
                    match m["msgType"].as_i64() {
                        Some(2) => {
                            if !logged_in && !ever_logged_in {
                                shared.ready.fetch_add(1, Ordering::AcqRel);
                                ever_logged_in = true;
                            }
                            logged_in = true;
                            for ch in m["unrecovered"].as_array().into_iter().flatten() {
                                let ch = ch.as_str().unwrap_or_default();
                                unrecovered.insert(ch.strip_prefix("room:").unwrap_or(ch).to_string());
                            }
                            for (frame, _) in pending.values() {
                                let _ = link.out.send(frame.clone()).await;
                            }
                            if final_round {
                                quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
                            }
                        }
                        Some(4) => {
                            let cmid = m["clientMsgId"].as_str().unwrap_or_default();
                            if let Some((frame, to)) = pending.remove(cmid) {
                                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
                                shared.tally.acked.fetch_add(1, Ordering::Relaxed);
                                let msg_id = m["msgId"].as_str().unwrap_or_default().to_string();
                                let direct = frame.contains("receivedUserId");
                                if !direct && let Some(seq) = m["seq"].as_u64() {
                                    seen.own.insert(seq);
                                }
                                let seq = m["seq"].as_u64().unwrap_or(0);
                                shared.acked.lock().unwrap().push(Acked { msg_id, recipients: to, direct, seq });
                            }
                        }
                        // A part of the login failed (a room's subscription, the
                        // replay): resume again, as a real client does.
                        Some(9) if logged_in && m.get("clientMsgId").is_none() => break,
                        Some(3) => {
                            let id = m["msgId"].as_str().unwrap_or_default().to_string();
                            if !seen.ids.insert(id) {
                                shared.tally.duplicates.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let ch = if m.get("receivedUserId").is_some() { "inbox".to_string() } else { m["roomId"].as_str().unwrap_or_default().to_string() };
                            let Some(seq) = m["seq"].as_u64() else { continue };
                            let last = seen.last.get(&ch).copied().unwrap_or(0);
                            if seq <= last {
                                shared.tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                            } else {
                                if last > 0 && !unrecovered.contains(&ch) {
                                    seen.skipped.extend((last + 1..seq).map(|s| (ch.clone(), s)));
                                }
                                seen.last.insert(ch, seq);
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick(), if logged_in
                    && !shared.stop_sending.load(Ordering::Relaxed)
                    && shared.ready.load(Ordering::Acquire) == shared.clients => {
                    next += 1;
                    let cmid = format!("{me}-{next}");
                    let to = rng.bool().then(|| rng.usize(..shared.clients)).filter(|j| *j != i);
                    let frame = match to {
                        Some(j) => json!({"msgType": 3, "receivedUserId": format!("c{j}"), "clientMsgId": cmid, "msgBody": {"n": next}}),
                        None => json!({"msgType": 3, "roomId": room, "clientMsgId": cmid, "msgBody": {"n": next}}),
                    }
                    .to_string();
                    pending.insert(cmid, (frame.clone(), recipients(i, to, shared.clients)));
                    shared.outstanding.fetch_add(1, Ordering::AcqRel);
                    shared.tally.sent.fetch_add(1, Ordering::Relaxed);
                    if link.out.send(frame).await.is_err() {
                        break;
                    }
                }
                _ = resend.tick(), if logged_in => {
                    // Answered with an error (503 during an outage): again.
                    for (frame, _) in pending.values() {
                        let _ = link.out.send(frame.clone()).await;
                    }
                    if shared.final_resume.load(Ordering::Relaxed) && !final_round && pending.is_empty() {
                        break;
                    }
                }
                _ = async { match quiet_until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    resumed_at_end = pending.is_empty();
                    break;
                }
            }
        }
        if resumed_at_end {
            return seen;
        }
        if !final_round {
            shared.tally.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(back_off(&mut rng, logged_in)).await;
    }
}

/// Runs the chaos scenario for `secs` with `clients` clients (every
/// `wt_every`-th over WebTransport) sending `rate` messages/s each.
pub(crate) async fn chaos(
    bin: &Path,
    secs: u64,
    clients: usize,
    wt_every: usize,
    rate: f64,
) -> anyhow::Result<Value> {
    let target = Target::Rtgate(bin.to_path_buf());
    let mut redis = tokio::task::spawn_blocking(RedisServer::start).await?;
    let url = redis.url();
    let args = [
        "--redis",
        url.as_str(),
        "--presence-ttl-sec",
        "5",
        "--drain-sec",
        "3",
    ];
    let a = start(&target, &args, false).await?;
    let b = start(&target, &args, false).await?;
    let addr = |p: &crate::load::Proc| (p.http, p.wt.expect("a WebTransport address"));
    let shared = Arc::new(Shared {
        nodes: Mutex::new(vec![addr(&a), addr(&b)]),
        acked: Mutex::new(Vec::new()),
        tally: Tally::default(),
        stop_sending: AtomicBool::new(false),
        final_resume: AtomicBool::new(false),
        clients,
        ready: std::sync::atomic::AtomicUsize::new(0),
        outstanding: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for i in 0..clients {
        let wt = wt_every > 0 && i % wt_every == 0;
        tasks.push(tokio::spawn(client(i, wt, rate, shared.clone())));
    }
    let all_in = tokio::time::Instant::now() + Duration::from_secs(60);
    while shared.ready.load(Ordering::Acquire) < clients {
        anyhow::ensure!(
            tokio::time::Instant::now() < all_in,
            "not every client logged in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let phase = Duration::from_secs(secs) / 4;
    let log = |what: &str| println!("    [chaos] {what}");
    tokio::time::sleep(phase).await;
    log("SIGKILL redis");
    redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis = tokio::task::spawn_blocking(move || {
        redis.spawn();
        redis
    })
    .await?;
    log("redis restarted");
    tokio::time::sleep(phase).await;
    log("SIGKILL node a");
    shared.nodes.lock().unwrap().retain(|n| *n != addr(&a));
    drop(a);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a2 = start(&target, &args, false).await?;
    shared.nodes.lock().unwrap().push(addr(&a2));
    log("node a restarted");
    tokio::time::sleep(phase).await;
    log("drain node b (SIGTERM)");
    shared.nodes.lock().unwrap().retain(|n| *n != addr(&b));
    b.drain().await?;
    let b2 = start(&target, &args, false).await?;
    shared.nodes.lock().unwrap().push(addr(&b2));
    log("node b restarted");
    tokio::time::sleep(phase).await;
    log("stop sending; every client finishes its sends and resumes once more");
    shared.stop_sending.store(true, Ordering::Relaxed);
    // Every message sent is acked (resent as needed) before anyone's last
    // resume, so no message is stored after a recipient has finished.
    let settle = tokio::time::Instant::now() + Duration::from_secs(60);
    while shared.outstanding.load(Ordering::Acquire) > 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < settle,
            "{} messages never acked",
            shared.outstanding.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.final_resume.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .context("a client did not finish")??,
        );
    }
    let gaps: usize = seen
        .iter()
        .map(|c| {
            c.skipped
                .iter()
                .filter(|(ch, s)| ch == "inbox" || !c.own.contains(s))
                .count()
        })
        .sum();
    shared
        .tally
        .unreported_gaps
        .store(gaps as u64, Ordering::Relaxed);
    let (mut expected, mut delivered, mut lost, mut lost_direct) = (0u64, 0u64, 0u64, 0u64);
    for m in shared.acked.lock().unwrap().iter() {
        for r in &m.recipients {
            expected += 1;
            if seen[*r].ids.contains(&m.msg_id) {
                delivered += 1;
            } else {
                lost += 1;
                lost_direct += u64::from(m.direct);
                if std::env::var("CHAOS_DEBUG").is_ok() {
                    let ch = if m.direct {
                        "inbox".to_string()
                    } else {
                        format!("r{}", r % ROOMS)
                    };
                    eprintln!(
                        "lost c{r} {ch} seq {} (client's last {:?})",
                        m.seq,
                        seen[*r].last.get(&ch)
                    );
                }
            }
        }
    }
    println!(
        "    [chaos] lost: {lost_direct} direct, {} room",
        lost - lost_direct
    );
    let t = &shared.tally;
    let out = json!({
        "scenario": "chaos", "secs": secs, "clients": clients,
        "webtransport_clients": (0..clients).filter(|i| wt_every > 0 && i % wt_every == 0).count(),
        "sent": t.sent.load(Ordering::Relaxed), "acked": t.acked.load(Ordering::Relaxed),
        "deliveries_expected": expected, "delivered": delivered, "lost": lost,
        "duplicates_dropped": t.duplicates.load(Ordering::Relaxed),
        "out_of_order": t.out_of_order.load(Ordering::Relaxed),
        "unreported_gaps": t.unreported_gaps.load(Ordering::Relaxed),
        "reconnects": t.reconnects.load(Ordering::Relaxed),
    });
    println!(
        "    chaos {secs} s, {clients} clients: sent {}, acked {}, deliveries {delivered}/{expected}, lost {lost}, out of order {}, unreported gaps {}, duplicates dropped {}, reconnects {}",
        out["sent"],
        out["acked"],
        out["out_of_order"],
        out["unreported_gaps"],
        out["duplicates_dropped"],
        out["reconnects"]
    );
    drop((a2, b2, redis));
    anyhow::ensure!(
        lost == 0 && out["out_of_order"] == 0 && out["unreported_gaps"] == 0,
        "the chaos run lost or misordered messages"
    );
    Ok(out)
}

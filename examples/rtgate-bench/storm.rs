//! Reconnect storm: N WebSocket clients in R rooms drop at once (a node
//! restart, a network blip) while messages go to their rooms, then all come
//! back together with `since`. Reports the time until every client is logged
//! in again and until every client holds every message it missed, the
//! server's CPU and peak RSS during the storm; the floor takes the same storm
//! but has nothing to replay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Target, Window, label, open_many, progress, start, ws_login};
use crate::proc;

/// Connects in flight at once during the storm (the generator's bound; the
/// server's accept backlog sees them all within milliseconds).
const IN_FLIGHT: usize = 1_000;

/// Runs the storm: `n` clients over `rooms` rooms, `missed` messages per
/// room while they are away.
pub(crate) async fn storm(
    target: &Target,
    n: usize,
    rooms: usize,
    missed: usize,
    pin: bool,
) -> anyhow::Result<Value> {
    let server = start(target, &["--login-timeout-sec", "60"], pin).await?;
    let replays = matches!(target, Target::Rtgate(_));
    let all = open_many(server.http, n, rooms, "storm", "connecting").await?;
    // Everyone drops at once: the sockets close without a close frame.
    drop(all);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if replays {
        publish(server.http, rooms, missed).await?;
    }
    let missed = if replays { missed } else { 0 };
    let rss0 = proc::rss(server.pid);
    let peak = Arc::new(AtomicU64::new(rss0));
    let sampler = {
        let (peak, pid) = (peak.clone(), server.pid);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(proc::rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let pb = progress(n as u64, "reconnecting");
    let w = Window::open(&[server.pid]);
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (http, pb) = (server.http, pb.clone());
        tasks.push(tokio::spawn(async move {
            let r = come_back(http, i, i % rooms, missed, t0).await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    let (mut back, mut replayed) = (Duration::ZERO, Duration::ZERO);
    for t in tasks {
        let (b, r) = t.await??;
        back = back.max(b);
        replayed = replayed.max(r);
    }
    let (secs, server_cpu, gen_cpu) = w.close(&[server.pid]);
    sampler.abort();
    pb.finish_and_clear();
    let peak = peak.load(Ordering::Relaxed);
    let out = json!({
        "scenario": "storm", "target": label(target), "n": n, "rooms": rooms,
        "missed_per_client": missed, "replayed_total": n * missed,
        "all_back_s": back.as_secs_f64(), "all_replayed_s": replayed.as_secs_f64(),
        "server_cpu_s": server_cpu, "generator_busy": gen_cpu / secs,
        "rss_before": rss0, "rss_peak": peak,
    });
    println!(
        "{:>10} storm {n} clients, {rooms} rooms: all back in {:.2} s, all {missed} missed messages each in {:.2} s, server CPU {:.2} s, peak RSS {:.1} MB (+{:.1} MB), generator {:.0} % of a core",
        label(target),
        back.as_secs_f64(),
        replayed.as_secs_f64(),
        server_cpu,
        peak as f64 / 1e6,
        peak.saturating_sub(rss0) as f64 / 1e6,
        100.0 * gen_cpu / secs,
    );
    Ok(out)
}

/// `missed` durable messages to each room, acked before the storm starts.
async fn publish(http: SocketAddr, rooms: usize, missed: usize) -> anyhow::Result<()> {
    for r in 0..rooms {
        let room = format!("room{r}");
        let ws = ws_login(http, &format!("storm-pub{r}"), Some(&room)).await?;
        let (mut tx, mut rx) = ws.split();
        for i in 0..missed {
            let m = json!({"msgType": 3, "roomId": room, "clientMsgId": i.to_string(),
                           "msgBody": {"n": i}});
            tx.feed(Message::text(m.to_string())).await?;
        }
        tx.flush().await?;
        let mut acked = 0;
        while acked < missed {
            match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"msgType\":4") => acked += 1,
                Ok(Some(Ok(_))) => {}
                other => bail!("publishing to {room}: {other:?}"),
            }
        }
    }
    Ok(())
}

/// One client's return: login with `since` 0 for its room, then read until
/// it holds every message it missed. Returns (logged in, all replayed) as
/// offsets from the storm's start.
async fn come_back(
    http: SocketAddr,
    i: usize,
    room: usize,
    missed: usize,
    t0: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .with_context(|| format!("client {i} reconnecting"))?;
    let room = format!("room{room}");
    let login = json!({"msgType": 2, "sendUserId": format!("storm{i}"), "roomId": room,
                       "since": {"rooms": {&room: 0}}});
    ws.send(Message::text(login.to_string())).await?;
    let mut back = None;
    let mut got = 0;
    while back.is_none() || got < missed {
        let next = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .with_context(|| format!("client {i}: {got}/{missed} after 60 s"))?;
        match next {
            Some(Ok(Message::Text(t))) if t.contains("\"msgType\":2") => back = Some(t0.elapsed()),
            Some(Ok(Message::Text(t))) if t.contains("\"seq\"") && t.contains("\"msgBody\"") => {
                got += 1
            }
            Some(Ok(_)) => {}
            other => bail!("client {i}: {other:?}"),
        }
    }
    let back = back.context("no login reply")?;
    Ok((back, t0.elapsed()))
}

//! The scenarios: servers started as separate processes, clients driven from
//! this one, figures from HDR histograms and /proc.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::proc;
use crate::redis_server::{Launch, RedisServer};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What to load.
pub(crate) enum Target {
    /// The rtgate binary at this path.
    Rtgate(PathBuf),
    /// The bare broadcast server (this program's `baseline-server`).
    Baseline,
    /// uWebSockets.js with its native pub/sub (`benches/uws`), the
    /// best-known peer, speaking the floor's subset of the protocol.
    Uws,
}

impl Target {
    /// The floor when `baseline`, uWebSockets.js when `uws`, else rtgate
    /// at `server`.
    pub(crate) fn pick(baseline: bool, uws: bool, server: PathBuf) -> Self {
        match (baseline, uws) {
            (true, _) => Self::Baseline,
            (_, true) => Self::Uws,
            _ => Self::Rtgate(server),
        }
    }

    /// Whether this is rtgate (the others speak the floor's subset only).
    pub(crate) fn is_rtgate(&self) -> bool {
        matches!(self, Self::Rtgate(_))
    }
}

/// How a fan-out's publishers space their messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Arrivals {
    /// Evenly: publisher p of P ticks p/P of a period after the first.
    Spread,
    /// In step: every publisher ticks at the same instants, so the server
    /// gets bursts of P messages (a goal, an announcement, everyone
    /// answering).
    Burst,
}

impl Arrivals {
    pub(crate) fn parse(s: &str) -> Self {
        if s == "burst" {
            Self::Burst
        } else {
            Self::Spread
        }
    }
}

/// `benches/uws` with its npm dependencies installed (once).
fn uws_server() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/uws"));
    if !dir
        .join("node_modules/uWebSockets.js/package.json")
        .exists()
    {
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("npm (uWebSockets.js is installed from the npm registry)")?
            .success();
        if !ok {
            bail!("npm ci in {} failed", dir.display());
        }
    }
    Ok(dir.join("server.js"))
}

/// The clients' transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Transport {
    Ws,
    Wt,
}

impl Transport {
    pub(crate) fn parse(s: &str) -> Self {
        if s == "wt" { Self::Wt } else { Self::Ws }
    }
}

/// A fan-out run.
#[derive(Clone)]
pub(crate) struct FanoutOpts {
    pub(crate) subs: usize,
    pub(crate) rooms: usize,
    pub(crate) pubs: usize,
    pub(crate) rate: u64,
    pub(crate) window: usize,
    pub(crate) durable: bool,
    pub(crate) secs: u64,
    pub(crate) transport: Transport,
    pub(crate) arrivals: Arrivals,
}

/// A server process.
pub(crate) struct Proc {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) wt: Option<SocketAddr>,
    pub(crate) pid: u32,
    _data: tempfile::TempDir,
}

impl Proc {
    /// Drains the server (SIGTERM) and waits for it to exit.
    pub(crate) async fn drain(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        self.child.wait().await?;
        Ok(())
    }

    /// The server's data folder.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub(crate) async fn start(target: &Target, extra: &[&str], pin: bool) -> anyhow::Result<Proc> {
    let data = tempfile::tempdir()?;
    let (program, mut args): (PathBuf, Vec<String>) = match target {
        Target::Rtgate(bin) => {
            let mut a: Vec<String> = [
                "--http",
                "127.0.0.1:0",
                "--wt",
                "127.0.0.1:0",
                "--rate-limit",
                "0",
                "--user-rate-limit",
                "0",
                // Every generated client comes from 127.0.0.1.
                "--max-conns-per-ip",
                "0",
                "--data",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.push(data.path().display().to_string());
            (bin.clone(), a)
        }
        Target::Baseline => (std::env::current_exe()?, vec!["baseline-server".into()]),
        Target::Uws => (
            PathBuf::from("node"),
            vec![uws_server()?.display().to_string()],
        ),
    };
    if target.is_rtgate() {
        args.extend(extra.iter().map(|s| s.to_string()));
    }
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("0").arg(&program).args(&args);
        c
    } else {
        let mut c = Command::new(&program);
        c.args(&args);
        c
    };
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().context("pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await??
        .context("no address line")?;
    let mut http = None;
    let mut wt = None;
    for word in line.split_whitespace() {
        if let Some(a) = word.strip_prefix("http=") {
            http = Some(a.parse()?);
        } else if let Some(a) = word.strip_prefix("wt=") {
            wt = Some(a.parse()?);
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        child,
        http: http.context("no http address")?,
        wt,
        pid,
        _data: data,
    })
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The send time a message carries as `"t":<micros>` in its body.
pub(crate) fn sent_at(text: &str) -> Option<u64> {
    let i = text.find("\"t\":")? + 4;
    let digits: &str = &text[i..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

pub(crate) async fn ws_login(
    http: SocketAddr,
    user: &str,
    room: Option<&str>,
) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await?;
    let mut login = json!({"msgType": 2, "sendUserId": user});
    if let Some(r) = room {
        login["roomId"] = json!(r);
    }
    ws.send(Message::text(login.to_string())).await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no login reply in 30 s")?;
        match next {
            Some(Ok(Message::Text(t))) if t.contains("\"msgType\":2") => return Ok(ws),
            Some(Ok(_)) => continue,
            other => bail!("login failed: {other:?}"),
        }
    }
}

pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Opens `n` WebSocket logins, `parallel` at a time.
pub(crate) async fn open_many(
    http: SocketAddr,
    n: usize,
    rooms: usize,
    prefix: &str,
    what: &str,
) -> anyhow::Result<Vec<Ws>> {
    let pb = progress(n as u64, what);
    let sem = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let user = format!("{prefix}{i}");
        let room = (rooms > 0).then(|| format!("room{}", i % rooms));
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let r = ws_login(http, &user, room.as_deref()).await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    pb.finish_and_clear();
    Ok(out)
}

pub(crate) struct Window {
    t0: Instant,
    server_cpu: Duration,
    gen_cpu: Duration,
}

impl Window {
    pub(crate) fn open(pids: &[u32]) -> Self {
        Self {
            t0: Instant::now(),
            server_cpu: pids.iter().map(|p| proc::cpu(*p)).sum(),
            gen_cpu: proc::cpu(std::process::id()),
        }
    }

    /// (elapsed s, server CPU s, generator CPU s)
    pub(crate) fn close(&self, pids: &[u32]) -> (f64, f64, f64) {
        let server: Duration = pids.iter().map(|p| proc::cpu(*p)).sum();
        (
            self.t0.elapsed().as_secs_f64(),
            (server - self.server_cpu).as_secs_f64(),
            (proc::cpu(std::process::id()) - self.gen_cpu).as_secs_f64(),
        )
    }
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({"p50_ms": ms(h.value_at_quantile(0.5)), "p90_ms": ms(h.value_at_quantile(0.9)),
           "p99_ms": ms(h.value_at_quantile(0.99)), "max_ms": ms(h.max()), "samples": h.len()})
}

/// A subscriber: counts deliveries and records one-way latency while `measuring`.
fn subscriber(
    mut rx: SplitStream<Ws>,
    measuring: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    done: CancellationToken,
) -> tokio::task::JoinHandle<Histogram<u64>> {
    tokio::spawn(async move {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        while let Some(Ok(msg)) = tokio::select! {
            m = rx.next() => m,
            _ = done.cancelled() => None,
        } {
            if let Message::Text(t) = msg
                && let Some(sent) = sent_at(t.as_str())
                && measuring.load(Ordering::Relaxed)
            {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = h.record(now_us().saturating_sub(sent).max(1));
            }
        }
        h
    })
}

/// A publisher: sends at `rate` per second from `first_tick` on (or as fast
/// as its window of unacked messages allows when `rate` is 0), until `stop`.
#[allow(clippy::too_many_arguments)]
fn publisher(
    mut tx: SplitSink<Ws, Message>,
    mut rx: SplitStream<Ws>,
    room: String,
    rate: f64,
    first_tick: tokio::time::Instant,
    window: usize,
    durable: bool,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let inflight = Arc::new(AtomicUsize::new(0));
    let acks = inflight.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m
                && t.contains("\"msgType\":4")
            {
                acks.fetch_sub(1, Ordering::AcqRel);
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = (rate > 0.0)
            .then(|| tokio::time::interval_at(first_tick, Duration::from_secs_f64(1.0 / rate)));
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match &mut tick {
                Some(t) => {
                    t.tick().await;
                }
                None if durable => {
                    while inflight.load(Ordering::Acquire) >= window
                        && !stop.load(Ordering::Relaxed)
                    {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                None => {
                    if n.is_multiple_of(window as u64) {
                        tokio::task::yield_now().await;
                    }
                }
            }
            n += 1;
            let mut m = json!({"msgType": 3, "roomId": room, "msgBody": {"t": now_us(), "n": n}});
            if durable {
                m["clientMsgId"] = json!(n.to_string());
                inflight.fetch_add(1, Ordering::AcqRel);
            } else {
                m["volatile"] = json!(true);
            }
            if tx.send(Message::text(m.to_string())).await.is_err() {
                return;
            }
            published.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Subscribers connect to `subs_at` (HTTP address, WebTransport address).
async fn run_fanout(
    label: &str,
    pids: &[u32],
    subs_at: &[(SocketAddr, Option<SocketAddr>)],
    pub_at: SocketAddr,
    o: &FanoutOpts,
) -> anyhow::Result<Value> {
    let measuring = Arc::new(AtomicBool::new(false));
    let done = CancellationToken::new();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let mut sub_tasks = Vec::new();
    let mut keep = Vec::new();
    let per_node = o.subs.div_ceil(subs_at.len());
    for (k, (http, wt)) in subs_at.iter().enumerate() {
        let n = per_node.min(o.subs - k * per_node);
        if o.transport == Transport::Wt {
            let wt = wt.context("the server has no WebTransport address")?;
            sub_tasks.extend(
                crate::wtsub::subscribers(
                    (*http, wt),
                    n,
                    o.rooms,
                    &format!("sub{k}-"),
                    crate::wtsub::Counting {
                        measuring: measuring.clone(),
                        count: count.clone(),
                        done: done.clone(),
                    },
                )
                .await?,
            );
            continue;
        }
        for ws in open_many(*http, n, o.rooms, &format!("sub{k}-"), "subscribers").await? {
            let (tx, rx) = ws.split();
            keep.push(tx); // the write half stays open for the run, closed at its end
            sub_tasks.push(subscriber(
                rx,
                measuring.clone(),
                count.clone(),
                done.clone(),
            ));
        }
    }
    let mut pubs = Vec::new();
    let mut logged_in = Vec::new();
    for p in 0..o.pubs {
        let room = format!("room{}", p % o.rooms.max(1));
        logged_in.push((
            room.clone(),
            ws_login(pub_at, &format!("pub{p}"), Some(&room)).await?,
        ));
    }
    // Every publisher ticks once per period; spread, publisher p a p/P
    // part of it after the first, in step all at once.
    let rate = o.rate as f64 / o.pubs as f64;
    let period = Duration::from_secs_f64(if rate > 0.0 { 1.0 / rate } else { 0.0 });
    let t0 = tokio::time::Instant::now() + Duration::from_millis(100);
    for (p, (room, ws)) in logged_in.into_iter().enumerate() {
        let (tx, rx) = ws.split();
        let offset = match o.arrivals {
            Arrivals::Spread => period.mul_f64(p as f64 / o.pubs as f64),
            Arrivals::Burst => Duration::ZERO,
        };
        pubs.push(publisher(
            tx,
            rx,
            room,
            rate,
            t0 + offset,
            o.window,
            o.durable,
            stop.clone(),
            published.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    // Datagrams the server sent, to tell its work from what the generator
    // managed to receive (a datagram a busy receiver misses is not resent).
    const SENT: &str = "rtgate_datagrams_total{direction=\"out\"}";
    let datagrams = o.transport == Transport::Wt && !o.durable;
    let sent0 = if datagrams {
        metric(pub_at, SENT).await?
    } else {
        0.0
    };
    let w = Window::open(pids);
    let p0 = published.load(Ordering::Relaxed);
    let segs0 = proc::tcp_out_segs();
    measuring.store(true, Ordering::Relaxed);
    let pb = progress(o.secs, label);
    for _ in 0..o.secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pb.inc(1);
    }
    measuring.store(false, Ordering::Relaxed);
    pb.finish_and_clear();
    let (secs, server_cpu, gen_cpu) = w.close(pids);
    let segs = proc::tcp_out_segs().saturating_sub(segs0);
    let delivered = count.load(Ordering::Relaxed);
    let server_sent = if datagrams {
        metric(pub_at, SENT).await? - sent0
    } else {
        0.0
    };
    let sent = published.load(Ordering::Relaxed) - p0;
    stop.store(true, Ordering::Relaxed);
    for p in pubs {
        p.abort();
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    done.cancel();
    for t in sub_tasks {
        if let Ok(h) = t.await {
            hist.add(h)?;
        }
    }
    drop(keep);
    let rate = delivered as f64 / secs;
    let mut out = json!({
        "scenario": "fanout", "target": label, "transport": format!("{:?}", o.transport).to_lowercase(), "subs": o.subs, "rooms": o.rooms, "pubs": o.pubs,
        "arrivals": format!("{:?}", o.arrivals).to_lowercase(),
        "durable": o.durable, "published_per_s": sent as f64 / secs,
        "expected_deliveries_per_s": sent as f64 / secs * (o.subs as f64 / o.rooms.max(1) as f64),
        "deliveries_per_s": rate, "server_cpu": server_cpu / secs, "generator_cpu": gen_cpu / secs,
        "deliveries_per_server_cpu_s": delivered as f64 / server_cpu.max(1e-9),
        "tcp_segments_per_s": segs as f64 / secs,
    });
    if datagrams {
        out["datagrams_sent_per_s"] = json!(server_sent / secs);
        out["datagrams_sent_per_server_cpu_s"] = json!(server_sent / server_cpu.max(1e-9));
    }
    let lat = latency_json(&hist);
    for (k, v) in lat.as_object().unwrap() {
        out[k] = v.clone();
    }
    println!(
        "{label:>10} fanout {} {:?} subs/{} rooms, {} pub(s) {:?}, {}: {:.0} deliveries/s ({:.0}% server core, {:.0}% generator core), {:.0} per server CPU-s; latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        o.subs,
        o.transport,
        o.rooms,
        o.pubs,
        o.arrivals,
        if o.durable { "durable" } else { "volatile" },
        rate,
        server_cpu / secs * 100.0,
        gen_cpu / secs * 100.0,
        out["deliveries_per_server_cpu_s"].as_f64().unwrap_or(0.0),
        out["p50_ms"].as_f64().unwrap_or(0.0),
        out["p99_ms"].as_f64().unwrap_or(0.0),
        out["max_ms"].as_f64().unwrap_or(0.0),
    );
    if datagrams {
        println!(
            "           datagrams sent by the server: {:.0}/s, {:.0} per server CPU-s ({:.0} % received)",
            server_sent / secs,
            server_sent / server_cpu.max(1e-9),
            100.0 * delivered as f64 / server_sent.max(1.0),
        );
    }
    if gen_cpu / secs > 0.9 {
        println!(
            "           note: the generator used over 90% of its core; compare per server CPU-second"
        );
    }
    Ok(out)
}

pub(crate) fn label(target: &Target) -> &'static str {
    match target {
        Target::Rtgate(_) => "rtgate",
        Target::Baseline => "floor",
        Target::Uws => "uWS",
    }
}

/// Room fan-out against one server. With WebTransport subscribers, the same
/// load runs first with WebSocket subscribers (a fresh server each), and the
/// result carries both and their ratio per server CPU-second.
pub(crate) async fn fanout(target: &Target, o: &FanoutOpts, pin: bool) -> anyhow::Result<Value> {
    let run = |o: FanoutOpts| async move { fanout_with(target, &o, &[], pin).await };
    if o.transport == Transport::Ws {
        return run(o.clone()).await;
    }
    if !target.is_rtgate() {
        bail!("the floor and uWS speak WebSocket only");
    }
    let ws = run(FanoutOpts {
        transport: Transport::Ws,
        ..o.clone()
    })
    .await?;
    let wt = run(o.clone()).await?;
    let key = "deliveries_per_server_cpu_s";
    let ratio = wt[key].as_f64().unwrap_or(0.0) / ws[key].as_f64().unwrap_or(1.0).max(1e-9);
    println!("    WebTransport / WebSocket deliveries per server CPU-second: {ratio:.2}");
    Ok(json!({"scenario": "fanout-transports", "ws": ws, "wt": wt, "wt_over_ws": ratio}))
}

/// Room fan-out against one fresh server started with `extra` options.
pub(crate) async fn fanout_with(
    target: &Target,
    o: &FanoutOpts,
    extra: &[&str],
    pin: bool,
) -> anyhow::Result<Value> {
    let mut args = vec!["--outbound-queue", "8192"];
    args.extend_from_slice(extra);
    let server = start(target, &args, pin).await?;
    let at = [(server.http, server.wt)];
    run_fanout(label(target), &[server.pid], &at, server.http, o).await
}

/// Direct messages between pairs (durable, acked). With `sample_every`,
/// the store's size is sampled through the run (the retention scenario).
pub(crate) async fn direct(
    target: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
    pin: bool,
    extra: &[&str],
    sample_every: Option<Duration>,
) -> anyhow::Result<Value> {
    let server = start(target, extra, pin).await?;
    let measuring = Arc::new(AtomicBool::new(false));
    let done = CancellationToken::new();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let receivers = open_many(server.http, pairs, 0, "b", "receivers").await?;
    let mut subs = Vec::new();
    let mut keep = Vec::new();
    for ws in receivers {
        let (tx, rx) = ws.split();
        keep.push(tx);
        subs.push(subscriber(
            rx,
            measuring.clone(),
            count.clone(),
            done.clone(),
        ));
    }
    let senders = open_many(server.http, pairs, 0, "a", "senders").await?;
    let mut pubs = Vec::new();
    for (i, ws) in senders.into_iter().enumerate() {
        let (mut tx, rx) = ws.split();
        let (stop, published) = (stop.clone(), published.clone());
        let inflight = Arc::new(AtomicUsize::new(0));
        let acks = inflight.clone();
        let mut rx = rx;
        tokio::spawn(async move {
            // Every frame, not only text: the server's Pings arrive too.
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m
                    && t.contains("\"msgType\":4")
                {
                    acks.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
        pubs.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                while inflight.load(Ordering::Acquire) >= window && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                n += 1;
                inflight.fetch_add(1, Ordering::AcqRel);
                let m = json!({"msgType": 3, "receivedUserId": format!("b{i}"), "clientMsgId": n.to_string(), "msgBody": {"t": now_us()}});
                if tx.send(Message::text(m.to_string())).await.is_err() {
                    return;
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let w = Window::open(&[server.pid]);
    measuring.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    match sample_every {
        None => tokio::time::sleep(Duration::from_secs(secs)).await,
        Some(every) => {
            let started = Instant::now();
            println!(
                "    {:>6} {:>12} {:>12} {:>12} {:>10} {:>10}",
                "s", "delivered", "db bytes", "wal bytes", "messages", "dedupe"
            );
            while started.elapsed() < Duration::from_secs(secs) {
                tokio::time::sleep(every).await;
                let s = store_sample(
                    server.data_dir(),
                    started.elapsed(),
                    count.load(Ordering::Relaxed),
                );
                println!(
                    "    {:>6.0} {:>12} {:>12} {:>12} {:>10} {:>10}",
                    s["s"].as_f64().unwrap_or(0.0),
                    s["delivered"],
                    s["db_bytes"],
                    s["wal_bytes"],
                    s["messages"],
                    s["dedupe"]
                );
                samples.push(s);
            }
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let (el, server_cpu, gen_cpu) = w.close(&[server.pid]);
    stop.store(true, Ordering::Relaxed);
    let delivered = count.load(Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    done.cancel();
    for t in subs {
        if let Ok(h) = t.await {
            hist.add(h)?;
        }
    }
    for p in pubs {
        p.abort();
    }
    drop(keep);
    let mut out = json!({"scenario": "direct", "pairs": pairs, "window": window, "samples": samples,
        "deliveries_per_s": delivered as f64 / el, "server_cpu": server_cpu / el, "generator_cpu": gen_cpu / el,
        "deliveries_per_server_cpu_s": delivered as f64 / server_cpu.max(1e-9)});
    for (k, v) in latency_json(&hist).as_object().unwrap() {
        out[k] = v.clone();
    }
    println!(
        "    direct {pairs} pairs, window {window}: {:.0} stored+delivered msg/s, {:.0}% server core; latency p50 {:.2} ms p99 {:.2} ms",
        delivered as f64 / el,
        server_cpu / el * 100.0,
        out["p50_ms"].as_f64().unwrap_or(0.0),
        out["p99_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(out)
}

/// The SQLite store's files and rows in `data`, `at` into a run.
fn store_sample(data: &std::path::Path, at: Duration, delivered: u64) -> Value {
    let size = |f: &str| std::fs::metadata(data.join(f)).map_or(0, |m| m.len());
    let rows = |table: &str| -> i64 {
        rusqlite::Connection::open_with_flags(
            data.join("rtgate.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap_or(-1)
    };
    json!({"s": at.as_secs_f64().round(), "delivered": delivered,
        "db_bytes": size("rtgate.db"), "wal_bytes": size("rtgate.db-wal"),
        "messages": rows("messages"), "dedupe": rows("dedupe")})
}

/// N idle logged-in connections.
pub(crate) async fn conns(
    target: &Target,
    n: usize,
    transport: Transport,
    hold: u64,
    pin: bool,
) -> anyhow::Result<Value> {
    let server = start(
        target,
        // Default heartbeat (25 s): a 30 s hold spans one Ping per connection.
        &["--login-timeout-sec", "60"],
        pin,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = proc::rss(server.pid);
    let w = Window::open(&[server.pid]);
    let checks = match transport {
        Transport::Ws => hold_ws(
            open_many(server.http, n, 0, "idle", "connections").await?,
            hold + 4,
        ),
        Transport::Wt => {
            let wt_addr = server.wt.context("no webtransport address")?;
            hold_wt(
                open_many_wt((server.http, wt_addr), n, 0, "wt").await?,
                hold + 4,
            )
        }
    };
    let (elapsed, server_cpu, gen_cpu) = w.close(&[server.pid]);
    let connect = ConnectPhase {
        elapsed,
        server_cpu,
        gen_cpu,
        rss0,
        rss1: proc::rss(server.pid),
    };
    finish_conns(target, n, transport, connect, hold, server, checks).await
}

/// What the connect phase of `conns` measured.
struct ConnectPhase {
    elapsed: f64,
    server_cpu: f64,
    gen_cpu: f64,
    rss0: u64,
    rss1: u64,
}

async fn finish_conns(
    target: &Target,
    n: usize,
    transport: Transport,
    c: ConnectPhase,
    hold: u64,
    server: Proc,
    checks: Vec<tokio::task::JoinHandle<bool>>,
) -> anyhow::Result<Value> {
    // Let the logins' tail (acks, buffers) settle before measuring idle cost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let w = Window::open(&[server.pid]);
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let (secs, server_cpu, _) = w.close(&[server.pid]);
    let mut alive = 0;
    for c in checks {
        if c.await.unwrap_or(false) {
            alive += 1;
        }
    }
    // Connects per server CPU-second is the server's cost whoever is the
    // bottleneck; the generator's core share says whether the wall-clock
    // rate measured the server or the generator.
    let out = json!({
        "scenario": "conns", "target": label(target), "transport": format!("{transport:?}").to_lowercase(), "n": n,
        "connects_per_s": n as f64 / c.elapsed, "rss_before": c.rss0, "rss_after": c.rss1,
        "connects_per_server_cpu_s": n as f64 / c.server_cpu.max(1e-9),
        "connect_server_busy": c.server_cpu / c.elapsed, "connect_generator_busy": c.gen_cpu / c.elapsed,
        "rss_per_conn": (c.rss1.saturating_sub(c.rss0)) as f64 / n as f64,
        "cpu_us_per_conn_s": server_cpu / secs / n as f64 * 1e6, "alive_at_end": alive,
    });
    println!(
        "{:>10} conns {n} {:?}: {:.0} connects/s ({:.0} per server CPU-second; server {:.0} %, generator {:.0} % of a core), RSS {:.0} bytes per connection, {:.3} us CPU per idle connection per second, {alive}/{n} alive at the end",
        label(target),
        transport,
        out["connects_per_s"].as_f64().unwrap_or(0.0),
        out["connects_per_server_cpu_s"].as_f64().unwrap_or(0.0),
        100.0 * c.server_cpu / c.elapsed,
        100.0 * c.gen_cpu / c.elapsed,
        out["rss_per_conn"].as_f64().unwrap_or(0.0),
        out["cpu_us_per_conn_s"].as_f64().unwrap_or(0.0),
    );
    if alive != n {
        bail!("{} connections died while idle", n - alive);
    }
    Ok(out)
}

/// Keeps WebSocket connections reading (so Pings are answered) for `secs`,
/// then checks each is alive with a `ping`.
fn hold_ws(all: Vec<Ws>, secs: u64) -> Vec<tokio::task::JoinHandle<bool>> {
    all.into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let until = tokio::time::Instant::now() + Duration::from_secs(secs);
                loop {
                    match tokio::time::timeout_at(until, ws.next()).await {
                        Err(_) => break,
                        Ok(Some(Ok(_))) => continue,
                        Ok(_) => return false,
                    }
                }
                if ws.send(Message::text("ping")).await.is_err() {
                    return false;
                }
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "pong" => return true,
                        Ok(Some(Ok(_))) => continue,
                        _ => return false,
                    }
                }
            })
        })
        .collect()
}

pub(crate) struct WtSession {
    pub(crate) conn: wtransport::Connection,
    pub(crate) send: wtransport::SendStream,
    pub(crate) recv: wtransport::RecvStream,
}

pub(crate) async fn wt_frame(send: &mut wtransport::SendStream, body: &[u8]) -> anyhow::Result<()> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    send.write_all(&f).await?;
    Ok(())
}

pub(crate) async fn wt_read(recv: &mut wtransport::RecvStream) -> anyhow::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    recv.read_exact(&mut body).await?;
    Ok(body)
}

/// A WebTransport client endpoint (one UDP socket) that trusts the server's
/// dev certificate by its hash.
pub(crate) fn wt_endpoint(
    hash: [u8; 32],
    keep_alive: Option<Duration>,
) -> anyhow::Result<wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>> {
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .keep_alive_interval(keep_alive)
        .build();
    Ok(wtransport::Endpoint::client(config)?)
}

/// Sessions that share a UDP socket: one socket for thousands overflows its
/// kernel receive buffer when a message's datagrams to all of them arrive
/// at once, and that loss would be the generator's, not the server's.
const WT_PER_SOCKET: usize = 50;

/// Opens `n` WebTransport logins (`{prefix}{i}`, in `room{i % rooms}` when
/// `rooms` > 0), 64 at a time.
pub(crate) async fn open_many_wt(
    (http, wt): (SocketAddr, SocketAddr),
    n: usize,
    rooms: usize,
    prefix: &str,
) -> anyhow::Result<Vec<WtSession>> {
    let hash = cert_hash(http).await?;
    let endpoints = (0..n.div_ceil(WT_PER_SOCKET))
        .map(|_| wt_endpoint(hash, Some(Duration::from_secs(5))).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = format!("https://127.0.0.1:{}/wt", wt.port());
    let pb = progress(n as u64, "wt sessions");
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let endpoint = endpoints[i / WT_PER_SOCKET].clone();
        let (url, pb) = (url.clone(), pb.clone());
        let mut login = json!({"msgType": 2, "sendUserId": format!("{prefix}{i}")});
        if rooms > 0 {
            login["roomId"] = json!(format!("room{}", i % rooms));
        }
        tasks.push(tokio::spawn(async move {
            let r = async {
                let conn = endpoint.connect(&url).await?;
                let (mut send, mut recv) = conn.open_bi().await?.await?;
                wt_frame(&mut send, login.to_string().as_bytes()).await?;
                let reply = wt_read(&mut recv).await?;
                anyhow::ensure!(reply.starts_with(b"{\"msgType\":2"), "login failed");
                anyhow::Ok(WtSession { conn, send, recv })
            }
            .await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    pb.finish_and_clear();
    Ok(out)
}

fn hold_wt(all: Vec<WtSession>, secs: u64) -> Vec<tokio::task::JoinHandle<bool>> {
    all.into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if wt_frame(&mut s.send, b"ping").await.is_err() {
                    return false;
                }
                let ok = matches!(tokio::time::timeout(Duration::from_secs(10), wt_read(&mut s.recv)).await, Ok(Ok(b)) if b == b"pong");
                drop(s.conn);
                ok
            })
        })
        .collect()
}

/// One sample of a metric from the server's `/metrics` (0 when absent).
pub(crate) async fn metric(http: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let mut tcp = TcpStream::connect(http).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0))
}

pub(crate) async fn cert_hash(http: SocketAddr) -> anyhow::Result<[u8; 32]> {
    let mut tcp = TcpStream::connect(http).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(
        format!("GET /cert-hash HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    let json = body.split("\r\n\r\n").nth(1).context("no body")?;
    let v: Value = serde_json::from_str(json)?;
    let hex = v["hex"].as_str().context("no hex")?;
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// Room fan-out on one node, then with subscribers split over two nodes
/// that route through Redis, in one run.
pub(crate) async fn cluster(
    bin: &std::path::Path,
    o: &FanoutOpts,
    pin: bool,
) -> anyhow::Result<Value> {
    let target = Target::Rtgate(bin.to_path_buf());
    let single = start(&target, &["--outbound-queue", "8192"], pin).await?;
    let at = [(single.http, single.wt)];
    let one = run_fanout("1 node", &[single.pid], &at, single.http, o).await?;
    drop(single);
    let wrapper = if pin {
        vec!["taskset".to_string(), "-c".into(), "0".into()]
    } else {
        Vec::new()
    };
    let redis = RedisServer::launch(Launch {
        durable: false,
        wrapper,
        replica_of: None,
    });
    let redis_pid = redis.pid().context("redis pid")?;
    let url = redis.url();

    let a = start(&target, &["--redis", &url, "--outbound-queue", "8192"], pin).await?;
    let b = start(&target, &["--redis", &url, "--outbound-queue", "8192"], pin).await?;
    let two = run_fanout(
        "2 nodes",
        &[a.pid, b.pid, redis_pid],
        &[(a.http, a.wt), (b.http, b.wt)],
        a.http,
        o,
    )
    .await?;
    drop(redis);
    let r = two["deliveries_per_server_cpu_s"].as_f64().unwrap_or(0.0)
        / one["deliveries_per_server_cpu_s"].as_f64().unwrap_or(1.0);
    println!("   cluster: deliveries per server CPU-s, 2 nodes + Redis / 1 node = {r:.2}");
    Ok(json!({"scenario": "cluster", "one_node": one, "two_nodes": two, "ratio_per_cpu": r}))
}

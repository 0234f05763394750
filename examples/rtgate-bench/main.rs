//! rtgate-bench: a load generator for rtgate (WebSocket and WebTransport)
//! with a bare tokio-tungstenite broadcast server as the floor, run in the
//! same invocation so results are ratios, not absolute numbers that drift.
//!
//!     cargo build --release --examples
//!     ./target/release/examples/rtgate-bench suite          # every target of BENCHMARKS.md
//!     ./target/release/examples/rtgate-bench fanout --subs 1000 --rate 50
//!     ./target/release/examples/rtgate-bench fanout --pubs 5 --arrivals burst --uws
//!     ./target/release/examples/rtgate-bench peers          # floor, uWS and rtgate side by side
//!     ./target/release/examples/rtgate-bench conns --n 19000
//!     ./target/release/examples/rtgate-bench storm --n 10000   # everyone reconnects at once
//!     ./target/release/examples/rtgate-bench cluster        # one node vs two through Redis
//!
//! The server under test runs on core 0 and the generator on core 1
//! (`taskset`). Every run prints a human summary and one JSON line.

mod baseline;
mod chaos;
mod chat;
mod encoding;
mod hooks;
mod load;
mod lossy;
#[path = "../../tests/support/netlab.rs"]
mod netlab;
mod peers;
mod proc;
mod push;
#[path = "../../tests/support/redis_server.rs"]
mod redis_server;
mod storm;
mod wtsub;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use load::{Arrivals, FanoutOpts, Target, Transport};

#[derive(Parser)]
#[command(
    name = "rtgate-bench",
    about = "Load generator and baseline for rtgate"
)]
struct Cli {
    /// The rtgate binary under test.
    #[arg(long, default_value = "target/release/rtgate", global = true)]
    server: PathBuf,
    /// Do not pin server and generator to separate cores.
    #[arg(long, global = true)]
    no_pin: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Logins of a user in many rooms, with and without unread counts.
    Unread {
        /// Rooms the user is in.
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        /// Messages in each room.
        #[arg(long, default_value_t = 200)]
        history: usize,
        /// Logins of each kind.
        #[arg(long, default_value_t = 500)]
        logins: usize,
    },
    /// Offline users with a Web Push registration, one message each: how
    /// late the push is after the ack and its server CPU, against the same
    /// sends to offline users without one.
    Push {
        /// Offline users (each gets one message).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// The server's --push-delay-ms.
        #[arg(long, default_value_t = 2000)]
        delay_ms: u64,
    },
    /// One room whose members report a read position for every message,
    /// against the same room without receipts.
    Receipts {
        /// Members of the room.
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages sent to it.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 20)]
        rate: u64,
    },
    /// One room's deliveries in JSON and in MessagePack: bytes and server
    /// CPU per delivery.
    Encoding {
        /// Members of the room.
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages sent to it.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Runs of each encoding, alternated.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// A reconnect storm: N clients drop at once, messages go to their
    /// rooms, and all come back together with `since`.
    Storm {
        /// Clients.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Rooms the clients are spread over.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Messages each room gets while its clients are away.
        #[arg(long, default_value_t = 20)]
        missed: usize,
        /// Run against the baseline (which replays nothing).
        #[arg(long)]
        baseline: bool,
    },
    /// N subscribers in K rooms, P publishers.
    Fanout {
        #[command(flatten)]
        opts: FanoutArgs,
        /// Run against the baseline instead of rtgate.
        #[arg(long)]
        baseline: bool,
        /// Run against uWebSockets.js (benches/uws) instead of rtgate.
        #[arg(long)]
        uws: bool,
    },
    /// rtgate next to the floor and uWebSockets.js: fan-out with
    /// publishers in step and evenly spread, saturated, idle connections,
    /// connects.
    Peers {
        /// Idle connections for the memory row.
        #[arg(long, default_value_t = 19_000)]
        conns: usize,
        /// Rounds of the fan-out loads, the servers alternated in each;
        /// the table holds each figure's median (single runs spread by
        /// +-20 %).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// N user pairs messaging each other (durable direct messages).
    Direct {
        /// Pairs.
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages in flight per sender.
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Sustained durable direct messages with short retention windows: the
    /// SQLite store's size and rows sampled every 30 s stay flat once the
    /// first window has passed.
    Retention {
        /// Pairs (each receiver's inbox is a channel).
        #[arg(long, default_value_t = 200)]
        pairs: usize,
        /// Messages in flight per sender.
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// --retention-count for the server.
        #[arg(long, default_value_t = 200)]
        count: u64,
        /// --retention-sec (and --dedupe-window-sec) for the server.
        #[arg(long, default_value_t = 60)]
        age: u64,
    },
    /// N idle logged-in connections: RSS per connection, connects per
    /// second, CPU per idle connection per second with heartbeats running.
    Conns {
        /// Connections.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// ws or wt.
        #[arg(long, default_value = "ws")]
        transport: String,
        /// Seconds to hold them idle while measuring CPU.
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Run against the baseline (WebSocket only).
        #[arg(long)]
        baseline: bool,
        /// Run against uWebSockets.js (WebSocket only).
        #[arg(long)]
        uws: bool,
    },
    /// The publish hook's cost: durable room fan-out and direct messages,
    /// without and with the example backend's publish hook.
    Hooks {
        #[command(flatten)]
        opts: FanoutArgs,
        /// Pairs for the direct-message run.
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages in flight per direct sender.
        #[arg(long, default_value_t = 8)]
        pair_window: usize,
        /// Call the hook over HTTP/2 (h2c) instead of HTTP/1.1.
        #[arg(long)]
        http2: bool,
        /// Messages one hook call may carry (`--publish-hook-batch`).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Room fan-out on one node compared with two nodes through Redis.
    Cluster {
        #[command(flatten)]
        opts: FanoutArgs,
    },
    /// Every target of issue 6, with the baseline, in one run.
    Suite {
        /// Connections for the idle WebSocket measurement.
        #[arg(long, default_value_t = 19_000)]
        ws_conns: usize,
        /// Sessions for the idle WebTransport measurement.
        #[arg(long, default_value_t = 5_000)]
        wt_conns: usize,
    },
    /// Faults under load: two nodes on Redis, clients on both transports,
    /// Redis killed and restarted, a node killed and restarted, a node
    /// drained; checks that every acked message reached every recipient.
    Chaos {
        /// Seconds of traffic (the faults fall at each quarter).
        #[arg(long, default_value_t = 120)]
        secs: u64,
        /// Clients.
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Every Nth client uses WebTransport (0: none).
        #[arg(long, default_value_t = 5)]
        wt_every: usize,
        /// Messages per second per client.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// Delivery latency of a phone (8 rooms and its inbox) behind the
    /// network lab, over WebSocket and WebTransport (one stream, a stream
    /// per channel, with datagram copies always or auto), at each loss and
    /// one-way delay (root), and the bytes on the wire per message.
    Lossy {
        /// Loss percentages, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
        loss: Vec<f64>,
        /// One-way delays in ms, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "20,60")]
        delay: Vec<f64>,
        /// Seconds of traffic per transport and network.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Messages per second (spread over the rooms and the inbox).
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Transports: ws, wt-single, wt-channels, wt-datagram, wt-auto.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ws,wt-channels,wt-datagram,wt-auto"
        )]
        transports: Vec<String>,
        /// Bandwidth cap per direction, kbit/s (0: none).
        #[arg(long, default_value_t = 0.0)]
        rate_kbit: f64,
        /// Bursty loss instead of random (Gilbert-Elliott, percent per
        /// packet): "P_GB,P_BG,LOSS_BAD"; --loss is then the good state's.
        #[arg(long)]
        burst: Option<String>,
        /// Message bodies are padded to a size taken evenly up to this.
        #[arg(long, default_value_t = 1000)]
        max_size: usize,
        /// The server's QUIC congestion controller (bbr, the server's
        /// default, or cubic).
        #[arg(long, default_value = "bbr")]
        congestion: String,
    },
    /// The phone of `lossy` (run by it inside the lab).
    #[command(hide = true)]
    Phone {
        #[arg(long)]
        ws: String,
        #[arg(long)]
        wt: String,
        #[arg(long)]
        hash: String,
        #[arg(long)]
        transport: String,
        #[arg(long)]
        token: String,
        #[arg(long, value_delimiter = ',')]
        rooms: Vec<String>,
        #[arg(long)]
        secs: u64,
    },
    /// Serve the baseline (used by the other commands).
    BaselineServer {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
    },
}

#[derive(clap::Args, Clone)]
struct FanoutArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    subs: usize,
    /// Rooms (subscribers spread over them).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers.
    #[arg(long, default_value_t = 1)]
    pubs: usize,
    /// Messages per second over all publishers (0: as fast as the window allows).
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Messages in flight per publisher (durable) or per burst (volatile).
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Durable (stored and acked) messages instead of volatile ones.
    #[arg(long)]
    durable: bool,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// ws or wt (subscribers' transport).
    #[arg(long, default_value = "ws")]
    transport: String,
    /// spread (publisher p of P ticks p/P of a period after the first) or
    /// burst (every publisher ticks at the same instants).
    #[arg(long, default_value = "spread")]
    arrivals: String,
}

impl FanoutArgs {
    fn opts(&self) -> FanoutOpts {
        FanoutOpts {
            subs: self.subs,
            rooms: self.rooms,
            pubs: self.pubs,
            rate: self.rate,
            window: self.window,
            durable: self.durable,
            secs: self.secs,
            transport: Transport::parse(&self.transport),
            arrivals: Arrivals::parse(&self.arrivals),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::BaselineServer { addr } = &cli.cmd {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(baseline::serve(addr));
    }
    if !cli.no_pin && !proc::pin(std::process::id(), 1) {
        eprintln!("note: could not pin the generator to core 1 (taskset missing?)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let pin = !cli.no_pin;
    let server = cli.server.clone();
    let out: Value = match cli.cmd {
        Cmd::Unread {
            rooms,
            history,
            logins,
        } => {
            let target = Target::pick(false, false, server);
            chat::unread(&target, rooms, history, logins, pin).await?
        }
        Cmd::Push {
            users,
            rate,
            delay_ms,
        } => {
            let target = Target::pick(false, false, server);
            push::push(&target, users, rate, delay_ms, pin).await?
        }
        Cmd::Encoding {
            members,
            messages,
            rate,
            rounds,
        } => {
            let target = Target::pick(false, false, server);
            encoding::encoding(&target, members, messages, rate, rounds, pin).await?
        }
        Cmd::Receipts {
            members,
            messages,
            rate,
        } => {
            let target = Target::pick(false, false, server);
            chat::receipts(&target, members, messages, rate, pin).await?
        }
        Cmd::Storm {
            n,
            rooms,
            missed,
            baseline,
        } => {
            let target = Target::pick(baseline, false, server);
            storm::storm(&target, n, rooms, missed, pin).await?
        }
        Cmd::Fanout {
            opts,
            baseline,
            uws,
        } => {
            let target = Target::pick(baseline, uws, server);
            load::fanout(&target, &opts.opts(), pin).await?
        }
        Cmd::Peers { conns, rounds } => peers::peers(&server, conns, rounds, pin).await?,
        Cmd::Direct {
            pairs,
            window,
            secs,
        } => load::direct(&Target::Rtgate(server), pairs, window, secs, pin, &[], None).await?,
        Cmd::Chaos {
            secs,
            clients,
            wt_every,
            rate,
        } => chaos::chaos(&server, secs, clients, wt_every, rate).await?,
        Cmd::Retention {
            pairs,
            window,
            secs,
            count,
            age,
        } => {
            let (count, age) = (count.to_string(), age.to_string());
            let extra = [
                "--retention-count",
                count.as_str(),
                "--retention-sec",
                age.as_str(),
                "--dedupe-window-sec",
                age.as_str(),
            ];
            let every = Some(std::time::Duration::from_secs(30));
            load::direct(
                &Target::Rtgate(server),
                pairs,
                window,
                secs,
                pin,
                &extra,
                every,
            )
            .await?
        }
        Cmd::Conns {
            n,
            transport,
            hold,
            baseline,
            uws,
        } => {
            let target = Target::pick(baseline, uws, server);
            load::conns(&target, n, Transport::parse(&transport), hold, pin).await?
        }
        Cmd::Cluster { opts } => load::cluster(&server, &opts.opts(), pin).await?,
        Cmd::Hooks {
            opts,
            pairs,
            pair_window,
            http2,
            batch,
        } => hooks::hooks(&server, &opts.opts(), pairs, pair_window, pin, http2, batch).await?,
        Cmd::Suite { ws_conns, wt_conns } => suite(&server, ws_conns, wt_conns, pin).await?,
        Cmd::Lossy {
            loss,
            delay,
            secs,
            rate,
            transports,
            rate_kbit,
            burst,
            max_size,
            congestion,
        } => {
            let burst = match burst {
                None => None,
                Some(b) => {
                    let v: Vec<f64> = b.split(',').map(str::parse).collect::<Result<_, _>>()?;
                    anyhow::ensure!(v.len() == 3, "--burst P_GB,P_BG,LOSS_BAD");
                    Some((v[0], v[1], v[2]))
                }
            };
            let net = lossy::Net {
                rate_kbit,
                burst,
                max_size,
                congestion,
            };
            lossy::lossy(&server, &loss, &delay, secs, rate, &transports, net).await?
        }
        Cmd::Phone {
            ws,
            wt,
            hash,
            transport,
            token,
            rooms,
            secs,
        } => {
            lossy::phone(&ws, &wt, &hash, &transport, &token, &rooms, secs).await?;
            return Ok(());
        }
        Cmd::BaselineServer { .. } => unreachable!("handled above"),
    };
    println!("{out}");
    Ok(())
}

fn ratio(a: &Value, b: &Value, key: &str) -> f64 {
    a[key].as_f64().unwrap_or(0.0) / b[key].as_f64().unwrap_or(f64::NAN)
}

/// The issue 6 and 16 targets, each next to the floor (or WebSocket)
/// measured in the same run.
async fn suite(
    server: &std::path::Path,
    ws_conns: usize,
    wt_conns: usize,
    pin: bool,
) -> anyhow::Result<Value> {
    let rt = Target::Rtgate(server.to_path_buf());
    let base = Target::Baseline;
    let heavy = FanoutOpts {
        subs: 1000,
        rooms: 1,
        pubs: 1,
        rate: 150,
        window: 64,
        durable: false,
        secs: 5,
        transport: Transport::Ws,
        arrivals: Arrivals::Spread,
    };
    let b_fan = load::fanout(&base, &heavy, pin).await?;
    let r_fan = load::fanout(&rt, &heavy, pin).await?;
    let r_dur = load::fanout(
        &rt,
        &FanoutOpts {
            durable: true,
            ..heavy.clone()
        },
        pin,
    )
    .await?;
    let lat = FanoutOpts {
        rate: 50,
        ..heavy.clone()
    };
    let b_lat = load::fanout(&base, &lat, pin).await?;
    let r_lat = load::fanout(&rt, &lat, pin).await?;
    // Saturated: the publisher keeps a window of messages in flight.
    let sat = FanoutOpts {
        rate: 0,
        ..heavy.clone()
    };
    let b_sat = load::fanout(&base, &sat, pin).await?;
    let r_sat = load::fanout(&rt, &sat, pin).await?;
    // WebTransport subscribers against WebSocket ones, volatile (datagrams)
    // and durable (streams), at the latency row's rate.
    let wt_vol = load::fanout(
        &rt,
        &FanoutOpts {
            transport: Transport::Wt,
            ..lat.clone()
        },
        pin,
    )
    .await?;
    let wt_dur = load::fanout(
        &rt,
        &FanoutOpts {
            transport: Transport::Wt,
            durable: true,
            ..lat.clone()
        },
        pin,
    )
    .await?;
    // Connect rate over 10,000 logins, per server CPU-second: a short run's
    // wall-clock rate is the generator's and the warm-up's, not the server's.
    let b_conns = load::conns(&base, 10_000, Transport::Ws, 2, pin).await?;
    let r_conns_rate = load::conns(&rt, 10_000, Transport::Ws, 2, pin).await?;
    let r_ws = load::conns(&rt, ws_conns, Transport::Ws, 30, pin).await?;
    let r_wt = load::conns(&rt, wt_conns, Transport::Wt, 30, pin).await?;
    let b_storm = storm::storm(&base, 10_000, 100, 20, pin).await?;
    let r_storm = storm::storm(&rt, 10_000, 100, 20, pin).await?;
    let per_cpu = "deliveries_per_server_cpu_s";
    let rows = json!([
        {"target": "volatile fan-out, 1 room x 1000 subs, 150 msg/s: deliveries per server CPU-s", "goal": ">= 0.8x floor",
         "rtgate": r_fan[per_cpu], "floor": b_fan[per_cpu], "ratio": ratio(&r_fan, &b_fan, per_cpu)},
        {"target": "durable fan-out, same load: deliveries per server CPU-s", "goal": ">= 0.5x floor",
         "rtgate": r_dur[per_cpu], "floor": b_fan[per_cpu], "ratio": ratio(&r_dur, &b_fan, per_cpu)},
        {"target": "fan-out at 50,000 deliveries/s: deliveries per server CPU-s", "goal": ">= 1.0x floor",
         "rtgate": r_lat[per_cpu], "floor": b_lat[per_cpu], "ratio": ratio(&r_lat, &b_lat, per_cpu)},
        {"target": "p99 one-way latency at 50,000 deliveries/s (ms)", "goal": "<= 1.1x floor",
         "rtgate": r_lat["p99_ms"], "floor": b_lat["p99_ms"], "ratio": ratio(&r_lat, &b_lat, "p99_ms")},
        {"target": "saturated fan-out (window in flight): deliveries per server CPU-s", "goal": ">= 0.8x floor",
         "rtgate": r_sat[per_cpu], "floor": b_sat[per_cpu], "ratio": ratio(&r_sat, &b_sat, per_cpu)},
        {"target": "WebTransport subscribers, volatile (datagrams): per server CPU-s vs WebSocket", "goal": ">= 0.5x WebSocket",
         "rtgate": wt_vol["wt"][per_cpu], "floor": wt_vol["ws"][per_cpu], "ratio": wt_vol["wt_over_ws"]},
        {"target": "WebTransport subscribers, durable (streams): per server CPU-s vs WebSocket", "goal": ">= 0.5x WebSocket",
         "rtgate": wt_dur["wt"][per_cpu], "floor": wt_dur["ws"][per_cpu], "ratio": wt_dur["wt_over_ws"]},
        {"target": format!("idle WebSocket: RSS per connection at {ws_conns} (bytes)"), "goal": "<= 4096",
         "rtgate": r_ws["rss_per_conn"], "floor": null, "ratio": null},
        {"target": format!("idle WebTransport: RSS per session at {wt_conns} (bytes)"), "goal": "<= 16384",
         "rtgate": r_wt["rss_per_conn"], "floor": null, "ratio": null},
        {"target": "connects (login included) per server CPU-s, 10,000 logins", "goal": ">= 0.8x floor",
         "rtgate": r_conns_rate["connects_per_server_cpu_s"], "floor": b_conns["connects_per_server_cpu_s"],
         "ratio": ratio(&r_conns_rate, &b_conns, "connects_per_server_cpu_s")},
        {"target": format!("keep-alive CPU per idle WebSocket per second at {ws_conns} (us)"), "goal": "<= 1",
         "rtgate": r_ws["cpu_us_per_conn_s"], "floor": null, "ratio": null},
        {"target": "reconnect storm, 10,000 clients, 20 missed each: s until all back and replayed", "goal": "reported",
         "rtgate": r_storm["all_replayed_s"], "floor": b_storm["all_back_s"], "ratio": ratio(&r_storm, &b_storm, "all_replayed_s")},
        {"target": "reconnect storm: server CPU-s", "goal": "reported",
         "rtgate": r_storm["server_cpu_s"], "floor": b_storm["server_cpu_s"], "ratio": ratio(&r_storm, &b_storm, "server_cpu_s")},
    ]);
    println!("\n== suite");
    for r in rows.as_array().unwrap() {
        println!(
            "{:<70} {:>14} floor {:>14} ratio {:>6} goal {}",
            r["target"].as_str().unwrap_or_default(),
            fmt(&r["rtgate"]),
            fmt(&r["floor"]),
            fmt(&r["ratio"]),
            r["goal"].as_str().unwrap_or_default()
        );
    }
    Ok(
        json!({"suite": rows, "runs": {"floor_fanout": b_fan, "fanout": r_fan, "durable": r_dur,
              "floor_latency": b_lat, "latency": r_lat, "floor_saturated": b_sat, "saturated": r_sat,
              "wt_volatile": wt_vol, "wt_durable": wt_dur, "floor_conns": b_conns, "conns_rate": r_conns_rate,
              "ws_conns": r_ws, "wt_conns": r_wt, "floor_storm": b_storm, "storm": r_storm}}),
    )
}

fn fmt(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f >= 100.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.2}"),
        None => "-".into(),
    }
}

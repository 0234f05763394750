//! rtgate next to the floor and the best peer that runs here
//! (uWebSockets.js), on traffic shaped like users' and not like ours: a
//! room whose publishers tick in step (bursts) and one whose messages
//! arrive evenly, a saturated room, idle connections and connects, and
//! rtgate's WebTransport fan-out beside its WebSocket one. Each
//! figure is measured in the same invocation, one server at a time, on the
//! same pinned core; the fan-out loads run in rounds (the servers
//! alternated in each) and the table holds each figure's median.

use serde_json::{Value, json};

use crate::fmt;
use crate::load::{self, Arrivals, FanoutOpts, Target, Transport};

/// One row: a figure for each server and rtgate's ratios to the others.
fn row(what: &str, key: &str, goal: &str, runs: &[Value; 3]) -> Value {
    let [floor, uws, rt] = [0, 1, 2].map(|i| runs[i][key].as_f64());
    let over = |b: Option<f64>| match (rt, b) {
        (Some(a), Some(b)) if b != 0.0 => json!(a / b),
        _ => Value::Null,
    };
    json!({"target": what, "key": key, "goal": goal, "floor": floor, "uws": uws, "rtgate": rt,
           "over_floor": over(floor), "over_uws": over(uws)})
}

/// Prints the rows as a table.
pub(crate) fn print(rows: &[Value]) {
    println!(
        "\n{:<62} {:>10} {:>10} {:>10} {:>8} {:>8}  goal",
        "", "floor", "uWS", "rtgate", "/floor", "/uWS"
    );
    for r in rows {
        println!(
            "{:<62} {:>10} {:>10} {:>10} {:>8} {:>8}  {}",
            r["target"].as_str().unwrap_or_default(),
            fmt(&r["floor"]),
            fmt(&r["uws"]),
            fmt(&r["rtgate"]),
            fmt(&r["over_floor"]),
            fmt(&r["over_uws"]),
            r["goal"].as_str().unwrap_or_default(),
        );
    }
}

/// rtgate's WebTransport datagram fan-out against its WebSocket one of the
/// same invocation (`ws`), on the same load: the floor and uWS have no
/// WebTransport, so the row holds rtgate's ratio alone.
async fn wt_row(
    what: &str,
    rt: &Target,
    o: &FanoutOpts,
    ws: &Value,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<(Value, Value)> {
    let key = "deliveries_per_server_cpu_s";
    let mut runs = Vec::new();
    for _ in 0..rounds.max(1) {
        let o = FanoutOpts {
            transport: Transport::Wt,
            ..o.clone()
        };
        runs.push(load::fanout_with(rt, &o, &[], pin).await?);
    }
    let wt = median(runs);
    let ratio = match (wt[key].as_f64(), ws[key].as_f64()) {
        (Some(a), Some(b)) if b != 0.0 => json!(a / b),
        _ => Value::Null,
    };
    let row = json!({"target": what, "key": "wt_over_ws", "goal": ">= 0.5x WebSocket's",
                     "floor": Value::Null, "uws": Value::Null, "rtgate": ratio,
                     "over_floor": Value::Null, "over_uws": Value::Null});
    Ok((row, wt))
}

/// One figure per run: each numeric field the median of the runs (the
/// upper one of an even count), the runs' figures of the fields the table
/// reads kept beside it (`rounds`).
fn median(runs: Vec<Value>) -> Value {
    let mut out = runs.first().cloned().unwrap_or(Value::Null);
    let Some(fields) = out.as_object_mut() else {
        return out;
    };
    for (k, v) in fields.iter_mut() {
        let mut xs: Vec<f64> = runs.iter().filter_map(|r| r[k].as_f64()).collect();
        if v.is_number() && xs.len() == runs.len() {
            xs.sort_by(f64::total_cmp);
            *v = json!(xs[xs.len() / 2]);
        }
    }
    let each = |k: &str| runs.iter().map(|r| r[k].clone()).collect::<Vec<_>>();
    fields.insert(
        "rounds".into(),
        json!({"deliveries_per_server_cpu_s": each("deliveries_per_server_cpu_s"),
               "p99_ms": each("p99_ms"), "tcp_segments_per_s": each("tcp_segments_per_s")}),
    );
    out
}

/// The three servers on one fan-out load, `rounds` times, alternated.
async fn fanout3(
    rt: &Target,
    o: &FanoutOpts,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<[Value; 3]> {
    let mut runs: [Vec<Value>; 3] = Default::default();
    for _ in 0..rounds.max(1) {
        runs[0].push(load::fanout(&Target::Baseline, o, pin).await?);
        runs[1].push(load::fanout(&Target::Uws, o, pin).await?);
        runs[2].push(load::fanout(rt, o, pin).await?);
    }
    Ok(runs.map(median))
}

/// Fan-out on both arrival patterns, saturated fan-out, idle connections
/// at `conns` and connects, for the floor, uWS and rtgate.
pub(crate) async fn peers(
    server: &std::path::Path,
    conns: usize,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<Value> {
    let rt = Target::Rtgate(server.to_path_buf());
    let per_cpu = "deliveries_per_server_cpu_s";
    // 1 room x 1,000 subscribers, 50 messages a second: 50,000 deliveries/s.
    let base = FanoutOpts {
        subs: 1000,
        rooms: 1,
        pubs: 5,
        rate: 50,
        window: 64,
        durable: false,
        secs: 8,
        transport: Transport::Ws,
        arrivals: Arrivals::Burst,
    };
    let burst = fanout3(&rt, &base, rounds, pin).await?;
    let spread_o = FanoutOpts {
        pubs: 1,
        arrivals: Arrivals::Spread,
        ..base.clone()
    };
    let spread = fanout3(&rt, &spread_o, rounds, pin).await?;
    let saturated = fanout3(
        &rt,
        &FanoutOpts {
            pubs: 1,
            rate: 0,
            secs: 5,
            arrivals: Arrivals::Spread,
            ..base.clone()
        },
        1,
        pin,
    )
    .await?;
    let (wt_burst_row, wt_burst) = wt_row(
        "bursts of 5: WebTransport / WebSocket deliveries per CPU-s",
        &rt,
        &base,
        &burst[2],
        rounds,
        pin,
    )
    .await?;
    let (wt_spread_row, wt_spread) = wt_row(
        "evenly spread: WebTransport / WebSocket deliveries per CPU-s",
        &rt,
        &spread_o,
        &spread[2],
        rounds,
        pin,
    )
    .await?;
    let idle: [Value; 3] = [
        load::conns(&Target::Baseline, conns, Transport::Ws, 10, pin).await?,
        load::conns(&Target::Uws, conns, Transport::Ws, 10, pin).await?,
        load::conns(&rt, conns, Transport::Ws, 10, pin).await?,
    ];
    let connects: [Value; 3] = [
        load::conns(&Target::Baseline, 10_000, Transport::Ws, 2, pin).await?,
        load::conns(&Target::Uws, 10_000, Transport::Ws, 2, pin).await?,
        load::conns(&rt, 10_000, Transport::Ws, 2, pin).await?,
    ];
    let rows = vec![
        row(
            "bursts of 5 (publishers in step): deliveries per server CPU-s",
            per_cpu,
            ">= 1.0x floor, >= uWS",
            &burst,
        ),
        row(
            "bursts of 5: p99 one-way latency (ms)",
            "p99_ms",
            "<= 1.1x floor",
            &burst,
        ),
        row(
            "bursts of 5: TCP segments sent per second (loopback)",
            "tcp_segments_per_s",
            "reported",
            &burst,
        ),
        row(
            "evenly spread (1 publisher): deliveries per server CPU-s",
            per_cpu,
            ">= 1.0x floor, >= uWS",
            &spread,
        ),
        row(
            "evenly spread: p99 one-way latency (ms)",
            "p99_ms",
            "<= 1.1x floor",
            &spread,
        ),
        row(
            "saturated (64 in flight): deliveries per server CPU-s",
            per_cpu,
            ">= 0.8x floor",
            &saturated,
        ),
        wt_burst_row,
        wt_spread_row,
        row(
            &format!("idle logged-in WebSocket at {conns}: RSS per connection (B)"),
            "rss_per_conn",
            "<= 2560",
            &idle,
        ),
        row(
            "connects (login included) per server CPU-s, 10,000 logins",
            "connects_per_server_cpu_s",
            ">= 0.8x floor",
            &connects,
        ),
    ];
    print(&rows);
    Ok(
        json!({"peers": rows, "runs": {"burst": burst, "spread": spread, "saturated": saturated,
              "wt_burst": wt_burst, "wt_spread": wt_spread, "idle": idle, "connects": connects}}),
    )
}

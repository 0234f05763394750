//! The publish hook's cost (issue 14): durable room fan-out and durable
//! direct messages, each run without hooks and then with every message put
//! to the example backend's publish hook (signed) on loopback, in one
//! invocation. Reported: deliveries per server CPU-second with the hook
//! over without, and what the hook adds to the p50 and p99 of delivery
//! latency.

use std::process::Stdio;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::{self, FanoutOpts, Target};

/// The example backend (`examples/backend`), built next to this program.
struct Backend {
    _child: Child,
    url: String,
}

impl Backend {
    async fn start() -> anyhow::Result<Backend> {
        let exe = std::env::current_exe()?;
        let bin = exe.with_file_name("backend");
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--secret", SECRET])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (cargo build --release --examples)",
                    bin.display()
                )
            })?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = lines.next_line().await?.context("no address line")?;
        let addr = line
            .strip_prefix("backend listening on ")
            .context("an address line")?
            .to_string();
        Ok(Backend {
            _child: child,
            url: format!("http://{addr}/hooks/publish"),
        })
    }
}

const SECRET: &str = "bench-secret";

/// One scenario without and with the hook, and their ratios.
fn compare(name: &str, plain: Value, hooked: Value) -> Value {
    let per_cpu = |v: &Value| v["deliveries_per_server_cpu_s"].as_f64().unwrap_or(0.0);
    let ms = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let ratio = per_cpu(&hooked) / per_cpu(&plain).max(1e-9);
    let added_p50 = ms(&hooked, "p50_ms") - ms(&plain, "p50_ms");
    let added_p99 = ms(&hooked, "p99_ms") - ms(&plain, "p99_ms");
    println!(
        "    {name}: with the publish hook {ratio:.2}x the deliveries per server CPU-second without it (target >= 0.7); \
         latency added p50 {added_p50:+.2} ms, p99 {added_p99:+.2} ms"
    );
    json!({"scenario": name, "without": plain, "with_hook": hooked,
        "per_server_cpu_ratio": ratio, "added_p50_ms": added_p50, "added_p99_ms": added_p99})
}

/// Both scenarios, without and with the hook.
pub(crate) async fn hooks(
    server: &std::path::Path,
    fan: &FanoutOpts,
    pairs: usize,
    window: usize,
    pin: bool,
    http2: bool,
    batch: usize,
) -> anyhow::Result<Value> {
    let backend = Backend::start().await?;
    let batch = batch.to_string();
    let mut hook = vec![
        "--publish-hook",
        backend.url.as_str(),
        "--hook-secret",
        SECRET,
        "--publish-hook-batch",
        &batch,
    ];
    if http2 {
        hook.push("--hook-http2");
    }
    let target = Target::Rtgate(server.to_path_buf());
    let fan = FanoutOpts {
        durable: true,
        ..fan.clone()
    };
    println!("== durable room fan-out, without and with the publish hook");
    let plain = load::fanout_with(&target, &fan, &[], pin).await?;
    let hooked = load::fanout_with(&target, &fan, &hook, pin).await?;
    let fanout = compare("room fan-out", plain, hooked);
    println!("== durable direct messages, without and with the publish hook");
    let plain = load::direct(&target, pairs, window, fan.secs, pin, &[], None).await?;
    let hooked = load::direct(&target, pairs, window, fan.secs, pin, &hook, None).await?;
    let direct = compare("direct messages", plain, hooked);
    Ok(json!({"scenario": "hooks", "fanout": fanout, "direct": direct}))
}

//! The `rtgate` binary: parses configuration, sets up logging, runs a node
//! until SIGINT or SIGTERM, then drains it.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use rtgate::Traces;
use rtgate::config::{Cli, Cmd, Config, LogFormat, Options};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(path) => Options::from_file(path)?,
        None => Options::default(),
    };
    let config = cli.options.over(file).resolve()?;
    // Before the runtime: the trace exporter's HTTP client is a blocking one
    // on a thread of its own.
    let traces = init_logs(&config)?;
    let result = match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?
            .block_on(serve(config)),
        Cmd::GenCert { out } => {
            let dir = out.unwrap_or_else(|| config.store.data.join("certs"));
            let id = rtgate::certs::write_dev(&dir, rtgate::certs::DEV_VALIDITY)
                .context("writing the certificate")?;
            say(format_args!(
                "wrote {}/dev-cert.pem and dev-key.pem\nsha-256 {} ({})\n",
                dir.display(),
                id.hash_hex(),
                id.hash_base64()
            ));
            Ok(())
        }
        Cmd::PrintConfig => {
            say(format_args!("{config:#?}\n"));
            Ok(())
        }
    };
    if let Some(t) = traces {
        t.shutdown();
    }
    result
}

/// Writes to stdout, quietly when its reader is gone (`rtgate print-config
/// | head` ends with `head`, not with a panic message: Rust ignores SIGPIPE,
/// so the write fails and `println!` would panic).
fn say(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(text);
}

async fn serve(config: rtgate::config::Config) -> anyhow::Result<()> {
    let running = rtgate::server::start(config)
        .await
        .context("starting rtgate")?;
    // Test harnesses and scripts read this line to find the bound ports.
    let metrics = running
        .metrics_addr
        .map(|m| format!(" metrics={m}"))
        .unwrap_or_default();
    // Not `println!`: a server started with stdout closed (a service
    // manager, a wrapper that went away) keeps running instead of panicking.
    say(format_args!(
        "rtgate listening http={} wt={}{metrics}\n",
        running.http_addr, running.wt_addr
    ));
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

/// Logs to stderr (filtered by `RUST_LOG`), and spans to the OTLP collector
/// when one is configured. Each has its own filter, so the exported spans
/// cost nothing when there is no collector, and never reach the log.
fn init_logs(config: &Config) -> anyhow::Result<Option<Traces>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let traces = match &config.ops.otlp {
        Some(o) => Some(
            Traces::start(
                &o.endpoint,
                o.sample_ratio,
                config.cluster.node_id.as_deref(),
            )
            .context("setting up trace export")?,
        ),
        None => None,
    };
    let json = config.ops.log_format == LogFormat::Json;
    let subscriber = rtgate::subscriber(json, filter, traces.as_ref());
    // `try_init` also routes the `log` records of dependencies here.
    subscriber.try_init().context("installing the logger")?;
    Ok(traces)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

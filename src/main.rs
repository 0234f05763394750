//! The `rtgate` binary: parses configuration, sets up logging, runs a node
//! until SIGINT or SIGTERM, then drains it.

use anyhow::Context;
use clap::Parser;
use rtgate::config::{Cli, Cmd, LogFormat, Options};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(path) => Options::from_file(path)?,
        None => Options::default(),
    };
    let config = cli.options.over(file).resolve()?;
    init_logs(config.ops.log_format);
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(config).await,
        Cmd::GenCert { out } => {
            let dir = out.unwrap_or_else(|| config.store.data.join("certs"));
            let id = rtgate::certs::write_dev(&dir, rtgate::certs::DEV_VALIDITY)
                .context("writing the certificate")?;
            println!("wrote {}/dev-cert.pem and dev-key.pem", dir.display());
            println!("sha-256 {} ({})", id.hash_hex(), id.hash_base64());
            Ok(())
        }
        Cmd::PrintConfig => {
            println!("{config:#?}");
            Ok(())
        }
    }
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
    println!(
        "rtgate listening http={} wt={}{metrics}",
        running.http_addr, running.wt_addr
    );
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

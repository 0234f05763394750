//! Configuration: command-line flags, their `RTGATE_*` environment twins and
//! an optional TOML file, merged in that order of precedence over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these options.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or the combination is unsafe.
    #[error("{0}")]
    Invalid(String),
}

/// rtgate: a realtime messaging gateway for WebSocket and WebTransport clients.
#[derive(Debug, Parser)]
#[command(name = "rtgate", version, about, long_about = None)]
pub struct Cli {
    /// What to run; the server when absent.
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// A TOML file with any of the options below (keys as the flags, without
    /// the dashes prefix, e.g. `jwt-secret = "..."`). Flags and environment
    /// variables override it.
    #[arg(long, env = "RTGATE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Server options.
    #[command(flatten)]
    pub options: Options,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server (the default).
    Serve,
    /// Write a development certificate (ECDSA P-256 for localhost,
    /// 127.0.0.1 and ::1, valid 13 days) and print its SHA-256.
    GenCert {
        /// Folder for dev-cert.pem and dev-key.pem [default: <data>/certs]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// QUIC congestion controller for WebTransport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Congestion {
    /// CUBIC (the default, as in most TCP stacks).
    #[default]
    Cubic,
    /// BBR (model-based; often better on lossy mobile links).
    Bbr,
}

/// Which message store a single node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// SQLite in the data folder: survives restarts.
    #[default]
    Sqlite,
    /// In memory: lost on restart (tests, throwaway nodes).
    Memory,
}

/// Every server option, as flags (with env twins) and as config-file keys.
/// All optional here; defaults apply after merging.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// TCP listen address for HTTP and WebSocket [default: 127.0.0.1:8080]
    #[arg(long, env = "RTGATE_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// UDP listen address for WebTransport [default: 127.0.0.1:4433]
    #[arg(long, env = "RTGATE_WT", value_name = "ADDR")]
    pub wt: Option<SocketAddr>,
    /// Data folder: embedded store, node id, dev certificates [default: ./data]
    #[arg(long, env = "RTGATE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// This node's id [default: generated once and kept in the data folder]
    #[arg(long, env = "RTGATE_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Redis URL; turns on cluster mode (broker, presence, shared store)
    #[arg(long, env = "RTGATE_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// HS256 secret; enables token auth (without it: dev mode, loopback only)
    #[arg(
        long,
        env = "RTGATE_JWT_SECRET",
        value_name = "S",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Key for the server API (`Authorization: apikey <key>`)
    #[arg(long, env = "RTGATE_API_KEY", value_name = "K", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Heartbeat interval in seconds; 3x silence closes a session [default: 25]
    #[arg(long, env = "RTGATE_HEARTBEAT_SEC", value_name = "N")]
    pub heartbeat_sec: Option<u64>,
    /// Seconds a connection has to log in [default: 10]
    #[arg(long, env = "RTGATE_LOGIN_TIMEOUT_SEC", value_name = "N")]
    pub login_timeout_sec: Option<u64>,
    /// Peers whose X-Forwarded-For is believed (repeatable, or comma-separated)
    #[arg(
        long,
        env = "RTGATE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub trusted_proxy: Vec<IpNet>,
    /// PEM certificate chain for WebTransport (and wss) instead of the dev one
    #[arg(long, env = "RTGATE_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "RTGATE_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS and wss on --http, with the WebTransport certificate
    #[arg(long, env = "RTGATE_TLS_HTTP")]
    #[serde(default)]
    pub tls_http: bool,
    /// Allow dev mode (no --jwt-secret) on a non-loopback address
    #[arg(long, env = "RTGATE_INSECURE")]
    #[serde(default)]
    pub insecure: bool,
    /// Browser origins allowed to connect (repeatable; none set: all)
    #[arg(
        long,
        env = "RTGATE_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origin: Vec<String>,
    /// Frame size limit in bytes [default: 65536]
    #[arg(long, env = "RTGATE_MAX_FRAME", value_name = "BYTES")]
    pub max_frame: Option<usize>,
    /// Frames per second per session, burst 2N; 0 turns the limit off [default: 50]
    #[arg(long, env = "RTGATE_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Frames queued per session before it counts as a slow consumer [default: 1024]
    #[arg(long, env = "RTGATE_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,
    /// Rooms one session may be in [default: 64]
    #[arg(long, env = "RTGATE_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<usize>,
    /// Message store for a single node: sqlite (in the data folder) or memory [default: sqlite]
    #[arg(long, env = "RTGATE_STORE", value_name = "KIND")]
    pub store: Option<StoreKind>,
    /// Seconds a clientMsgId is remembered for dedupe [default: 600]
    #[arg(long, env = "RTGATE_DEDUPE_WINDOW_SEC", value_name = "N")]
    pub dedupe_window_sec: Option<u64>,
    /// Most messages kept per channel (inbox or room) [default: 10000]
    #[arg(long, env = "RTGATE_RETENTION_COUNT", value_name = "N")]
    pub retention_count: Option<u64>,
    /// Seconds a stored message is kept [default: 604800, a week]
    #[arg(long, env = "RTGATE_RETENTION_SEC", value_name = "N")]
    pub retention_sec: Option<u64>,
    /// Seconds to drain sessions on shutdown before exiting [default: 10]
    #[arg(long, env = "RTGATE_DRAIN_SEC", value_name = "N")]
    pub drain_sec: Option<u64>,
    /// QUIC keep-alive interval for WebTransport, seconds [default: 10]
    #[arg(long, env = "RTGATE_WT_KEEPALIVE_SEC", value_name = "N")]
    pub wt_keepalive_sec: Option<u64>,
    /// QUIC idle timeout for WebTransport, seconds [default: 30]
    #[arg(long, env = "RTGATE_WT_IDLE_TIMEOUT_SEC", value_name = "N")]
    pub wt_idle_timeout_sec: Option<u64>,
    /// QUIC congestion controller: cubic or bbr [default: cubic]
    #[arg(long, env = "RTGATE_CONGESTION", value_name = "ALGO")]
    pub congestion: Option<Congestion>,
    /// Most concurrent WebTransport (QUIC) connections [default: 100000]
    #[arg(long, env = "RTGATE_WT_MAX_CONNECTIONS", value_name = "N")]
    pub wt_max_connections: Option<usize>,
    /// Treat --redis as a comma-separated list of Redis Cluster seed nodes (sharded Pub/Sub)
    #[arg(long, env = "RTGATE_REDIS_CLUSTER")]
    #[serde(default)]
    pub redis_cluster: bool,
    /// Cluster mode: seconds a node's presence entries live without refresh [default: 20]
    #[arg(long, env = "RTGATE_PRESENCE_TTL_SEC", value_name = "N")]
    pub presence_ttl_sec: Option<u64>,
    /// Serve /metrics on this address only, not on --http [default: on --http]
    #[arg(long, env = "RTGATE_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log format [default: text]; the filter comes from RUST_LOG
    #[arg(long, env = "RTGATE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

macro_rules! merge_options {
    ($cli:expr, $file:expr; opt: $($o:ident),*; vec: $($v:ident),*; flag: $($f:ident),*) => {
        Options {
            $($o: $cli.$o.or($file.$o),)*
            $($v: if $cli.$v.is_empty() { $file.$v } else { $cli.$v },)*
            $($f: $cli.$f || $file.$f,)*
        }
    };
}

impl Options {
    /// `self` (flags and env) over `file`.
    pub fn over(self, file: Options) -> Options {
        merge_options!(self, file;
            opt: http, wt, data, node_id, redis, jwt_secret, api_key, heartbeat_sec, login_timeout_sec,
                 tls_cert, tls_key, max_frame, rate_limit, outbound_queue, max_rooms, dedupe_window_sec,
                 retention_count, retention_sec, drain_sec, log_format, store, metrics, wt_keepalive_sec, wt_idle_timeout_sec, congestion, wt_max_connections, presence_ttl_sec;
            vec: trusted_proxy, allowed_origin;
            flag: insecure, tls_http, redis_cluster)
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP address for HTTP and WebSocket.
    pub http: SocketAddr,
    /// UDP address for WebTransport.
    pub wt: SocketAddr,
    /// Data folder.
    pub data: PathBuf,
    /// Node id, if given.
    pub node_id: Option<String>,
    /// Redis URL (cluster mode).
    pub redis: Option<String>,
    /// `redis` names Redis Cluster seeds.
    pub redis_cluster: bool,
    /// JWT secret (none: dev mode).
    pub jwt_secret: Option<String>,
    /// API key.
    pub api_key: Option<String>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Login timeout.
    pub login_timeout: Duration,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// TLS certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS key.
    pub tls_key: Option<PathBuf>,
    /// Dev mode allowed off loopback.
    pub insecure: bool,
    /// HTTPS and wss on the HTTP listener.
    pub tls_http: bool,
    /// Allowed browser origins (empty: all).
    pub allowed_origins: Vec<String>,
    /// Frame size limit.
    pub max_frame: usize,
    /// Frames per second per session (0: off).
    pub rate_limit: u32,
    /// Outbound queue length per session.
    pub outbound_queue: usize,
    /// Rooms per session.
    pub max_rooms: usize,
    /// Message store.
    pub store: StoreKind,
    /// Dedupe window.
    pub dedupe_window: Duration,
    /// Retention per channel: count.
    pub retention_count: u64,
    /// Retention per channel: age.
    pub retention_age: Duration,
    /// Shutdown drain deadline.
    pub drain: Duration,
    /// Separate address for /metrics.
    pub metrics: Option<SocketAddr>,
    /// QUIC keep-alive interval.
    pub wt_keepalive: Duration,
    /// QUIC idle timeout.
    pub wt_idle_timeout: Duration,
    /// QUIC congestion controller.
    pub congestion: Congestion,
    /// Most concurrent QUIC connections.
    pub wt_max_connections: usize,
    /// Cluster presence entry lifetime.
    pub presence_ttl: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Options::default().resolve().expect("defaults are valid")
    }
}

impl Options {
    /// Applies defaults and checks the result.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let secs = |v: Option<u64>, d: u64, what: &str| -> Result<Duration, ConfigError> {
            match v.unwrap_or(d) {
                0 => Err(ConfigError::Invalid(format!(
                    "{what} must be at least 1 second"
                ))),
                n => Ok(Duration::from_secs(n)),
            }
        };
        let cfg = Config {
            http: self.http.unwrap_or(([127, 0, 0, 1], 8080).into()),
            wt: self.wt.unwrap_or(([127, 0, 0, 1], 4433).into()),
            data: self.data.unwrap_or_else(|| PathBuf::from("data")),
            node_id: self.node_id,
            redis: self.redis,
            redis_cluster: self.redis_cluster,
            jwt_secret: self.jwt_secret.filter(|s| !s.is_empty()),
            api_key: self.api_key.filter(|s| !s.is_empty()),
            heartbeat: secs(self.heartbeat_sec, 25, "heartbeat-sec")?,
            login_timeout: secs(self.login_timeout_sec, 10, "login-timeout-sec")?,
            trusted_proxies: self.trusted_proxy,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            insecure: self.insecure,
            tls_http: self.tls_http,
            allowed_origins: self.allowed_origin,
            max_frame: self.max_frame.unwrap_or(64 * 1024),
            rate_limit: self.rate_limit.unwrap_or(50),
            outbound_queue: self.outbound_queue.unwrap_or(1024),
            max_rooms: self.max_rooms.unwrap_or(64),
            store: self.store.unwrap_or_default(),
            dedupe_window: secs(self.dedupe_window_sec, 600, "dedupe-window-sec")?,
            retention_count: self.retention_count.unwrap_or(10_000),
            retention_age: secs(self.retention_sec, 7 * 24 * 3600, "retention-sec")?,
            drain: secs(self.drain_sec, 10, "drain-sec")?,
            metrics: self.metrics,
            wt_keepalive: secs(self.wt_keepalive_sec, 10, "wt-keepalive-sec")?,
            wt_idle_timeout: secs(self.wt_idle_timeout_sec, 30, "wt-idle-timeout-sec")?,
            congestion: self.congestion.unwrap_or_default(),
            wt_max_connections: self.wt_max_connections.unwrap_or(100_000),
            presence_ttl: secs(self.presence_ttl_sec, 20, "presence-ttl-sec")?,
            log_format: self.log_format.unwrap_or_default(),
        };
        if cfg.max_frame < 256 {
            return Err(ConfigError::Invalid(
                "max-frame must be at least 256 bytes".into(),
            ));
        }
        if cfg.outbound_queue == 0 || cfg.max_rooms == 0 || cfg.retention_count == 0 {
            return Err(ConfigError::Invalid(
                "outbound-queue, max-rooms and retention-count must be at least 1".into(),
            ));
        }
        if cfg.wt_keepalive >= cfg.wt_idle_timeout {
            return Err(ConfigError::Invalid(
                "wt-keepalive-sec must be below wt-idle-timeout-sec".into(),
            ));
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
        if cfg.jwt_secret.is_none() && !cfg.insecure {
            for (what, addr) in [("--http", cfg.http), ("--wt", cfg.wt)] {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::Invalid(format!(
                        "refusing to listen on {addr} ({what}) in dev mode: without --jwt-secret anyone can \
                         log in as anyone. Set --jwt-secret, bind a loopback address, or pass --insecure."
                    )));
                }
            }
        }
        Ok(cfg)
    }
}

impl Config {
    /// True without a JWT secret: identities are taken on the client's word.
    pub fn dev_mode(&self) -> bool {
        self.jwt_secret.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_protocol() {
        let c = Config::default();
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.wt.port(), 4433);
        assert_eq!(c.max_frame, 65536);
        assert_eq!(c.rate_limit, 50);
        assert_eq!(c.outbound_queue, 1024);
        assert_eq!(c.heartbeat, Duration::from_secs(25));
    }

    #[test]
    fn public_bind_needs_a_secret_or_insecure() {
        let o = Options {
            http: Some("0.0.0.0:8080".parse().unwrap()),
            ..Options::default()
        };
        let e = o.clone().resolve().unwrap_err().to_string();
        assert!(e.contains("--jwt-secret"), "{e}");
        assert!(
            Options {
                insecure: true,
                ..o.clone()
            }
            .resolve()
            .is_ok()
        );
        assert!(
            Options {
                jwt_secret: Some("s".into()),
                ..o
            }
            .resolve()
            .is_ok()
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file: Options = toml::from_str(
            "http = \"127.0.0.1:9000\"\nrate-limit = 7\nallowed-origin = [\"https://a\"]",
        )
        .unwrap();
        let cli = Options {
            rate_limit: Some(9),
            ..Options::default()
        };
        let c = cli.over(file).resolve().unwrap();
        assert_eq!(c.http.port(), 9000);
        assert_eq!(c.rate_limit, 9);
        assert_eq!(c.allowed_origins, vec!["https://a".to_string()]);
        assert!(toml::from_str::<Options>("no-such-key = 1").is_err());
    }
}

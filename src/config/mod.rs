//! Configuration: command-line flags, their `RTGATE_*` environment twins and
//! an optional TOML file, merged in that order of precedence over the named
//! defaults, and resolved into a [`Config`] grouped by concern.

pub mod defaults;
mod options;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use options::{
    AuthOptions, ClusterOptions, LimitsOptions, ListenOptions, OpsOptions, QuicOptions,
    StoreOptions, TlsOptions,
};

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
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Arguments given programmatically do not parse.
    #[error("{0}")]
    Args(String),
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
    /// Print the configuration the server would run with (flags over
    /// environment over the config file over defaults; secrets as hashes).
    PrintConfig,
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

/// An option value as the flag takes it (`cubic`, `json`, `sqlite`).
macro_rules! display_as_flag_value {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let v = self.to_possible_value().expect("no variant is skipped");
                f.write_str(v.get_name())
            }
        }
    )*};
}
display_as_flag_value!(LogFormat, Congestion, StoreKind);

/// Every server option, as flags (with env twins) and as config-file keys,
/// grouped by concern. All optional here; defaults apply when resolving.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct Options {
    /// Listeners.
    #[command(flatten)]
    #[serde(flatten)]
    pub listen: ListenOptions,
    /// TLS.
    #[command(flatten)]
    #[serde(flatten)]
    pub tls: TlsOptions,
    /// Auth.
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: AuthOptions,
    /// Limits.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitsOptions,
    /// Store.
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreOptions,
    /// Cluster.
    #[command(flatten)]
    #[serde(flatten)]
    pub cluster: ClusterOptions,
    /// QUIC.
    #[command(flatten)]
    #[serde(flatten)]
    pub quic: QuicOptions,
    /// Operations.
    #[command(flatten)]
    #[serde(flatten)]
    pub ops: OpsOptions,
}

impl Options {
    /// `self` (flags and env) over `file`.
    pub fn over(self, file: Options) -> Options {
        Options {
            listen: self.listen.over(file.listen),
            tls: self.tls.over(file.tls),
            auth: self.auth.over(file.auth),
            limits: self.limits.over(file.limits),
            store: self.store.over(file.store),
            cluster: self.cluster.over(file.cluster),
            quic: self.quic.over(file.quic),
            ops: self.ops.over(file.ops),
        }
    }

    /// Options from command-line style arguments (`["--http", "127.0.0.1:0"]`),
    /// for programs that start a node in-process. Environment twins apply.
    pub fn from_args<I, S>(args: I) -> Result<Options, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("rtgate"))
            .chain(args.into_iter().map(Into::into));
        Cli::try_parse_from(argv)
            .map(|cli| cli.options)
            .map_err(|e| ConfigError::Args(e.to_string()))
    }

    /// Reads a TOML config file. Its keys are the flags' names; an unknown
    /// key is an error, not ignored.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text).map_err(|reason| ConfigError::Parse {
            path: path.into(),
            reason,
        })
    }

    fn from_toml(text: &str) -> Result<Options, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let cli = Cli::command();
        let known: Vec<&str> = cli
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "config")
            .collect();
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown key `{key}`"));
        }
        table.try_into().map_err(|e: toml::de::Error| e.to_string())
    }
}

/// A secret from the configuration. Its `Debug` shows a short hash, never
/// the value, so configurations can be printed and compared.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = Sha256::digest(self.0.as_bytes());
        write!(
            f,
            "Secret(sha256:{:02x}{:02x}{:02x}{:02x})",
            hash[0], hash[1], hash[2], hash[3]
        )
    }
}

/// The resolved configuration the server runs with, grouped by concern.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the node listens.
    pub listen: ListenConfig,
    /// Certificates.
    pub tls: TlsConfig,
    /// Identities and who may connect.
    pub auth: AuthConfig,
    /// What one session may do.
    pub limits: LimitsConfig,
    /// Where messages are kept.
    pub store: StoreConfig,
    /// Several nodes over Redis.
    pub cluster: ClusterConfig,
    /// WebTransport's QUIC transport.
    pub quic: QuicConfig,
    /// Running the node.
    pub ops: OpsConfig,
}

/// Where the node listens.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// TCP address for HTTP and WebSocket.
    pub http: SocketAddr,
    /// UDP address for WebTransport.
    pub wt: SocketAddr,
    /// Separate address for /metrics.
    pub metrics: Option<SocketAddr>,
}

/// Certificates.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Operator's certificate chain (none: the dev certificate).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// HTTPS and wss on the HTTP listener.
    pub https: bool,
}

/// Identities and who may connect.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// JWT secret (none: dev mode).
    pub jwt_secret: Option<Secret>,
    /// Server API key.
    pub api_key: Option<Secret>,
    /// Dev mode allowed off loopback.
    pub insecure: bool,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Allowed browser origins (empty: all).
    pub allowed_origins: Vec<String>,
}

/// What one session may do, and how long it may take.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Login timeout.
    pub login_timeout: Duration,
    /// Frame size limit.
    pub max_frame: usize,
    /// Frames per second per session (0: off).
    pub rate_limit: u32,
    /// Outbound queue length per session.
    pub outbound_queue: usize,
    /// Rooms per session.
    pub max_rooms: usize,
    /// Sessions per user on this node.
    pub max_sessions_per_user: usize,
    /// Business messages per second per user (0: off).
    pub user_rate_limit: u32,
    /// New direct recipients per user per minute (0: off).
    pub max_recipients_per_min: usize,
    /// Connections in all, both transports.
    pub max_conns: usize,
    /// Connections per client address (0: no cap).
    pub max_conns_per_ip: usize,
}

/// Where messages are kept and for how long.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Data folder.
    pub data: PathBuf,
    /// Message store of a single node.
    pub kind: StoreKind,
    /// Dedupe window.
    pub dedupe_window: Duration,
    /// Retention per channel: count.
    pub retention_count: u64,
    /// Retention per channel: age.
    pub retention_age: Duration,
}

/// Several nodes over Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Node id, if given.
    pub node_id: Option<String>,
    /// Redis URL (cluster mode).
    pub redis: Option<String>,
    /// `redis` names Redis Cluster seeds.
    pub redis_cluster: bool,
    /// Cluster presence entry lifetime.
    pub presence_ttl: Duration,
    /// Replicas a durable append must reach before its ack.
    pub wait_replicas: usize,
    /// How long an ack waits for them.
    pub wait_timeout: Duration,
}

/// WebTransport's QUIC transport.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// QUIC keep-alive interval.
    pub keepalive: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Congestion controller.
    pub congestion: Congestion,
    /// Most concurrent QUIC connections.
    pub max_connections: usize,
}

/// Running the node.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// Shutdown drain deadline.
    pub drain: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Options::default().resolve().expect("defaults are valid")
    }
}

/// Seconds as a duration; 0 is refused.
fn secs(n: u64, what: &str) -> Result<Duration, ConfigError> {
    match n {
        0 => Err(ConfigError::Invalid(format!(
            "{what} must be at least 1 second"
        ))),
        n => Ok(Duration::from_secs(n)),
    }
}

impl Options {
    /// Applies defaults and checks the result.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let Options {
            listen,
            tls,
            auth,
            limits,
            store,
            cluster,
            quic,
            ops,
        } = self;
        let secret = |s: Option<String>| s.filter(|s| !s.is_empty()).map(Secret);
        let cfg = Config {
            listen: ListenConfig {
                http: listen.http(),
                wt: listen.wt(),
                metrics: listen.metrics,
            },
            tls: TlsConfig {
                cert: tls.tls_cert,
                key: tls.tls_key,
                https: tls.tls_http,
            },
            auth: AuthConfig {
                jwt_secret: secret(auth.jwt_secret),
                api_key: secret(auth.api_key),
                insecure: auth.insecure,
                trusted_proxies: auth.trusted_proxy,
                allowed_origins: auth.allowed_origin,
            },
            limits: LimitsConfig {
                heartbeat: secs(limits.heartbeat_sec(), "heartbeat-sec")?,
                login_timeout: secs(limits.login_timeout_sec(), "login-timeout-sec")?,
                max_frame: limits.max_frame(),
                rate_limit: limits.rate_limit(),
                outbound_queue: limits.outbound_queue(),
                max_rooms: limits.max_rooms(),
                max_sessions_per_user: limits.max_sessions_per_user(),
                user_rate_limit: limits.user_rate_limit(),
                max_recipients_per_min: limits.max_recipients_per_min(),
                max_conns: limits.max_conns(),
                max_conns_per_ip: limits.max_conns_per_ip(),
            },
            store: StoreConfig {
                data: store.data(),
                kind: store.store(),
                dedupe_window: secs(store.dedupe_window_sec(), "dedupe-window-sec")?,
                retention_count: store.retention_count(),
                retention_age: secs(store.retention_sec(), "retention-sec")?,
            },
            cluster: ClusterConfig {
                presence_ttl: secs(cluster.presence_ttl_sec(), "presence-ttl-sec")?,
                wait_replicas: cluster.redis_wait_replicas(),
                wait_timeout: Duration::from_millis(cluster.redis_wait_ms()),
                node_id: cluster.node_id,
                redis: cluster.redis,
                redis_cluster: cluster.redis_cluster,
            },
            quic: QuicConfig {
                keepalive: secs(quic.wt_keepalive_sec(), "wt-keepalive-sec")?,
                idle_timeout: secs(quic.wt_idle_timeout_sec(), "wt-idle-timeout-sec")?,
                congestion: quic.congestion(),
                max_connections: quic.wt_max_connections(),
            },
            ops: OpsConfig {
                drain: secs(ops.drain_sec(), "drain-sec")?,
                log_format: ops.log_format(),
            },
        };
        cfg.check()?;
        Ok(cfg)
    }
}

impl Config {
    /// True without a JWT secret: identities are taken on the client's word.
    pub fn dev_mode(&self) -> bool {
        self.auth.jwt_secret.is_none()
    }

    /// Refuses out-of-range values and unsafe combinations.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |s: &str| Err(ConfigError::Invalid(s.into()));
        if self.limits.max_frame < 256 {
            return invalid("max-frame must be at least 256 bytes");
        }
        if self.limits.outbound_queue == 0
            || self.limits.max_rooms == 0
            || self.limits.max_conns == 0
            || self.limits.max_sessions_per_user == 0
            || self.store.retention_count == 0
        {
            return invalid(
                "outbound-queue, max-rooms, max-conns, max-sessions-per-user and retention-count \
                 must be at least 1",
            );
        }
        if self.cluster.wait_timeout > Duration::from_millis(700)
            || self.cluster.wait_timeout.is_zero()
        {
            return invalid(
                "redis-wait-ms must be 1 to 700 (every Redis call has an 800 ms deadline)",
            );
        }
        if self.quic.keepalive >= self.quic.idle_timeout {
            return invalid("wt-keepalive-sec must be below wt-idle-timeout-sec");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("--tls-cert and --tls-key go together");
        }
        if self.dev_mode() && !self.auth.insecure {
            for (what, addr) in [("--http", self.listen.http), ("--wt", self.listen.wt)] {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::Invalid(format!(
                        "refusing to listen on {addr} ({what}) in dev mode: without --jwt-secret anyone can \
                         log in as anyone. Set --jwt-secret, bind a loopback address, or pass --insecure."
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Options {
        Options::from_args(a.iter().copied()).unwrap()
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let c = Config::default();
        assert_eq!(c.listen.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.listen.wt.port(), 4433);
        assert_eq!(c.limits.max_frame, 65536);
        assert_eq!(c.limits.rate_limit, 50);
        assert_eq!(c.limits.outbound_queue, 1024);
        assert_eq!(c.limits.heartbeat, Duration::from_secs(25));
    }

    #[test]
    fn public_bind_needs_a_secret_or_insecure() {
        let e = args(&["--http", "0.0.0.0:8080"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--jwt-secret"), "{e}");
        assert!(
            args(&["--http", "0.0.0.0:8080", "--insecure"])
                .resolve()
                .is_ok()
        );
        assert!(
            args(&["--http", "0.0.0.0:8080", "--jwt-secret", "s"])
                .resolve()
                .is_ok()
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file = Options::from_toml(
            "http = \"127.0.0.1:9000\"\nrate-limit = 7\nallowed-origin = [\"https://a\"]",
        )
        .unwrap();
        let c = args(&["--rate-limit", "9"]).over(file).resolve().unwrap();
        assert_eq!(c.listen.http.port(), 9000);
        assert_eq!(c.limits.rate_limit, 9);
        assert_eq!(c.auth.allowed_origins, vec!["https://a".to_string()]);
        let e = Options::from_toml("no-such-key = 1").unwrap_err();
        assert!(e.contains("no-such-key"), "{e}");
        assert!(Options::from_toml("rate-limit = \"x\"").is_err());
    }

    #[test]
    fn help_shows_the_named_defaults() {
        let help = Cli::command().render_long_help().to_string();
        for shown in [
            format!("[default: {}]", defaults::HTTP),
            format!("[default: {}]", defaults::HEARTBEAT_SEC),
            format!("[default: {}]", defaults::CONGESTION),
            format!("[default: {}]", defaults::DATA),
        ] {
            assert!(
                help.contains(&shown),
                "{shown} missing from --help:\n{help}"
            );
        }
        assert!(help.contains("Limits:") && help.contains("QUIC:"), "{help}");
    }

    #[test]
    fn secrets_never_print() {
        let c = args(&["--jwt-secret", "hunter2", "--api-key", "k3y"])
            .resolve()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y"),
            "{shown}"
        );
        assert_eq!(c.auth.jwt_secret.unwrap().expose(), "hunter2");
    }
}

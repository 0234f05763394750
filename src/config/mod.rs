//! Configuration: command-line flags, their `RTGATE_*` environment twins and
//! an optional TOML file, merged in that order of precedence over the named
//! defaults, and resolved into a [`Config`] grouped by concern.

pub mod defaults;
mod options;
mod resolve;
mod resolved;

use std::fmt;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

pub use resolved::{
    ApnsConfig, AuthConfig, ClusterConfig, Config, HooksConfig, LimitsConfig, ListenConfig,
    OpsConfig, PushConfig, QuicConfig, Secret, StoreConfig, TlsConfig,
};

pub use options::{
    AuthOptions, ClusterOptions, HooksOptions, LimitsOptions, ListenOptions, OpsOptions,
    PushOptions, QuicOptions, StoreOptions, TlsOptions,
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
        /// Folder for dev-cert.pem and dev-key.pem (default: certs/ in the data folder)
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
    /// CUBIC (loss-based, as in most TCP stacks): random loss on a phone
    /// link keeps its window small and a chat's messages wait for room.
    Cubic,
    /// BBR (model-based; does not take random loss for congestion): the
    /// default, measured against CUBIC behind the network lab.
    #[default]
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

/// A backend hook (protocol §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookName {
    /// At login: who the user is.
    Connect,
    /// Before a non-volatile message is stored.
    Publish,
    /// Before a session joins a room.
    Join,
    /// The event webhook (always retried, never let through).
    #[value(skip)]
    #[serde(skip)]
    Event,
}

/// An option value as the flag takes it (`cubic`, `json`, `sqlite`).
macro_rules! display_as_flag_value {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.to_possible_value() {
                    Some(v) => f.write_str(v.get_name()),
                    // A variant the flag does not take (HookName::Event).
                    None => write!(f, "{}", format!("{self:?}").to_lowercase()),
                }
            }
        }
    )*};
}
display_as_flag_value!(LogFormat, Congestion, StoreKind, HookName);

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
    /// Backend hooks.
    #[command(flatten)]
    #[serde(flatten)]
    pub hooks: HooksOptions,
    /// Push.
    #[command(flatten)]
    #[serde(flatten)]
    pub push: PushOptions,
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
            hooks: self.hooks.over(file.hooks),
            push: self.push.over(file.push),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn trace_export_needs_an_http_collector_and_a_ratio_in_range() {
        assert!(Config::default().ops.otlp.is_none());
        let c = args(&["--otlp-endpoint", "http://127.0.0.1:4318"])
            .resolve()
            .unwrap();
        let o = c.ops.otlp.unwrap();
        assert_eq!(
            (o.endpoint.as_str(), o.sample_ratio),
            ("http://127.0.0.1:4318/", 1.0)
        );
        for (bad, why) in [
            (&["--otlp-endpoint", "https://c:4318"][..], "only http://"),
            (&["--otlp-endpoint", "c:4318"][..], "otlp-endpoint"),
            (
                &["--otlp-endpoint", "http://c", "--otlp-sample-ratio", "1.5"][..],
                "between 0 and 1",
            ),
        ] {
            let e = args(bad).resolve().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_publish_hook_batch_is_1_to_1000_messages() {
        assert_eq!(Config::default().hooks.publish_batch, 1);
        for bad in ["0", "1001"] {
            let e = args(&["--publish-hook-batch", bad])
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(e.contains("publish-hook-batch must be 1 to 1000"), "{e}");
        }
        let c = args(&["--publish-hook-batch", "64"]).resolve().unwrap();
        assert_eq!(c.hooks.publish_batch, 64);
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

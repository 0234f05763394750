//! The configuration a node runs with: the options resolved over their
//! defaults, grouped by concern, and checked for unsafe combinations.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::{ConfigError, Congestion, HookName, LogFormat, StoreKind};

/// A secret from the configuration. Its `Debug` shows a short hash, never
/// the value, so configurations can be printed and compared.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

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
    /// Backend hooks.
    pub hooks: HooksConfig,
    /// Push to offline users.
    pub push: PushConfig,
}

/// Push to offline users.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// How long a stored direct message may go unreceived (and the window
    /// a user's pushes are merged over).
    pub delay: Duration,
    /// Pushes carry a preview of the message.
    pub preview: bool,
    /// The VAPID key (none: made in the data folder in dev mode, else no
    /// Web Push).
    pub vapid_key: Option<PathBuf>,
    /// The VAPID `sub`.
    pub vapid_subject: String,
    /// Hosts Web Push endpoints may point at (`.suffix` for a domain).
    pub webpush_hosts: Vec<String>,
    /// APNs, when configured.
    pub apns: Option<ApnsConfig>,
    /// FCM's service-account file, when configured.
    pub fcm_credentials: Option<PathBuf>,
    /// FCM's base URL.
    pub fcm_endpoint: http::Uri,
    /// Extra trusted certificates for the push services.
    pub ca: Option<PathBuf>,
}

/// APNs token authentication.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// The .p8 key.
    pub key: PathBuf,
    /// Its id.
    pub key_id: String,
    /// The team id.
    pub team_id: String,
    /// The bundle id.
    pub topic: String,
    /// Base URL.
    pub endpoint: http::Uri,
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
    /// The HTTP fallback transport (`--sse`).
    pub sse: bool,
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
    /// The development certificate's validity, when a test shortens it.
    pub dev_validity: Option<Duration>,
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
    /// A connect hook may get cookies from pages of any origin.
    pub allow_any_origin_with_cookies: bool,
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
    /// Refuse to run unless Redis persists every write before answering.
    pub require_durable: bool,
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
    /// Where traces go, when exported.
    pub otlp: Option<OtlpConfig>,
}

/// OpenTelemetry trace export.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's URL (`http://`).
    pub endpoint: String,
    /// Share of new traces exported.
    pub sample_ratio: f64,
}

/// Backend hooks (protocol §11).
#[derive(Debug, Clone)]
pub struct HooksConfig {
    /// The connect hook's URL.
    pub connect: Option<http::Uri>,
    /// The publish hook's URL.
    pub publish: Option<http::Uri>,
    /// The join hook's URL.
    pub join: Option<http::Uri>,
    /// The event webhook's URL.
    pub event: Option<http::Uri>,
    /// The signing secret.
    pub secret: Option<Secret>,
    /// One call's deadline, waiting for a slot included.
    pub timeout: Duration,
    /// Calls to one hook at once.
    pub max_in_flight: usize,
    /// Messages one publish hook call may carry (1: one per call).
    pub publish_batch: usize,
    /// HTTP/2 (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// bizTypes the publish hook sees (empty: all).
    pub publish_biz_types: Vec<i64>,
    /// Rooms the publish hook sees (empty: every destination).
    pub publish_rooms: Vec<String>,
    /// Volatile messages go to the publish hook too.
    pub publish_volatile: bool,
    /// Bytes of events the outbox keeps at most.
    pub outbox_max_bytes: u64,
    /// Age of the oldest event the outbox keeps.
    pub outbox_max_age: Duration,
    /// Bytes one event webhook POST carries at most.
    pub event_batch_bytes: usize,
    /// Hooks whose failure lets the request through.
    pub allow_on_failure: Vec<HookName>,
}

impl HooksConfig {
    /// Whether `hook`'s failure lets the request through.
    pub fn allows_on_failure(&self, hook: HookName) -> bool {
        self.allow_on_failure.contains(&hook)
    }
}

impl Config {
    /// True when identities may be taken on the client's word: no JWT
    /// secret, and no connect hook (or one whose failure falls back to
    /// them).
    pub fn dev_mode(&self) -> bool {
        self.auth.jwt_secret.is_none()
            && (self.hooks.connect.is_none() || self.hooks.allows_on_failure(HookName::Connect))
    }

    /// Refuses out-of-range values and unsafe combinations.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
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
        if self.hooks.timeout.is_zero() || self.hooks.max_in_flight == 0 {
            return invalid("hook-timeout-ms and hook-max-in-flight must be at least 1");
        }
        if !(1..=super::defaults::MAX_PUBLISH_HOOK_BATCH).contains(&self.hooks.publish_batch) {
            return invalid(&format!(
                "publish-hook-batch must be 1 to {}",
                super::defaults::MAX_PUBLISH_HOOK_BATCH
            ));
        }
        if self.hooks.connect.is_some()
            && self.auth.allowed_origins.is_empty()
            && !self.auth.allow_any_origin_with_cookies
        {
            return invalid(
                "refusing to start: --connect-hook is sent the browser's cookies, and without \
                 --allowed-origin any web page can open a session with a visitor's cookies \
                 (cross-site WebSocket hijacking). Set --allowed-origin to your pages' origins, \
                 or pass --allow-any-origin-with-cookies if the backend checks `origin` itself.",
            );
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

//! Every option's default, named once. The flags' `--help`, the resolved
//! [`super::Config`] and anything else that needs a default read these.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{Congestion, LogFormat, StoreKind};

/// `--http`: TCP address for HTTP and WebSocket.
pub const HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// `--wt`: UDP address for WebTransport.
pub const WT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4433);
/// `--data`: the data folder.
pub const DATA: &str = "data";
/// `--heartbeat-sec`.
pub const HEARTBEAT_SEC: u64 = 25;
/// `--login-timeout-sec`.
pub const LOGIN_TIMEOUT_SEC: u64 = 10;
/// `--max-frame`, bytes.
pub const MAX_FRAME: usize = 64 * 1024;
/// `--rate-limit`, frames per second per session.
pub const RATE_LIMIT: u32 = 50;
/// `--outbound-queue`, frames.
pub const OUTBOUND_QUEUE: usize = 1024;
/// `--max-rooms`, rooms per session.
pub const MAX_ROOMS: usize = 64;
/// `--max-conns`, both transports together.
pub const MAX_CONNS: usize = 100_000;
/// `--max-conns-per-ip`, both transports together.
pub const MAX_CONNS_PER_IP: usize = 1_000;
/// `--max-sessions-per-user`, on one node.
pub const MAX_SESSIONS_PER_USER: usize = 32;
/// `--user-rate-limit`, business messages per second per user.
pub const USER_RATE_LIMIT: u32 = 100;
/// `--max-recipients-per-min`, new direct recipients per user per minute.
pub const MAX_RECIPIENTS_PER_MIN: usize = 120;
/// `--store`.
pub const STORE: StoreKind = StoreKind::Sqlite;
/// `--dedupe-window-sec`.
pub const DEDUPE_WINDOW_SEC: u64 = 600;
/// `--retention-count`, messages per channel.
pub const RETENTION_COUNT: u64 = 10_000;
/// `--retention-sec`: a week.
pub const RETENTION_SEC: u64 = 7 * 24 * 3600;
/// `--drain-sec`.
pub const DRAIN_SEC: u64 = 10;
/// `--wt-keepalive-sec`.
pub const WT_KEEPALIVE_SEC: u64 = 10;
/// `--wt-idle-timeout-sec`.
pub const WT_IDLE_TIMEOUT_SEC: u64 = 30;
/// `--congestion`.
pub const CONGESTION: Congestion = Congestion::Bbr;
/// `--wt-max-connections`.
pub const WT_MAX_CONNECTIONS: usize = 100_000;
/// `--redis-wait-replicas`: acks need no replica by default.
pub const REDIS_WAIT_REPLICAS: usize = 0;
/// `--redis-wait-ms`.
pub const REDIS_WAIT_MS: u64 = 500;
/// `--presence-ttl-sec`.
pub const PRESENCE_TTL_SEC: u64 = 20;
/// `--log-format`.
pub const LOG_FORMAT: LogFormat = LogFormat::Text;
/// `--otlp-sample-ratio`: every trace.
pub const OTLP_SAMPLE_RATIO: f64 = 1.0;
/// `--hook-timeout-ms`: one backend hook call, queueing for a slot included.
pub const HOOK_TIMEOUT_MS: u64 = 1000;
/// `--hook-max-in-flight`: calls to one hook at once.
pub const HOOK_MAX_IN_FLIGHT: usize = 256;
/// `--publish-hook-batch`: one message per call, the plain contract.
pub const PUBLISH_HOOK_BATCH: usize = 1;
/// Bytes of events the outbox keeps for the event webhook at most.
pub const EVENT_OUTBOX_MAX_BYTES: u64 = 64 << 20;
/// Age of the oldest event the outbox keeps, in seconds (a day).
pub const EVENT_OUTBOX_MAX_AGE_SEC: u64 = 86_400;
/// Bytes one event webhook POST carries at most.
pub const EVENT_HOOK_BATCH_BYTES: usize = 1 << 20;
/// The most messages `--publish-hook-batch` may put in one call.
pub const MAX_PUBLISH_HOOK_BATCH: usize = 1000;
/// `--push-delay-ms`: how long a stored direct message may go unreceived.
pub const PUSH_DELAY_MS: u64 = 2000;
/// `--vapid-subject`.
pub const VAPID_SUBJECT: &str = "mailto:push@rtgate.invalid";
/// `--apns-endpoint`: Apple's production service.
pub const APNS_ENDPOINT: &str = "https://api.push.apple.com";
/// `--fcm-endpoint`.
pub const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";
/// Where browsers' push subscriptions point (`--webpush-host`): Chrome and
/// Edge (FCM), Firefox (Mozilla autopush), Safari (Apple), Windows (WNS).
pub const WEBPUSH_HOSTS: &[&str] = &[
    "fcm.googleapis.com",
    ".push.services.mozilla.com",
    "push.services.mozilla.com",
    ".push.apple.com",
    ".notify.windows.com",
];

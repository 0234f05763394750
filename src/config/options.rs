//! The options as an operator gives them: command-line flags, their
//! `RTGATE_*` environment twins and the keys of a TOML file, declared once
//! per concern. One line of [`options_group!`] makes the flag, its env twin,
//! its config-file key (the flag without dashes) and the default shown by
//! `--help`, which is the named constant in [`super::defaults`] that
//! resolving the options applies too.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::defaults;
use super::{Congestion, HookName, LogFormat, StoreKind};

/// `help` followed by the default, as `--help` shows it.
fn with_default(help: &str, default: &dyn Display) -> String {
    format!("{help} [default: {default}]")
}

/// Declares the options of one concern: `defaulted` options (with the named
/// default that `--help` shows and that an accessor of the same name
/// applies), `plain` ones (absent means off or derived), `flags` and
/// repeatable `lists`. Every one is optional, so a flag or env value can be
/// told apart from a file's value when they are merged.
macro_rules! options_group {
    (
        $(#[doc = $gdoc:literal])* $group:ident, $heading:literal {
            $(defaulted {
                $( $dfield:ident: $dty:ty = $default:expr, $dhelp:literal, [$($darg:tt)*]; )*
            })?
            $(plain {
                $( $pfield:ident: $pty:ty, $phelp:literal, [$($parg:tt)*]; )*
            })?
            $(flags {
                $( $flag:ident, $fhelp:literal, [$($farg:tt)*]; )*
            })?
            $(lists {
                $( $list:ident: $lty:ty, $lhelp:literal, [$($larg:tt)*]; )*
            })?
        }
    ) => {
        $(#[doc = $gdoc])*
        #[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
        #[command(next_help_heading = $heading)]
        #[serde(rename_all = "kebab-case")]
        pub struct $group {
            $($(
                #[doc = $dhelp]
                #[arg(long, help = with_default($dhelp, &$default), $($darg)*)]
                pub $dfield: Option<$dty>,
            )*)?
            $($(
                #[doc = $phelp]
                #[arg(long, $($parg)*)]
                pub $pfield: Option<$pty>,
            )*)?
            $($(
                #[doc = $fhelp]
                #[arg(long, $($farg)*)]
                #[serde(default)]
                pub $flag: bool,
            )*)?
            $($(
                #[doc = $lhelp]
                #[arg(long, value_delimiter = ',', $($larg)*)]
                #[serde(default)]
                pub $list: Vec<$lty>,
            )*)?
        }

        impl $group {
            /// `self` (flags and env) over `file`.
            pub(super) fn over(self, file: Self) -> Self {
                Self {
                    $($( $dfield: self.$dfield.or(file.$dfield), )*)?
                    $($( $pfield: self.$pfield.or(file.$pfield), )*)?
                    $($( $flag: self.$flag || file.$flag, )*)?
                    $($( $list: if self.$list.is_empty() { file.$list } else { self.$list }, )*)?
                }
            }

            $($(
                #[doc = concat!("`--", stringify!($dfield), "` as given, or its default.")]
                pub(super) fn $dfield(&self) -> $dty {
                    self.$dfield.clone().unwrap_or_else(|| <$dty>::from($default))
                }
            )*)?
        }
    };
}

options_group! {
    /// Where the node listens.
    ListenOptions, "Listeners" {
        defaulted {
            http: SocketAddr = defaults::HTTP, "TCP listen address for HTTP and WebSocket",
                [env = "RTGATE_HTTP", value_name = "ADDR"];
            wt: SocketAddr = defaults::WT, "UDP listen address for WebTransport",
                [env = "RTGATE_WT", value_name = "ADDR"];
        }
        plain {
            metrics: SocketAddr, "Serve /metrics on this address only, not on --http [default: on --http]",
                [env = "RTGATE_METRICS", value_name = "ADDR"];
            sse: String, "The HTTP fallback transport (GET /sse, POST /sse/{id}): on or off [default: on]",
                [env = "RTGATE_SSE", value_name = "on|off",
                 value_parser = clap::builder::PossibleValuesParser::new(["on", "off"])];
        }
    }
}

options_group! {
    /// Certificates for WebTransport and HTTPS.
    TlsOptions, "TLS" {
        plain {
            tls_cert: PathBuf, "PEM certificate chain for WebTransport (and wss) instead of the dev one",
                [env = "RTGATE_TLS_CERT", value_name = "PEM"];
            tls_key: PathBuf, "PEM private key for --tls-cert",
                [env = "RTGATE_TLS_KEY", value_name = "PEM"];
            dev_cert_validity_sec: u64, "Development certificate validity in seconds (tests of rotation)",
                [env = "RTGATE_DEV_CERT_VALIDITY_SEC", value_name = "N", hide = true,
                 value_parser = clap::value_parser!(u64).range(20..=13 * 24 * 3600)];
        }
        flags {
            tls_http, "Serve HTTPS and wss on --http, with the WebTransport certificate",
                [env = "RTGATE_TLS_HTTP"];
        }
    }
}

options_group! {
    /// Who may connect and how identities are checked.
    AuthOptions, "Auth" {
        plain {
            jwt_secret: String, "HS256 secret; enables token auth (without it: dev mode, loopback only)",
                [env = "RTGATE_JWT_SECRET", value_name = "S", hide_env_values = true];
            api_key: String, "Key for the server API (`Authorization: apikey <key>`)",
                [env = "RTGATE_API_KEY", value_name = "K", hide_env_values = true];
        }
        flags {
            insecure, "Allow dev mode (no --jwt-secret) on a non-loopback address",
                [env = "RTGATE_INSECURE"];
            allow_any_origin_with_cookies, "Let a connect hook get cookies from pages of any origin (no --allowed-origin): cross-site WebSocket hijacking becomes the backend's to stop",
                [env = "RTGATE_ALLOW_ANY_ORIGIN_WITH_COOKIES"];
        }
        lists {
            trusted_proxy: IpNet, "Peers whose X-Forwarded-For is believed (repeatable, or comma-separated)",
                [env = "RTGATE_TRUSTED_PROXY", value_name = "CIDR"];
            allowed_origin: String, "Browser origins allowed to connect (repeatable; none set: all)",
                [env = "RTGATE_ALLOWED_ORIGIN", value_name = "ORIGIN"];
        }
    }
}

options_group! {
    /// What one session may do, and how long it may take.
    LimitsOptions, "Limits" {
        defaulted {
            heartbeat_sec: u64 = defaults::HEARTBEAT_SEC, "Heartbeat interval in seconds; 3x silence closes a session",
                [env = "RTGATE_HEARTBEAT_SEC", value_name = "N"];
            login_timeout_sec: u64 = defaults::LOGIN_TIMEOUT_SEC, "Seconds a connection has to log in",
                [env = "RTGATE_LOGIN_TIMEOUT_SEC", value_name = "N"];
            max_frame: usize = defaults::MAX_FRAME, "Frame size limit in bytes",
                [env = "RTGATE_MAX_FRAME", value_name = "BYTES"];
            rate_limit: u32 = defaults::RATE_LIMIT, "Frames per second per session, burst 2N; 0 turns the limit off",
                [env = "RTGATE_RATE_LIMIT", value_name = "N"];
            outbound_queue: usize = defaults::OUTBOUND_QUEUE, "Frames queued per session before it counts as a slow consumer",
                [env = "RTGATE_OUTBOUND_QUEUE", value_name = "N"];
            max_rooms: usize = defaults::MAX_ROOMS, "Rooms one session may be in",
                [env = "RTGATE_MAX_ROOMS", value_name = "N"];
            max_sessions_per_user: usize = defaults::MAX_SESSIONS_PER_USER, "Sessions one user may hold at once on this node",
                [env = "RTGATE_MAX_SESSIONS_PER_USER", value_name = "N"];
            user_rate_limit: u32 = defaults::USER_RATE_LIMIT, "Business messages per second per user across its sessions, burst 2N; 0 turns it off",
                [env = "RTGATE_USER_RATE_LIMIT", value_name = "N"];
            max_recipients_per_min: usize = defaults::MAX_RECIPIENTS_PER_MIN, "Distinct new direct recipients per user per minute; 0 turns it off",
                [env = "RTGATE_MAX_RECIPIENTS_PER_MIN", value_name = "N"];
            max_conns: usize = defaults::MAX_CONNS, "Connections the node holds at once, both transports; more are refused at accept",
                [env = "RTGATE_MAX_CONNS", value_name = "N"];
            max_conns_per_ip: usize = defaults::MAX_CONNS_PER_IP, "Connections from one client address, both transports (trusted proxies exempt); 0 turns the cap off",
                [env = "RTGATE_MAX_CONNS_PER_IP", value_name = "N"];
        }
    }
}

options_group! {
    /// Where messages are kept and for how long.
    StoreOptions, "Store" {
        defaulted {
            data: PathBuf = defaults::DATA, "Data folder: embedded store, node id, dev certificates",
                [env = "RTGATE_DATA", value_name = "DIR"];
            store: StoreKind = defaults::STORE, "Message store for a single node: sqlite (in the data folder) or memory",
                [env = "RTGATE_STORE", value_name = "KIND"];
            dedupe_window_sec: u64 = defaults::DEDUPE_WINDOW_SEC, "Seconds a clientMsgId is remembered for dedupe",
                [env = "RTGATE_DEDUPE_WINDOW_SEC", value_name = "N"];
            retention_count: u64 = defaults::RETENTION_COUNT, "Most messages kept per channel (inbox or room)",
                [env = "RTGATE_RETENTION_COUNT", value_name = "N"];
            retention_sec: u64 = defaults::RETENTION_SEC, "Seconds a stored message is kept",
                [env = "RTGATE_RETENTION_SEC", value_name = "N"];
        }
    }
}

options_group! {
    /// Several nodes over Redis.
    ClusterOptions, "Cluster" {
        defaulted {
            redis_wait_replicas: usize = defaults::REDIS_WAIT_REPLICAS, "Cluster mode: replicas a message must reach (Redis WAIT) before it is acked",
                [env = "RTGATE_REDIS_WAIT_REPLICAS", value_name = "N"];
            redis_wait_ms: u64 = defaults::REDIS_WAIT_MS, "Cluster mode: how long an ack waits for those replicas before it is a 503 (at most 700)",
                [env = "RTGATE_REDIS_WAIT_MS", value_name = "MS"];
            presence_ttl_sec: u64 = defaults::PRESENCE_TTL_SEC, "Cluster mode: seconds a node's presence entries live without refresh",
                [env = "RTGATE_PRESENCE_TTL_SEC", value_name = "N"];
        }
        plain {
            node_id: String, "This node's id [default: generated once and kept in the data folder]",
                [env = "RTGATE_NODE_ID", value_name = "ID"];
            redis: String, "Redis URL; turns on cluster mode (broker, presence, shared store)",
                [env = "RTGATE_REDIS", value_name = "URL"];
        }
        flags {
            redis_cluster, "Treat --redis as a comma-separated list of Redis Cluster seed nodes (sharded Pub/Sub)",
                [env = "RTGATE_REDIS_CLUSTER"];
            redis_require_durable, "Refuse to run (and to be ready) unless Redis persists every write before answering (appendonly yes, appendfsync always on every primary), so an ack means on disk",
                [env = "RTGATE_REDIS_REQUIRE_DURABLE"];
        }
    }
}

options_group! {
    /// WebTransport's QUIC transport.
    QuicOptions, "QUIC" {
        defaulted {
            wt_keepalive_sec: u64 = defaults::WT_KEEPALIVE_SEC, "QUIC keep-alive interval for WebTransport, seconds",
                [env = "RTGATE_WT_KEEPALIVE_SEC", value_name = "N"];
            wt_idle_timeout_sec: u64 = defaults::WT_IDLE_TIMEOUT_SEC, "QUIC idle timeout for WebTransport, seconds",
                [env = "RTGATE_WT_IDLE_TIMEOUT_SEC", value_name = "N"];
            congestion: Congestion = defaults::CONGESTION, "QUIC congestion controller: bbr or cubic",
                [env = "RTGATE_CONGESTION", value_name = "ALGO"];
            wt_max_connections: usize = defaults::WT_MAX_CONNECTIONS, "Most concurrent WebTransport (QUIC) connections",
                [env = "RTGATE_WT_MAX_CONNECTIONS", value_name = "N"];
        }
    }
}

options_group! {
    /// Running the node.
    OpsOptions, "Operations" {
        defaulted {
            drain_sec: u64 = defaults::DRAIN_SEC, "Seconds to drain sessions on shutdown before exiting",
                [env = "RTGATE_DRAIN_SEC", value_name = "N"];
            log_format: LogFormat = defaults::LOG_FORMAT, "Log format; the filter comes from RUST_LOG",
                [env = "RTGATE_LOG_FORMAT", value_name = "FORMAT"];
            otlp_sample_ratio: f64 = defaults::OTLP_SAMPLE_RATIO, "Share of new traces exported (0 to 1); a message keeps the decision of the trace it came with",
                [env = "RTGATE_OTLP_SAMPLE_RATIO", value_name = "RATIO"];
        }
        plain {
            otlp_endpoint: String, "OpenTelemetry collector (OTLP over HTTP, JSON) that spans of logins, messages and hook calls go to, e.g. http://127.0.0.1:4318; off when absent",
                [env = "RTGATE_OTLP_ENDPOINT", value_name = "URL"];
        }
    }
}

options_group! {
    /// Backend hooks: the backend decides logins, messages and joins.
    HooksOptions, "Backend hooks" {
        defaulted {
            hook_timeout_ms: u64 = defaults::HOOK_TIMEOUT_MS, "Milliseconds a hook call may take, waiting for a free slot included",
                [env = "RTGATE_HOOK_TIMEOUT_MS", value_name = "MS"];
            hook_max_in_flight: usize = defaults::HOOK_MAX_IN_FLIGHT, "Calls to one hook at once; more wait for a slot within the timeout",
                [env = "RTGATE_HOOK_MAX_IN_FLIGHT", value_name = "N"];
            event_outbox_max_bytes: u64 = defaults::EVENT_OUTBOX_MAX_BYTES, "Bytes of events the outbox keeps for the event webhook; past it the oldest are dropped and counted (rtgate_events_dropped_total)",
                [env = "RTGATE_EVENT_OUTBOX_MAX_BYTES", value_name = "BYTES"];
            event_outbox_max_age_sec: u64 = defaults::EVENT_OUTBOX_MAX_AGE_SEC, "Seconds an event waits in the outbox at most; older ones are dropped and counted",
                [env = "RTGATE_EVENT_OUTBOX_MAX_AGE_SEC", value_name = "N"];
            event_hook_batch_bytes: usize = defaults::EVENT_HOOK_BATCH_BYTES, "Bytes one event webhook POST carries at most (an event larger than this goes alone)",
                [env = "RTGATE_EVENT_HOOK_BATCH_BYTES", value_name = "BYTES"];
            publish_hook_batch: usize = defaults::PUBLISH_HOOK_BATCH, "Messages one publish hook call may carry: above 1, messages that wait for a free slot go together as a JSON array, answered by an array in the same order (the backend must accept arrays)",
                [env = "RTGATE_PUBLISH_HOOK_BATCH", value_name = "N"];
        }
        plain {
            connect_hook: String, "URL the backend decides logins at (replaces JWT and dev identities)",
                [env = "RTGATE_CONNECT_HOOK", value_name = "URL"];
            publish_hook: String, "URL the backend accepts, rejects or rewrites messages at before they are stored",
                [env = "RTGATE_PUBLISH_HOOK", value_name = "URL"];
            join_hook: String, "URL the backend allows or refuses room joins at",
                [env = "RTGATE_JOIN_HOOK", value_name = "URL"];
            event_hook: String, "URL that receives batches of events (message.stored, user.online/offline, room.join/leave) from a durable outbox",
                [env = "RTGATE_EVENT_HOOK", value_name = "URL"];
            hook_secret: String, "Secret for the X-Rtgate-Signature (HMAC-SHA256 of the body) of every hook call",
                [env = "RTGATE_HOOK_SECRET", value_name = "S", hide_env_values = true];
        }
        flags {
            hook_http2, "Call hooks over HTTP/2 without TLS (prior knowledge): many calls share one connection; the backend must speak h2c",
                [env = "RTGATE_HOOK_HTTP2"];
            publish_hook_volatile, "Volatile messages go to the publish hook too (batched like the others), so moderation sees everything; without it they skip the hook",
                [env = "RTGATE_PUBLISH_HOOK_VOLATILE"];
        }
        lists {
            publish_hook_biz_type: i64, "Only messages of these bizTypes go to the publish hook (none set: all)",
                [env = "RTGATE_PUBLISH_HOOK_BIZ_TYPE", value_name = "BIZTYPE"];
            publish_hook_room: String, "Only messages to these rooms go to the publish hook (none set: rooms and users alike)",
                [env = "RTGATE_PUBLISH_HOOK_ROOM", value_name = "ROOM"];
            hook_allow_on_failure: HookName, "Hooks whose failure (timeout, backend down, bad answer) lets the request through instead of refusing it; for connect, the built-in JWT or dev identities then decide",
                [env = "RTGATE_HOOK_ALLOW_ON_FAILURE", value_name = "HOOK"];
        }
    }
}

options_group! {
    /// Push to offline users: Web Push, APNs and FCM.
    PushOptions, "Push" {
        defaulted {
            push_delay_ms: u64 = defaults::PUSH_DELAY_MS, "Milliseconds a stored direct message may go unreceived before its recipient is pushed (pushes to one user are merged over this time)",
                [env = "RTGATE_PUSH_DELAY_MS", value_name = "MS",
                 value_parser = clap::value_parser!(u64).range(100..=3_600_000)];
            vapid_subject: String = defaults::VAPID_SUBJECT, "The VAPID `sub` claim: how a push service reaches the operator (mailto: or https:)",
                [env = "RTGATE_VAPID_SUBJECT", value_name = "URI"];
            apns_endpoint: String = defaults::APNS_ENDPOINT, "APNs base URL (the sandbox, a proxy, a test server)",
                [env = "RTGATE_APNS_ENDPOINT", value_name = "URL"];
            fcm_endpoint: String = defaults::FCM_ENDPOINT, "FCM HTTP v1 base URL",
                [env = "RTGATE_FCM_ENDPOINT", value_name = "URL"];
        }
        plain {
            vapid_key: PathBuf, "PEM (PKCS#8) P-256 private key that signs Web Push requests (VAPID); dev mode makes one in the data folder",
                [env = "RTGATE_VAPID_KEY", value_name = "PEM"];
            apns_key: PathBuf, "APNs token-auth key (.p8) from Apple; enables APNs",
                [env = "RTGATE_APNS_KEY", value_name = "P8"];
            apns_key_id: String, "The .p8 key's id (the JWT's kid)",
                [env = "RTGATE_APNS_KEY_ID", value_name = "ID"];
            apns_team_id: String, "The Apple team id (the JWT's iss)",
                [env = "RTGATE_APNS_TEAM_ID", value_name = "ID"];
            apns_topic: String, "The app's bundle id (apns-topic)",
                [env = "RTGATE_APNS_TOPIC", value_name = "BUNDLE"];
            fcm_credentials: PathBuf, "Google service-account JSON; enables FCM (HTTP v1)",
                [env = "RTGATE_FCM_CREDENTIALS", value_name = "JSON"];
            push_ca: PathBuf, "PEM certificates trusted for push services besides the system's (a proxy's, a test server's)",
                [env = "RTGATE_PUSH_CA", value_name = "PEM"];
        }
        flags {
            push_preview, "Pushes carry the first 80 characters of the message (its msgBody string or msgBody.text); without it, no content",
                [env = "RTGATE_PUSH_PREVIEW"];
        }
        lists {
            webpush_host: String, "Hosts (or .suffixes) Web Push endpoints may point at [default: the browsers' push services]",
                [env = "RTGATE_WEBPUSH_HOST", value_name = "HOST"];
        }
    }
}

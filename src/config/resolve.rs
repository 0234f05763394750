//! Options to the configuration a node runs with: defaults applied, each
//! value checked (durations, hook URLs, the trace export), grouped into
//! [`Config`].

use std::time::Duration;

use super::resolved::{
    AuthConfig, ClusterConfig, Config, HooksConfig, LimitsConfig, ListenConfig, OpsConfig,
    OtlpConfig, QuicConfig, Secret, StoreConfig, TlsConfig,
};
use super::{ConfigError, Options};

/// A hook URL: plain `http://` with a host (a backend on the node's
/// network; put TLS in a sidecar if it must cross one).
fn hook_url(url: Option<String>, what: &str) -> Result<Option<http::Uri>, ConfigError> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| ConfigError::Invalid(format!("{what} {url:?}: {why}"));
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs are supported"));
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    Ok(Some(uri))
}

/// The trace export, when `--otlp-endpoint` is set: an http:// URL (the
/// collector is an agent on the host or a sidecar) and a ratio in 0..=1.
fn otlp(ops: &super::options::OpsOptions) -> Result<Option<OtlpConfig>, ConfigError> {
    let Some(endpoint) = hook_url(ops.otlp_endpoint.clone(), "otlp-endpoint")? else {
        return Ok(None);
    };
    let sample_ratio = ops.otlp_sample_ratio();
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(ConfigError::Invalid(format!(
            "otlp-sample-ratio {sample_ratio}: must be between 0 and 1"
        )));
    }
    Ok(Some(OtlpConfig {
        endpoint: endpoint.to_string(),
        sample_ratio,
    }))
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
            hooks,
            push,
        } = self;
        let secret = |s: Option<String>| s.filter(|s| !s.is_empty()).map(Secret);
        let outbox_max_bytes = hooks.event_outbox_max_bytes();
        let outbox_max_age = secs(hooks.event_outbox_max_age_sec(), "event-outbox-max-age-sec")?;
        let event_batch_bytes = hooks.event_hook_batch_bytes();
        let cfg = Config {
            listen: ListenConfig {
                http: listen.http(),
                wt: listen.wt(),
                metrics: listen.metrics,
                sse: listen.sse.as_deref() != Some("off"),
            },
            tls: TlsConfig {
                cert: tls.tls_cert,
                key: tls.tls_key,
                https: tls.tls_http,
                dev_validity: tls.dev_cert_validity_sec.map(Duration::from_secs),
            },
            auth: AuthConfig {
                jwt_secret: secret(auth.jwt_secret),
                api_key: secret(auth.api_key),
                insecure: auth.insecure,
                trusted_proxies: auth.trusted_proxy,
                allowed_origins: auth.allowed_origin,
                allow_any_origin_with_cookies: auth.allow_any_origin_with_cookies,
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
                require_durable: cluster.redis_require_durable,
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
                otlp: otlp(&ops)?,
            },
            hooks: HooksConfig {
                connect: hook_url(hooks.connect_hook.clone(), "connect-hook")?,
                publish: hook_url(hooks.publish_hook.clone(), "publish-hook")?,
                join: hook_url(hooks.join_hook.clone(), "join-hook")?,
                event: hook_url(hooks.event_hook.clone(), "event-hook")?,
                secret: secret(hooks.hook_secret.clone()),
                timeout: Duration::from_millis(hooks.hook_timeout_ms()),
                max_in_flight: hooks.hook_max_in_flight(),
                publish_batch: hooks.publish_hook_batch(),
                http2: hooks.hook_http2,
                publish_biz_types: hooks.publish_hook_biz_type,
                publish_rooms: hooks.publish_hook_room,
                publish_volatile: hooks.publish_hook_volatile,
                outbox_max_bytes,
                outbox_max_age,
                event_batch_bytes,
                allow_on_failure: hooks.hook_allow_on_failure,
            },
            push: push_config(push)?,
        };
        cfg.check()?;
        Ok(cfg)
    }
}

/// An https:// base URL of a push service.
fn service_url(url: String, what: &str) -> Result<http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid(format!("{what} {url:?}: {why}"));
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(bad("an https:// URL is needed"));
    }
    Ok(uri)
}

fn push_config(push: super::PushOptions) -> Result<super::PushConfig, ConfigError> {
    let subject = push.vapid_subject();
    if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
        return Err(ConfigError::Invalid(format!(
            "vapid-subject {subject:?}: a mailto: or https: URI is needed (RFC 8292)"
        )));
    }
    let apns = match (
        push.apns_key.clone(),
        push.apns_key_id.clone(),
        push.apns_team_id.clone(),
        push.apns_topic.clone(),
    ) {
        (None, None, None, None) => None,
        (Some(key), Some(key_id), Some(team_id), Some(topic)) => {
            Some(super::resolved::ApnsConfig {
                key,
                key_id,
                team_id,
                topic,
                endpoint: service_url(push.apns_endpoint(), "apns-endpoint")?,
            })
        }
        _ => {
            return Err(ConfigError::Invalid(
                "APNs needs --apns-key, --apns-key-id, --apns-team-id and --apns-topic together"
                    .into(),
            ));
        }
    };
    let webpush_hosts = match push.webpush_host.is_empty() {
        true => super::defaults::WEBPUSH_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect(),
        false => push.webpush_host.clone(),
    };
    Ok(super::PushConfig {
        delay: Duration::from_millis(push.push_delay_ms()),
        preview: push.push_preview,
        vapid_key: push.vapid_key.clone(),
        vapid_subject: subject,
        webpush_hosts,
        apns,
        fcm_credentials: push.fcm_credentials.clone(),
        fcm_endpoint: service_url(push.fcm_endpoint(), "fcm-endpoint")?,
        ca: push.push_ca.clone(),
    })
}

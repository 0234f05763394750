//! The binary's configuration surface: --help, env twins, config file, and the
//! refusal to run dev mode on a public address.

use std::process::Command;

use serde_json::json;

use crate::common::{Client, Server, refuses_to_start};

const FLAGS: &[&str] = &[
    "--http",
    "--wt",
    "--data",
    "--node-id",
    "--redis",
    "--jwt-secret",
    "--api-key",
    "--heartbeat-sec",
    "--login-timeout-sec",
    "--trusted-proxy",
    "--tls-cert",
    "--tls-key",
    "--insecure",
    "--allowed-origin",
    "--max-frame",
    "--rate-limit",
    "--outbound-queue",
    "--config",
];

#[test]
fn help_documents_every_option_and_its_env_twin() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in FLAGS {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!(
            "RTGATE_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn dev_mode_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let err = refuses_to_start(&[
        "--http",
        "0.0.0.0:0",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("--jwt-secret") && err.contains("--insecure"),
        "{err}"
    );
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtgate.toml");
    std::fs::write(&path, "no-such-option = 1\n").unwrap();
    let err = refuses_to_start(&["--config", path.to_str().unwrap()]);
    assert!(err.contains("no-such-option"), "{err}");
}

#[tokio::test]
async fn env_twins_and_config_file_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtgate.toml");
    std::fs::write(&path, "node-id = \"from-file\"\nheartbeat-sec = 7\n").unwrap();
    let cfg = path.to_str().unwrap().to_string();
    // The env twin overrides the file; the file fills what is not set.
    let s = Server::start_with_env(&["--config", &cfg], &[("RTGATE_NODE_ID", "from-env")]);
    let (_c, reply) = Client::login(&s, "u").await;
    assert_eq!(reply["nodeId"], "from-env");
    assert_eq!(reply["heartbeatSec"], 7);
    // A flag overrides both.
    let s = Server::start_with_env(
        &["--config", &cfg, "--node-id", "from-flag"],
        &[("RTGATE_NODE_ID", "from-env")],
    );
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    assert_eq!(
        c.login_as(json!({"msgType": 2, "sendUserId": "u"})).await["nodeId"],
        "from-flag"
    );
}

#[tokio::test]
async fn node_id_is_generated_once_and_kept() {
    let s = Server::start(&[]);
    let (_c, first) = Client::login(&s, "u").await;
    let id = first["nodeId"].as_str().unwrap().to_string();
    let data = s.kill_keep_data();
    let s = Server::start_in(data, &[], &[]);
    let (_c, again) = Client::login(&s, "u").await;
    assert_eq!(again["nodeId"], id.as_str());
}

/// One sample value per option: as a flag takes it, and as a TOML value.
/// Every option `--help` lists must be here, so a new option cannot skip
/// the agreement check below.
const SAMPLES: &[(&str, &str, &str)] = &[
    ("http", "127.0.0.1:9011", "\"127.0.0.1:9011\""),
    ("wt", "127.0.0.1:9012", "\"127.0.0.1:9012\""),
    ("metrics", "127.0.0.1:9013", "\"127.0.0.1:9013\""),
    ("sse", "off", "\"off\""),
    ("tls-cert", "/tmp/c.pem", "\"/tmp/c.pem\""),
    ("tls-key", "/tmp/k.pem", "\"/tmp/k.pem\""),
    ("tls-http", "", "true"),
    ("jwt-secret", "s3cret", "\"s3cret\""),
    ("api-key", "k3y", "\"k3y\""),
    ("insecure", "", "true"),
    ("allow-any-origin-with-cookies", "", "true"),
    ("trusted-proxy", "10.0.0.0/8", "[\"10.0.0.0/8\"]"),
    (
        "allowed-origin",
        "https://a.example",
        "[\"https://a.example\"]",
    ),
    ("heartbeat-sec", "7", "7"),
    ("login-timeout-sec", "3", "3"),
    ("max-frame", "4096", "4096"),
    ("rate-limit", "9", "9"),
    ("outbound-queue", "77", "77"),
    ("max-rooms", "5", "5"),
    ("max-conns", "500", "500"),
    ("max-sessions-per-user", "3", "3"),
    ("user-rate-limit", "11", "11"),
    ("max-recipients-per-min", "13", "13"),
    ("max-conns-per-ip", "7", "7"),
    ("data", "/tmp/rtgate-sample", "\"/tmp/rtgate-sample\""),
    ("store", "memory", "\"memory\""),
    ("dedupe-window-sec", "61", "61"),
    ("retention-count", "123", "123"),
    ("retention-sec", "3600", "3600"),
    ("presence-ttl-sec", "9", "9"),
    ("redis-wait-replicas", "1", "1"),
    ("redis-wait-ms", "300", "300"),
    ("node-id", "n-sample", "\"n-sample\""),
    ("redis", "redis://127.0.0.1:1", "\"redis://127.0.0.1:1\""),
    ("redis-cluster", "", "true"),
    ("wt-keepalive-sec", "4", "4"),
    ("wt-idle-timeout-sec", "12", "12"),
    ("congestion", "cubic", "\"cubic\""),
    ("wt-max-connections", "321", "321"),
    ("drain-sec", "2", "2"),
    ("log-format", "json", "\"json\""),
    (
        "otlp-endpoint",
        "http://127.0.0.1:4318",
        "\"http://127.0.0.1:4318\"",
    ),
    ("otlp-sample-ratio", "0.25", "0.25"),
    ("hook-timeout-ms", "250", "250"),
    ("hook-max-in-flight", "8", "8"),
    ("publish-hook-batch", "16", "16"),
    ("event-outbox-max-bytes", "1000000", "1000000"),
    ("event-outbox-max-age-sec", "600", "600"),
    ("event-hook-batch-bytes", "65536", "65536"),
    (
        "connect-hook",
        "http://127.0.0.1:9/c",
        "\"http://127.0.0.1:9/c\"",
    ),
    (
        "publish-hook",
        "http://127.0.0.1:9/p",
        "\"http://127.0.0.1:9/p\"",
    ),
    (
        "join-hook",
        "http://127.0.0.1:9/j",
        "\"http://127.0.0.1:9/j\"",
    ),
    ("hook-secret", "h00k", "\"h00k\""),
    ("hook-http2", "", "true"),
    ("publish-hook-volatile", "", "true"),
    ("redis-require-durable", "", "true"),
    (
        "event-hook",
        "http://127.0.0.1:9/e",
        "\"http://127.0.0.1:9/e\"",
    ),
    ("publish-hook-biz-type", "7", "[7]"),
    ("publish-hook-room", "lobby", "[\"lobby\"]"),
    ("hook-allow-on-failure", "publish", "[\"publish\"]"),
    ("push-delay-ms", "1500", "1500"),
    ("push-preview", "", "true"),
    ("vapid-key", "/tmp/v.pem", "\"/tmp/v.pem\""),
    (
        "vapid-subject",
        "mailto:ops@a.example",
        "\"mailto:ops@a.example\"",
    ),
    ("webpush-host", "push.a.example", "[\"push.a.example\"]"),
    ("apns-key", "/tmp/a.p8", "\"/tmp/a.p8\""),
    ("apns-key-id", "KEY1", "\"KEY1\""),
    ("apns-team-id", "TEAM1", "\"TEAM1\""),
    ("apns-topic", "com.a.chat", "\"com.a.chat\""),
    (
        "apns-endpoint",
        "https://api.sandbox.push.apple.com",
        "\"https://api.sandbox.push.apple.com\"",
    ),
    ("fcm-credentials", "/tmp/sa.json", "\"/tmp/sa.json\""),
    (
        "fcm-endpoint",
        "https://fcm.a.example",
        "\"https://fcm.a.example\"",
    ),
    ("push-ca", "/tmp/ca.pem", "\"/tmp/ca.pem\""),
];

/// APNs takes its four options together.
const APNS: &[(&str, &str, &str)] = &[
    ("apns-key", "/tmp/a.p8", "\"/tmp/a.p8\""),
    ("apns-key-id", "KEY1", "\"KEY1\""),
    ("apns-team-id", "TEAM1", "\"TEAM1\""),
    ("apns-topic", "com.a.chat", "\"com.a.chat\""),
];

/// The environment twin of an option: `RTGATE_` + upper snake case.
fn twin(name: &str) -> String {
    format!("RTGATE_{}", name.to_uppercase().replace('-', "_"))
}

/// `rtgate print-config` with extra arguments and environment.
fn print_config(args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .args(args)
        .arg("print-config")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "print-config {args:?} {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn flag_env_twin_and_config_key_agree_for_every_option() {
    let help = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .arg("--help")
        .output()
        .unwrap()
        .stdout;
    let help = String::from_utf8(help).unwrap();
    let listed: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .filter(|w| !["help", "version", "config"].contains(w))
        .collect();
    for name in &listed {
        assert!(
            SAMPLES.iter().any(|(n, _, _)| n == name),
            "--{name} has no sample value in SAMPLES"
        );
    }
    let defaults = print_config(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, value, toml) in SAMPLES {
        let flag = format!("--{name}");
        let mut args = vec![flag.as_str()];
        if !value.is_empty() {
            args.push(value);
        }
        // A certificate needs its key and the other way round: the partner
        // travels in the same form as the option under test.
        let partners: Vec<(&str, &str, &str)> = match *name {
            "tls-cert" => vec![("tls-key", "/tmp/p.pem", "\"/tmp/p.pem\"")],
            "tls-key" => vec![("tls-cert", "/tmp/p.pem", "\"/tmp/p.pem\"")],
            // The ratio shows only with trace export on.
            "otlp-sample-ratio" => vec![(
                "otlp-endpoint",
                "http://127.0.0.1:4318",
                "\"http://127.0.0.1:4318\"",
            )],
            // A connect hook gets cookies: it needs the pages' origins.
            "connect-hook" => vec![(
                "allowed-origin",
                "https://app.example",
                "[\"https://app.example\"]",
            )],
            // APNs's options go together (the endpoint needs the others).
            n if n.starts_with("apns-") => {
                APNS.iter().filter(|(p, _, _)| *p != n).copied().collect()
            }
            _ => vec![],
        };
        let partner_flags: Vec<(String, &str)> = partners
            .iter()
            .map(|(n, v, _)| (format!("--{n}"), *v))
            .collect();
        for (f, v) in &partner_flags {
            args.extend([f.as_str(), *v]);
        }
        let from_flag = print_config(&args, &[]);
        let env_name = twin(name);
        let env_value = if value.is_empty() { "true" } else { value };
        let mut env = vec![(env_name.clone(), env_value.to_string())];
        env.extend(partners.iter().map(|(n, v, _)| (twin(n), v.to_string())));
        let from_env = print_config(&[], &env);
        let file = dir.path().join(format!("{name}.toml"));
        let mut text = format!("{name} = {toml}\n");
        for (n, _, t) in &partners {
            text.push_str(&format!("{n} = {t}\n"));
        }
        std::fs::write(&file, text).unwrap();
        let from_file = print_config(&["--config", file.to_str().unwrap()], &[]);
        assert_ne!(from_flag, defaults, "--{name} {value} changed nothing");
        assert_eq!(from_flag, from_env, "--{name} and {env_name} disagree");
        assert_eq!(
            from_flag, from_file,
            "--{name} and the config key `{name}` disagree"
        );
    }
}

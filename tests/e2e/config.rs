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

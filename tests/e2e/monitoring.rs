//! Monitoring as code (`deploy/monitoring/`): the alert rules pass
//! `promtool check rules`, and every metric the rules and the Grafana
//! dashboard name is exported, described, by a node from its first scrape.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::Server;

/// Every `rtgate_*` name in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rtgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(format!(
            "{}/deploy/monitoring/alerts.yml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("promtool runs (Debian's prometheus package; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_name_is_there_from_the_first_scrape() {
    // Hooks configured (their series exist only then); nothing listens there
    // and nothing calls them in this test.
    let s = Server::start(&[
        "--allow-any-origin-with-cookies",
        "--connect-hook",
        "http://127.0.0.1:9/c",
        "--publish-hook",
        "http://127.0.0.1:9/p",
        "--join-hook",
        "http://127.0.0.1:9/j",
        "--event-hook",
        "http://127.0.0.1:9/e",
    ]);
    let (status, text) = s.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let named: BTreeSet<String> = names_in(&file("deploy/monitoring/alerts.yml"))
        .into_iter()
        .chain(names_in(&file("deploy/monitoring/grafana-dashboard.json")))
        .collect();
    assert!(named.len() >= 15, "{named:?}");
    let missing: Vec<&String> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named but not exported on a fresh node: {missing:?}"
    );
    // Every family is described.
    for line in text.lines().filter(|l| l.starts_with("# TYPE rtgate_")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no # HELP"
        );
    }
    // A fresh node already shows the series dashboards rate() over.
    for series in [
        "rtgate_closes_total{reason=\"slow_consumer\"} 0",
        "rtgate_logins_total{result=\"ok\"} 0",
        "rtgate_connections_refused_total{transport=\"websocket\",cap=\"per_ip\"} 0",
        "rtgate_ready 1",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

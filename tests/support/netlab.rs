//! The impaired-network lab (`tools/netlab.py`) from Rust: two namespaces
//! joined through a delaying, dropping shuttle, and a clean link from here to
//! the server's namespace. Shared by the end-to-end tests and the benchmark,
//! which include this file with `#[path]`. Dropping a [`Lab`] closes the
//! tool's stdin, and it deletes its namespaces.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running lab.
pub(crate) struct Lab {
    child: Child,
    out: std::sync::Mutex<BufReader<std::process::ChildStdout>>,
    /// The server's namespace.
    pub(crate) server_ns: String,
    /// The impaired client's namespace.
    pub(crate) client_ns: String,
    /// The server's address as the impaired client reaches it.
    pub(crate) server_ip: String,
    /// A second address of the impaired client (to move a connection to).
    pub(crate) client_ip2: String,
    /// The server's address from this namespace (unimpaired).
    pub(crate) server_direct_ip: String,
    /// The client namespace's address on its control link (for a
    /// WebDriver).
    pub(crate) client_control_ip: String,
    /// This namespace's address on that link.
    pub(crate) control_peer_ip: String,
}

/// Impairment, the same both ways.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Impairment {
    /// Percent of packets dropped.
    pub(crate) loss: f64,
    /// One-way delay, ms.
    pub(crate) delay_ms: f64,
    /// Delay varies by up to this either way, ms (packets stay in order).
    pub(crate) jitter_ms: f64,
    /// Bandwidth cap per direction, kbit/s (0: none).
    pub(crate) rate_kbit: f64,
    /// Bursty loss (Gilbert-Elliott), percent per packet: good to bad, bad
    /// to good, loss in the bad state (`loss` is the good state's).
    pub(crate) burst: Option<(f64, f64, f64)>,
}

/// The lab's counters: packets and bytes each way.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LabStats {
    /// Bytes forwarded towards the client (the server's sends).
    pub(crate) bytes_to_client: u64,
    /// Bytes forwarded towards the server.
    pub(crate) bytes_to_server: u64,
    /// Packets dropped by loss, and by a full link buffer.
    pub(crate) dropped: u64,
    pub(crate) queue_dropped: u64,
}

impl Lab {
    /// Why no lab can run here, if so (tests skip with this reason).
    pub(crate) fn unavailable() -> Option<String> {
        // SAFETY-free check of root: the tool needs CAP_NET_ADMIN.
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_default();
        if uid != "0" {
            return Some("the network lab needs root (network namespaces, TUN)".into());
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Some("no /dev/net/tun".into());
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => None,
            _ => Some("iproute2 (`ip`) is not installed".into()),
        }
    }

    /// Starts a lab for at most `secs` seconds.
    pub(crate) fn start(imp: Impairment, secs: u64) -> Lab {
        let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/netlab.py");
        let mut child = Command::new("python3")
            .arg(tool)
            .args(["--loss", &imp.loss.to_string()])
            .args(["--delay-ms", &imp.delay_ms.to_string()])
            .args(["--jitter-ms", &imp.jitter_ms.to_string()])
            .args(["--secs", &secs.to_string()])
            .args(["--rate-kbit", &imp.rate_kbit.to_string()])
            .args(
                imp.burst
                    .map(|(gb, bg, bad)| vec!["--burst".to_string(), format!("{gb},{bg},{bad}")])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tools/netlab.py");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).expect("netlab answers");
        let v: serde_json::Value = serde_json::from_str(&line).expect("netlab's JSON line");
        assert_eq!(v["ready"], true, "netlab: {line}");
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Lab {
            server_ns: s("server_ns"),
            client_ns: s("client_ns"),
            server_ip: s("server_ip"),
            client_ip2: s("client_ip2"),
            server_direct_ip: s("server_direct_ip"),
            client_control_ip: s("client_control_ip"),
            control_peer_ip: s("control_peer_ip"),
            child,
            out: std::sync::Mutex::new(out),
        }
    }

    /// The lab's counters now.
    pub(crate) fn stats(&mut self) -> LabStats {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("the lab's stdin");
        stdin
            .write_all(b"stats\n")
            .expect("the lab reads its stdin");
        stdin.flush().expect("flushed");
        let mut line = String::new();
        self.out
            .lock()
            .unwrap()
            .read_line(&mut line)
            .expect("the lab answers");
        let v: serde_json::Value = serde_json::from_str(&line).expect("netlab's stats line");
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        LabStats {
            bytes_to_client: n("bytes_to_client"),
            bytes_to_server: n("bytes_to_server"),
            dropped: n("dropped"),
            queue_dropped: n("queue_dropped"),
        }
    }

    /// `program` run inside the client's namespace.
    pub(crate) fn in_client(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns, program]);
        c
    }

    /// The command prefix that runs a program in the server's namespace.
    pub(crate) fn server_wrapper(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.server_ns.clone(),
        ]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Closing stdin makes the tool delete its namespaces and exit.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

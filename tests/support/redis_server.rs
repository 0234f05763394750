//! A real `redis-server` (and a three-master Redis Cluster, with replicas
//! when asked) on free loopback
//! ports, killed on drop: the one launcher shared by the store conformance
//! suite (`src/store/conformance.rs`), the end-to-end tests and the
//! benchmark, each of which includes this file with `#[path]`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why no redis-server can be started here, if so (for tests that skip
/// with a printed reason instead of failing where it is not installed).
pub(crate) fn missing() -> Option<String> {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("redis-server --version exited with {s}")),
        Err(e) => Some(format!(
            "redis-server is not installed ({e}); scripts/test.sh installs it"
        )),
    }
}

/// How a Redis is started.
#[derive(Debug, Clone, Default)]
pub(crate) struct Launch {
    /// AOF with fsync on every write, so an acked message survives a
    /// SIGKILL of Redis (off: no persistence at all).
    pub(crate) durable: bool,
    /// A command and arguments to run redis-server under (e.g. `taskset -c 0`).
    pub(crate) wrapper: Vec<String>,
    /// Start as a replica of the Redis on this port.
    pub(crate) replica_of: Option<u16>,
}

/// One redis-server on a free loopback port.
pub(crate) struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub(crate) port: u16,
    launch: Launch,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(port: u16, dir: &Path, launch: &Launch, extra: &[&str]) -> Child {
    let mut cmd = match launch.wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg("redis-server");
            c
        }
        None => Command::new("redis-server"),
    };
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ]);
    if launch.durable {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    cmd.args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (scripts/test.sh installs it)")
}

/// Whether a Redis answers PING on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(port) {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl RedisServer {
    /// A durable Redis (AOF, fsync always), as the cluster tests need.
    pub(crate) fn start() -> RedisServer {
        Self::launch(Launch {
            durable: true,
            ..Launch::default()
        })
    }

    /// A Redis started as `launch` says; returns once it answers PING.
    pub(crate) fn launch(launch: Launch) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            launch,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    /// `CONFIG SET key value` on this Redis.
    pub(crate) fn config_set(&self, key: &str, value: &str) {
        let out = cli(self.port, &["CONFIG", "SET", key, value]);
        assert!(out.contains("OK"), "CONFIG SET {key} {value}: {out}");
    }

    /// Starts the process again (after [`RedisServer::kill`]) on the same
    /// port and data.
    pub(crate) fn spawn(&mut self) {
        let primary = self.launch.replica_of.map(|p| p.to_string());
        let extra: Vec<&str> = match &primary {
            Some(p) => vec!["--replicaof", "127.0.0.1", p],
            None => Vec::new(),
        };
        self.child = Some(spawn(self.port, self.dir.path(), &self.launch, &extra));
        wait_for(self.port, "redis-server");
    }

    /// A durable replica of `primary`, once it is in sync.
    pub(crate) fn replica_of(primary: &RedisServer) -> RedisServer {
        let r = Self::launch(Launch {
            durable: true,
            replica_of: Some(primary.port),
            ..Launch::default()
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cli(r.port, &["info", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// Makes a replica a primary (what a failover does).
    pub(crate) fn promote(&self) {
        let out = cli(self.port, &["replicaof", "no", "one"]);
        assert!(out.contains("OK"), "promote: {out}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id (of the wrapper, when there is one).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills Redis (SIGKILL) and starts it again on the same port and data.
    pub(crate) fn restart_after(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.spawn();
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A local Redis Cluster of three masters (with or without a replica each),
/// for the sharded Pub/Sub and failover tests.
pub(crate) struct RedisCluster {
    /// Every node by port (masters and replicas), `None` while killed.
    nodes: Vec<(u16, Option<Child>)>,
    /// The first masters' ports, sorted.
    pub(crate) ports: Vec<u16>,
    launch: Launch,
    dir: tempfile::TempDir,
}

fn free_cluster_port() -> u16 {
    // The cluster bus listens on port + 10000.
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Cluster node options: a 2 s node timeout, so a failover takes seconds.
const CLUSTER_NODE: [&str; 4] = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];

impl RedisCluster {
    /// Three durable masters joined with `redis-cli --cluster create`;
    /// returns once the cluster state is ok on all of them.
    pub(crate) fn start() -> RedisCluster {
        Self::start_with_replicas(0)
    }

    /// Three durable masters with `replicas` replicas each; returns once the
    /// cluster state is ok and every replica is in sync.
    pub(crate) fn start_with_replicas(replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<u16> = (0..3 * (1 + replicas))
            .map(|_| free_cluster_port())
            .collect();
        let mut rc = RedisCluster {
            nodes: all.iter().map(|p| (*p, None)).collect(),
            ports: Vec::new(),
            launch: Launch {
                durable: true,
                ..Launch::default()
            },
            dir,
        };
        for p in &all {
            rc.spawn(*p);
        }
        let addrs: Vec<String> = all.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !all.iter().all(|p| {
            cli(*p, &["cluster", "info"]).contains("cluster_state:ok")
                && !cli(*p, &["info", "replication"]).contains("master_link_status:down")
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        rc.ports = all.iter().copied().filter(|p| rc.is_master(*p)).collect();
        rc.ports.sort();
        rc
    }

    /// Starts (again) the node on `port`, with its data and cluster config.
    pub(crate) fn spawn(&mut self, port: u16) {
        let d = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&d).unwrap();
        let child = spawn(port, &d, &self.launch, &CLUSTER_NODE);
        wait_for(port, "cluster node");
        self.slot(port).1 = Some(child);
    }

    /// SIGKILLs the node on `port`.
    pub(crate) fn kill(&mut self, port: u16) {
        if let Some(mut c) = self.slot(port).1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn slot(&mut self, port: u16) -> &mut (u16, Option<Child>) {
        self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap()
    }

    /// Whether the node on `port` says it is a master.
    pub(crate) fn is_master(&self, port: u16) -> bool {
        cli(port, &["role"]).starts_with("master")
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub(crate) fn master_of(&self, key: &str) -> u16 {
        self.master_of_or_none(key)
            .unwrap_or_else(|| panic!("no live master serves {key}"))
    }

    /// The port of the master serving `key`'s slot, if one that is not
    /// failed does.
    pub(crate) fn master_of_or_none(&self, key: &str) -> Option<u16> {
        let live = self.nodes.iter().find(|(_, c)| c.is_some()).unwrap().0;
        let slot: u16 = cli(live, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        for line in cli(live, &["cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => {
                    (a.parse().unwrap_or(u16::MAX)..=b.parse().unwrap_or(0)).contains(&slot)
                }
                None => r.parse() == Ok(slot),
            });
            if serves {
                let addr = f[1].split('@').next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().ok();
            }
        }
        None
    }

    /// Keys held by the master on `port`.
    pub(crate) fn dbsize(&self, port: u16) -> u64 {
        cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }

    /// Seed URLs for `--redis` with `--redis-cluster`.
    pub(crate) fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.nodes {
            if let Some(c) = c {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

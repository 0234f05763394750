//! A real nginx on a free loopback port, configured with the repository's
//! recipes (`deploy/nginx/*.conf` snippets), stopped with its worker on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

/// Path of a recipe file in the repository.
pub(crate) fn recipe(name: &str) -> String {
    format!("{}/deploy/nginx/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl Nginx {
    /// Starts nginx with `servers` (upstream and server blocks, where `PORT`
    /// stands for the port it listens on) inside an http block that includes
    /// the recipe's map.
    pub(crate) fn start(servers: &str) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "user root;\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {map};\n{servers}\n}}\n",
            map = recipe("rtgate-map.conf"),
            servers = servers.replace("PORT", &port.to_string()),
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let bin = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not start: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Nginx {
    /// In front of one node at `node`, refusing every WebSocket upgrade (as
    /// some corporate proxies do), with the recipe for the HTTP fallback's
    /// event stream at `/sse`.
    pub(crate) fn refusing_upgrades(node: std::net::SocketAddr) -> Nginx {
        Nginx::start(&format!(
            "upstream rtgate {{ server {node}; }}\n\
             server {{ listen 127.0.0.1:PORT;\n\
               location /sse {{ proxy_pass http://rtgate; include {}; }}\n\
               location / {{ if ($http_upgrade) {{ return 403; }} proxy_pass http://rtgate; include {}; }}\n\
             }}",
            recipe("sse-location.conf"),
            recipe("edge-location.conf"),
        ))
    }
}

impl Drop for Nginx {
    /// SIGTERM, so that the master stops its worker (a SIGKILLed master
    /// leaves its worker running, listening, for good); SIGKILL if it has
    /// not gone in 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

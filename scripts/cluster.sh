#!/usr/bin/env bash
# Starts a local three-node rtgate cluster with Redis, and nginx in front
# when it is installed. Ctrl-C stops everything.
#
#   node 1: http://127.0.0.1:8081  (WebTransport udp 4434)
#   node 2: http://127.0.0.1:8082  (WebTransport udp 4435)
#   node 3: http://127.0.0.1:8083  (WebTransport udp 4436)
#   nginx:  http://127.0.0.1:8090  (round robin over the three, WebSocket only)
#   redis:  127.0.0.1:6390, data in data/cluster/redis
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
cargo build --release
root=data/cluster
mkdir -p "$root/redis"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
  --dir "$PWD/$root/redis" >"$root/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done

for n in 1 2 3; do
  ./target/release/rtgate --http "127.0.0.1:808$n" --wt "127.0.0.1:443$((3 + n))" \
    --data "$root/node$n" --node-id "node$n" --redis redis://127.0.0.1:6390 \
    --trusted-proxy 127.0.0.1/32 >"$root/node$n.out" 2>"$root/node$n.log" &
  pids+=($!)
done

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [ -x "$nginx_bin" ]; then
  conf="$PWD/$root/nginx.conf"
  cat >"$conf" <<CONF
daemon off;
worker_processes 1;
pid $PWD/$root/nginx.pid;
error_log $PWD/$root/nginx.log;
events {}
http {
  access_log off;
  client_body_temp_path $PWD/$root/nginx-body;
  proxy_temp_path $PWD/$root/nginx-proxy;
  include $PWD/deploy/nginx/rtgate-map.conf;
  upstream rtgate { server 127.0.0.1:8081; server 127.0.0.1:8082; server 127.0.0.1:8083; }
  server {
    listen 127.0.0.1:8090;
    location / { proxy_pass http://rtgate; include $PWD/deploy/nginx/edge-location.conf; }
  }
}
CONF
  "$nginx_bin" -c "$conf" -p "$PWD/$root" -e "$PWD/$root/nginx.log" &
  pids+=($!)
fi

sleep 1
echo "rtgate cluster up: nodes on :8081 :8082 :8083${nginx_bin:+, nginx on :8090}; logs in $root/. Ctrl-C to stop."
wait

#!/usr/bin/env bash
# Runs every test: installs what a fresh Debian machine lacks for them
# (Chromium and chromedriver, Firefox ESR, NSS's certutil and geckodriver
# for the browser tests, redis-server and nginx for the cluster tests,
# Prometheus's promtool for the alert rules, Node.js and npm for the client
# package in clients/js, aioquic for the WebTransport tests), then `cargo test`. Every service a test needs is started by that test, on
# loopback ports it picks.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# aioquic: an independent QUIC/WebTransport implementation the WT tests use.
if ! python3 -c "import aioquic" >/dev/null 2>&1; then
  echo "== installing aioquic"
  python3 -m pip install --quiet --disable-pip-version-check "aioquic==1.7.2"
fi

# geckodriver (Firefox's WebDriver) is not packaged by Debian; it builds
# from crates.io once per machine.
if ! command -v geckodriver >/dev/null 2>&1; then
  echo "== installing geckodriver"
  cargo install --locked --quiet geckodriver@0.37.1
fi

# The client package: its unit tests, the check that the bundle the server
# embeds (web/client.js) is what its sources build, and `npm pack`.
echo "== clients/js: npm ci, npm test, bundle check, npm pack"
node_log=$(mktemp)
set +e
(
  set -e
  cd clients/js
  npm ci --no-audit --no-fund --loglevel=error
  npm test 2>&1 | tee "$node_log" | grep -E '^# (tests|pass|fail)|^not ok'
  npm run --silent check
  mkdir -p ../../target/npm
  tarball=../../target/npm/$(npm pack --silent --pack-destination ../../target/npm | tail -1)
  ./scripts/consumer.sh "$tarball"
)
js_status=$?
set -e

echo "== cargo build --examples (the e2e tests run the example clients)"
cargo build --examples

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log" "$node_log"' EXIT
# Unit, property and store conformance tests (lib) and the end-to-end suite.
set +e
cargo test --lib --test e2e "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$js_status" -ne 0 ]; then
  echo "clients/js: its tests, the bundle check or npm pack failed (above)"
  status=1
fi
# The chaos run at CI size (two nodes on Redis, clients on both transports,
# Redis and a node killed, a node drained; every acked message must reach
# every recipient): the full-size run and its figures are in docs/cluster.md.
chaos_passed=0
chaos_failed=0
if [ "$status" -eq 0 ]; then
  echo "== chaos run (40 s, 60 clients)"
  if ./target/debug/examples/rtgate-bench --server target/debug/rtgate --no-pin \
      chaos --secs 40 --clients 60 2>/dev/null | grep -E '^ +(chaos|\[chaos\])|^\{'; then
    chaos_passed=1
  else
    chaos_failed=1
    status=1
  fi
fi
# One closing line over every test binary (and the chaos run).
awk -v cp="$chaos_passed" -v cf="$chaos_failed" \
  '/^test result:/ { p += $4; f += $6 } /^# pass / { p += $3 } /^# fail / { f += $3 }
   END { printf "tests: %d passed, %d failed\n", p + cp, f + cf }' "$log" "$node_log"
exit "$status"

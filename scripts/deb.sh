#!/usr/bin/env bash
# Builds the .deb from the release binary (cargo deb, installed once per
# machine), installs it on this machine (root), and starts the installed
# binary with the installed configuration: it must answer /healthz. Prints
# the package and its size. Run after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb@3.8.0
cargo deb --no-build --quiet --output target/debian/rtgate.deb
deb=target/debian/rtgate.deb
echo "   package: $(dpkg-deb --field "$deb" Package) $(dpkg-deb --field "$deb" Version), $(stat -c %s "$deb") bytes"
dpkg -i "$deb" >/dev/null
for f in /usr/bin/rtgate /lib/systemd/system/rtgate.service /etc/rtgate/rtgate.toml; do
  [ -e "$f" ] || { echo "   $f was not installed" >&2; exit 1; }
done
getent passwd rtgate >/dev/null || { echo "   the rtgate user was not created" >&2; exit 1; }

# The unit's command line, with ports and data of this check.
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
/usr/bin/rtgate --config /etc/rtgate/rtgate.toml --data "$data" \
  --http 127.0.0.1:0 --wt 127.0.0.1:0 >"$data/out" 2>"$data/err" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^rtgate listening http=\([^ ]*\).*/\1/p' "$data/out")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "   the installed rtgate did not start:" >&2; cat "$data/err" >&2; exit 1; }
python3 -c "import urllib.request,sys; r=urllib.request.urlopen('http://$addr/healthz', timeout=5); sys.exit(0 if r.status == 200 else 1)"
echo "   installed rtgate $(/usr/bin/rtgate --version | cut -d' ' -f2) started from the package and answered /healthz on $addr"

#!/usr/bin/env python3
"""An impaired-network lab on one machine, for rtgate's tests and benchmarks.

Creates two network namespaces, the server's and the client's, joined
through a userspace shuttle between two TUN devices that holds every packet
for a one-way delay (with jitter) and drops a share at random, in both
directions alike, TCP and UDP alike. The server's namespace also gets a veth
link to the namespace this runs in (unimpaired), for the other side's
clients; the client's namespace gets one for control traffic only (a
WebDriver), its route to the server being the impaired one.

    tools/netlab.py --loss 3 --delay-ms 60 --jitter-ms 5 --secs 300
    tools/netlab.py --burst 2,25,50 --rate-kbit 2000 --delay-ms 100   # a phone

With --rate-kbit each direction is a link of that rate with a --queue-ms
buffer (packets queue behind each other; past the buffer they are
dropped); with --burst, loss follows a Gilbert-Elliott model (a good and a
bad state), as a phone's does. A line "stats" on stdin prints the counters
(packets and bytes each way) as a JSON line on stdout.

prints one JSON line when ready:

    {"ready": true, "server_ns": "...", "client_ns": "...",
     "server_ip": "10.213.0.1", "client_ip": "10.213.0.2", "client_ip2": "10.213.0.3",
     "server_direct_ip": "10.214.N.2", "client_control_ip": "10.215.N.2",
     "control_peer_ip": "10.215.N.1"}

(N: the first subnet no other running lab uses, so labs can run at once).

and runs until --secs pass, stdin closes, or SIGTERM/SIGINT, then deletes
what it made and prints {"lab": "done", "forwarded": N, "dropped": M} to
stderr. A run killed with SIGKILL leaves its namespaces; the next run
deletes every lab namespace whose process is gone (names carry the pid).
Needs root, iproute2 and /dev/net/tun; nothing leaves the namespaces it
creates except the veth link to its own namespace.
"""

import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PREFIX = "rtlab"

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def sweep_stale():
    """Deletes lab namespaces whose shuttle process is gone."""
    out = ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].rstrip("sc")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            ip("netns", "del", name, check=False)
            for end in "hk":
                ip("link", "del", f"{PREFIX}{pid}{end}", check=False)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def open_tun(ns, name):
    """A TUN device named `name` inside namespace `ns`; returns its fd."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        setns(f"/var/run/netns/{ns}")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
    return fd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loss", type=float, default=0.0, help="percent of packets dropped, each way")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="delay varies by up to this, either way")
    ap.add_argument("--reorder", action="store_true", help="let jitter reorder packets")
    ap.add_argument("--rate-kbit", type=float, default=0.0,
                    help="bandwidth cap per direction, kbit/s (a token bucket: packets queue behind each other; 0: none)")
    ap.add_argument("--queue-ms", type=float, default=300.0,
                    help="with --rate-kbit, a packet that would wait longer than this to be sent is dropped (the phone's buffer)")
    ap.add_argument("--burst", default=None,
                    help="bursty loss (Gilbert-Elliott): 'P_GB,P_BG,LOSS_BAD' in percent per packet: good to bad, bad to good, "
                         "and the loss in the bad state (--loss is the loss in the good one)")
    ap.add_argument("--secs", type=float, default=600, help="the lab ends by itself after this")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if not 0 <= a.loss <= 100 or a.delay_ms < 0 or a.jitter_ms < 0 or a.secs <= 0 or a.rate_kbit < 0:
        sys.exit("netlab: loss 0-100, delays >= 0, rate >= 0, secs > 0")
    burst = None
    if a.burst:
        try:
            burst = [float(x) for x in a.burst.split(",")]
            assert len(burst) == 3 and all(0 <= x <= 100 for x in burst)
        except (ValueError, AssertionError):
            sys.exit("netlab: --burst P_GB,P_BG,LOSS_BAD, each 0-100")
    rng = random.Random(a.seed)
    # A link's delay does not depend on what else the machine runs: on the
    # lowest real-time priority this loop (which sleeps in select) is not
    # queued behind a busy test suite, whose load otherwise shows up as
    # round-trip spikes the link never had. Without the right to it
    # (not root), the default scheduler.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        pass
    sweep_stale()
    pid = os.getpid()
    s_ns, c_ns = f"{PREFIX}{pid}s", f"{PREFIX}{pid}c"
    host_if, ctl_if = f"{PREFIX}{pid}h", f"{PREFIX}{pid}k"
    made = []
    stats = {"forwarded": 0, "dropped": 0, "queue_dropped": 0, "bytes_to_client": 0, "bytes_to_server": 0}

    def cleanup(*_):
        print(json.dumps({"lab": "done", **stats}), file=sys.stderr, flush=True)
        for ns in made:
            ip("netns", "del", ns, check=False)
        ip("link", "del", host_if, check=False)
        ip("link", "del", ctl_if, check=False)
        sys.exit(0)

    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGHUP, cleanup)
    # Links to this namespace get a subnet no other running lab uses.
    lock = os.open("/tmp/rtgate-netlab.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    used = ip("-o", "addr", "show", check=False).stdout
    slot = next(i for i in range(256) if f"10.214.{i}.1/" not in used and f"10.215.{i}.1/" not in used)
    try:
        for ns in (s_ns, c_ns):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        fds = {}
        for ns, addr in ((s_ns, "10.213.0.1/24"), (c_ns, "10.213.0.2/24")):
            fds[ns] = open_tun(ns, "lab0")
            ip("-n", ns, "addr", "add", addr, "dev", "lab0")
            ip("-n", ns, "link", "set", "lab0", "up")
        # A second client address, to move a connection to (migration).
        ip("-n", c_ns, "addr", "add", "10.213.0.3/24", "dev", "lab0")
        # The unimpaired side: a veth from here to the server's namespace.
        ip("link", "add", host_if, "type", "veth", "peer", "name", "direct0", "netns", s_ns)
        ip("addr", "add", f"10.214.{slot}.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", s_ns, "addr", "add", f"10.214.{slot}.2/30", "dev", "direct0")
        ip("-n", s_ns, "link", "set", "direct0", "up")
        # A control link to the client's namespace (a WebDriver, say); the
        # client's traffic to the server still takes the impaired path.
        ip("link", "add", ctl_if, "type", "veth", "peer", "name", "ctl0", "netns", c_ns)
        ip("addr", "add", f"10.215.{slot}.1/30", "dev", ctl_if)
        ip("link", "set", ctl_if, "up")
        ip("-n", c_ns, "addr", "add", f"10.215.{slot}.2/30", "dev", "ctl0")
        ip("-n", c_ns, "link", "set", "ctl0", "up")
    except Exception as e:  # noqa: BLE001 - report and clean up whatever failed
        print(json.dumps({"ready": False, "error": str(e)}), flush=True)
        cleanup()
    finally:
        os.close(lock)
    print(json.dumps({
        "ready": True, "server_ns": s_ns, "client_ns": c_ns,
        "server_ip": "10.213.0.1", "client_ip": "10.213.0.2", "client_ip2": "10.213.0.3",
        "server_direct_ip": f"10.214.{slot}.2", "client_control_ip": f"10.215.{slot}.2",
        "control_peer_ip": f"10.215.{slot}.1",
    }), flush=True)

    s_fd, c_fd = fds[s_ns], fds[c_ns]
    other = {s_fd: c_fd, c_fd: s_fd}
    held = []  # (release time, n, destination fd, packet)
    last = {s_fd: 0.0, c_fd: 0.0}  # latest release per direction (FIFO unless --reorder)
    link_free = {s_fd: 0.0, c_fd: 0.0}  # when each direction's link has sent what it holds
    bad = {s_fd: False, c_fd: False}  # Gilbert-Elliott state per direction
    sent_bytes = {c_fd: "bytes_to_client", s_fd: "bytes_to_server"}

    def lost(dst):
        """Whether the next packet towards `dst` is lost (random or bursty)."""
        if burst is None:
            return a.loss and rng.random() * 100 < a.loss
        p_gb, p_bg, loss_bad = burst
        if bad[dst]:
            bad[dst] = rng.random() * 100 >= p_bg
        else:
            bad[dst] = rng.random() * 100 < p_gb
        return rng.random() * 100 < (loss_bad if bad[dst] else a.loss)
    n = 0
    end = time.monotonic() + a.secs
    watch = [s_fd, c_fd, sys.stdin.fileno()]
    while time.monotonic() < end:
        now = time.monotonic()
        wait = min(end - now, (held[0][0] - now) if held else 1.0)
        ready, _, _ = select.select(watch, [], [], max(0.0, wait))
        now = time.monotonic()
        for fd in ready:
            if fd == sys.stdin.fileno():
                line = os.read(fd, 4096)
                if not line:
                    cleanup()
                if b"stats" in line:
                    print(json.dumps(stats), flush=True)
                continue
            while True:
                try:
                    pkt = os.read(fd, 65535)
                except BlockingIOError:
                    break
                dst = other[fd]
                if lost(dst):
                    stats["dropped"] += 1
                    continue
                sent_at = now
                if a.rate_kbit:
                    # The link sends one packet after another at the rate.
                    start = max(now, link_free[dst])
                    if start - now > a.queue_ms / 1000:
                        stats["queue_dropped"] += 1
                        continue
                    link_free[dst] = start + len(pkt) * 8 / (a.rate_kbit * 1000)
                    sent_at = link_free[dst]
                stats["forwarded"] += 1
                stats[sent_bytes[dst]] += len(pkt)
                t = sent_at + (a.delay_ms + rng.uniform(-a.jitter_ms, a.jitter_ms)) / 1000
                if not a.reorder:
                    t = max(t, last[dst])
                last[dst] = t
                n += 1
                heapq.heappush(held, (t, n, dst, pkt))
        while held and held[0][0] <= now:
            _, _, dst, pkt = heapq.heappop(held)
            try:
                os.write(dst, pkt)
            except OSError:
                pass
    cleanup()


if __name__ == "__main__":
    main()

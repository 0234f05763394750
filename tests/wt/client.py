#!/usr/bin/env python3
"""A WebTransport client built on aioquic: a second, independent implementation
of HTTP/3 and WebTransport that the end-to-end tests talk to rtgate with.

Driven by JSON lines on stdin, it reports JSON lines on stdout:

  stdin:  {"send": <json value>}       one length-prefixed frame on the stream
          {"text": "ping"}             one frame holding this literal text
          {"raw": "<hex>"}             raw bytes on the stream (framing tests)
          {"datagram": <json value>}   one datagram
          {"rebind": true}             move the connection to a new UDP socket
          {"rebind": "<IPv4>"}         ... bound to another local address
          {"close": true}              close the connection
          {"max_streams_uni": N}       grant the server N unidirectional streams in all
                                       (WT_MAX_STREAMS capsule; flow-control profiles)
  stdout: {"cert_hash": "<hex>"}       SHA-256 of the certificate the server presented
          {"connected": <status>}      the CONNECT answer
          {"frame": <json or text>, "stream": <id>, "at": <ms>}  a frame from the
                                       client's stream or a server-opened one, and
                                       when it came (monotonic)
          {"datagram": <json>, "at": <ms>}  a datagram
          {"stream_end": true, "stream": <id>, "main": <bool>}  the server finished
                                       a stream (main: the client's own)
          {"session_closed": <code>, "reason": "..."}  a CLOSE_WEBTRANSPORT_SESSION capsule
          {"rebound": <port>}          the connection now uses this local port
          {"closed": <code>, "reason": "..."}  the connection ended
          {"refused": "..."}           the profile would not send its CONNECT
          {"credit": {...}}            a flow-control capsule from the server
          {"violation": "..."}         the server sent beyond the client's limits
          {"stream_dropped": <id>}     a server stream past --stream-cap, ignored

--browser picks what the client imitates (SETTINGS, CONNECT headers, the
checks it makes of the server's SETTINGS, and flow control), after each
browser's public source and bug reports:

  chromium       draft-02: ENABLE_WEBTRANSPORT 0x2b603742, the draft-02 header,
                 needs the server's 0x2b603742 (today's Chromium and Edge)
  firefox        draft-02 as Firefox sends it (no legacy datagram setting)
  safari         Safari 26.4-26.6: 0xc671706a, 0x14e9cd29 and the initial
                 flow-control limits, no draft-02 setting or header; cancels
                 unless the server's SETTINGS carry 0xc671706a >= 1
  safari-strict  safari, and opens no stream before it has WT_MAX_STREAMS
                 credit, and checks the server keeps to its limits
  draft16        draft-16: WT_ENABLED 0x2c7cf000, :protocol webtransport-h3,
                 needs the server's WT_ENABLED, strict about credit
"""

import argparse
import asyncio
import hashlib
import json
import socket
import ssl
import struct
import sys
from urllib.parse import urlparse

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted

# Capsule types (draft-ietf-webtrans-http3-13 and later).
WT_MAX_DATA = 0x190B4D3D
WT_MAX_STREAMS_BIDI = 0x190B4D3F
WT_MAX_STREAMS_UNI = 0x190B4D40
WT_DATA_BLOCKED = 0x190B4D41
WT_STREAMS_BLOCKED_UNI = 0x190B4D44
CREDIT_NAMES = {
    WT_MAX_DATA: "max_data",
    WT_MAX_STREAMS_BIDI: "max_streams_bidi",
    WT_MAX_STREAMS_UNI: "max_streams_uni",
    WT_DATA_BLOCKED: "data_blocked",
    WT_STREAMS_BLOCKED_UNI: "streams_blocked_uni",
}

BASE = {0x1: 0, 0x7: 0, 0x8: 1, 0x33: 1}
PROFILES = {
    # SETTINGS sent, :protocol, draft-02 header, server setting required,
    # strict about stream credit.
    "chromium": ({**BASE, **{0xFFD277: 1, 0x2B603742: 1}}, b"webtransport", True, (0x2B603742, 1), False),
    "firefox": ({**BASE, **{0x2B603742: 1}}, b"webtransport", True, (0x2B603742, 1), False),
    "safari": (
        {**BASE, **{0xC671706A: 1, 0x14E9CD29: 1, 0x2B61: 8 << 20, 0x2B64: 100, 0x2B65: 100}},
        b"webtransport",
        False,
        (0xC671706A, 1),
        False,
    ),
    "safari-strict": (
        {**BASE, **{0xC671706A: 1, 0x14E9CD29: 1, 0x2B61: 8 << 20, 0x2B64: 100, 0x2B65: 100}},
        b"webtransport",
        False,
        (0xC671706A, 1),
        True,
    ),
    "draft16": ({**BASE, **{0x2C7CF000: 1}}, b"webtransport-h3", False, (0x2C7CF000, 1), True),
}


def varint(v: int) -> bytes:
    b = Buffer(capacity=8)
    b.push_uint_var(v)
    return b.data


def capsule(kind: int, value: int) -> bytes:
    body = varint(value)
    return varint(kind) + varint(len(body)) + body


def make_h3(profile, limits):
    settings = dict(PROFILES[profile][0])
    settings.update(limits)

    class ProfileH3(H3Connection):
        def _get_local_settings(self):
            return dict(settings)

    return ProfileH3


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def now_ms():
    import time

    return time.monotonic() * 1000


def decode(data: bytes):
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = self.h3_class(self._quic, enable_webtransport=True)
        self.session_id = None
        self.bufs = {}
        self.main_stream = None
        self.capsules = b""
        self.answered = asyncio.get_event_loop().create_future()
        self.ended = asyncio.get_event_loop().create_future()
        self.settings_in = asyncio.get_event_loop().create_future()
        # Flow control, as the profile announced it: what the server may
        # send, what it has sent, what it granted us.
        self.limit_data = self.limits.get(0x2B61)
        self.limit_uni = self.limits.get(0x2B64)
        self.window = self.limit_data
        self.received = 0
        self.server_streams = set()
        self.dropped = set()
        self.bidi_credit = asyncio.get_event_loop().create_future()

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            cert = self._quic.tls._peer_certificate
            if cert is not None:
                from cryptography.hazmat.primitives.serialization import Encoding

                emit({"cert_hash": hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()})
        if isinstance(event, ConnectionTerminated):
            emit({"closed": event.error_code, "reason": event.reason_phrase})
            if not self.ended.done():
                self.ended.set_result(True)
            if not self.answered.done():
                self.answered.set_result(None)
            return
        for e in self.h3.handle_event(event):
            self.h3_event(e)
        if self.h3.received_settings is not None and not self.settings_in.done():
            self.settings_in.set_result(dict(self.h3.received_settings))

    def grant(self, kind, value):
        if self.session_id is not None:
            self.h3.send_data(self.session_id, capsule(kind, value), end_stream=False)

    def count(self, e):
        """Flow-control bookkeeping of a profile that announced limits."""
        new = e.stream_id not in self.server_streams and e.stream_id != self.main_stream
        if new:
            if self.stream_cap is not None and len(self.server_streams) >= self.stream_cap:
                self.dropped.add(e.stream_id)
                emit({"stream_dropped": e.stream_id})
                return False
            self.server_streams.add(e.stream_id)
            if self.limit_uni is not None and len(self.server_streams) > self.limit_uni:
                emit({"violation": f"stream {len(self.server_streams)} opened beyond the limit {self.limit_uni}"})
        if self.limit_data is not None:
            self.received += len(e.data)
            if self.received > self.limit_data:
                emit({"violation": f"{self.received} bytes received beyond the limit {self.limit_data}"})
            elif self.limit_data - self.received < self.window // 2 and self.auto_grant:
                self.limit_data = self.received + self.window
                self.grant(WT_MAX_DATA, self.limit_data)
        if e.stream_ended and e.stream_id in self.server_streams and self.limit_uni is not None and self.auto_grant:
            # As QUIC's MAX_STREAMS: an ended stream makes room for one more.
            self.limit_uni += 1
            self.grant(WT_MAX_STREAMS_UNI, self.limit_uni)
        return True

    def h3_event(self, e):
        if isinstance(e, HeadersReceived) and e.stream_id == self.session_id:
            status = dict(e.headers).get(b":status", b"0").decode()
            if not self.answered.done():
                self.answered.set_result(int(status))
        elif isinstance(e, WebTransportStreamDataReceived):
            if e.stream_id in self.dropped or not self.count(e):
                return
            # Frames come on the client's stream and on every stream the
            # server opens (one per channel), each with its own framing.
            buf = self.bufs.get(e.stream_id, b"") + e.data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                emit({"frame": decode(buf[4 : 4 + n]), "stream": e.stream_id, "at": now_ms()})
                buf = buf[4 + n :]
            self.bufs[e.stream_id] = buf
            if e.stream_ended:
                emit({"stream_end": True, "stream": e.stream_id, "main": e.stream_id == self.main_stream})
        elif isinstance(e, DataReceived) and e.stream_id == self.session_id:
            self.capsules += e.data
            self.read_capsules()
        elif isinstance(e, DatagramReceived):
            emit({"datagram": decode(e.data), "at": now_ms()})

    def read_capsules(self):
        """Capsules on the CONNECT stream: type, length, value (RFC 9297)."""
        while True:
            buf = Buffer(data=self.capsules)
            try:
                kind = buf.pull_uint_var()
                length = buf.pull_uint_var()
                value = buf.pull_bytes(length)
            except BufferReadError:
                return
            self.capsules = self.capsules[buf.tell() :]
            if kind == 0x2843 and len(value) >= 4:
                (code,) = struct.unpack(">I", value[:4])
                emit({"session_closed": code, "reason": value[4:].decode("utf-8", "replace")})
            elif kind in CREDIT_NAMES:
                v = Buffer(data=value).pull_uint_var()
                emit({"credit": {CREDIT_NAMES[kind]: v}})
                if kind == WT_MAX_STREAMS_BIDI and v >= 1 and not self.bidi_credit.done():
                    self.bidi_credit.set_result(v)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--origin")
    # Flow-control windows (bytes) the client grants the server at first.
    ap.add_argument("--window", type=int)
    ap.add_argument("--browser", choices=sorted(PROFILES), default="chromium")
    # WebTransport flow-control limits announced instead of the profile's.
    ap.add_argument("--wt-max-data", type=int)
    ap.add_argument("--wt-max-streams-uni", type=int)
    # Grant no more credit than announced (or asked for with a command).
    ap.add_argument("--no-auto-grant", action="store_true")
    # Ignore server-opened streams after this many (Safari stops accepting
    # them after about 7,000 in a session).
    ap.add_argument("--stream-cap", type=int)
    args = ap.parse_args()
    limits = {}
    if args.wt_max_data is not None:
        limits[0x2B61] = args.wt_max_data
    if args.wt_max_streams_uni is not None:
        limits[0x2B64] = args.wt_max_streams_uni
    _, protocol, draft02_header, required, strict = PROFILES[args.browser]
    Client.h3_class = make_h3(args.browser, limits)
    Client.limits = {**PROFILES[args.browser][0], **limits}
    Client.stream_cap = args.stream_cap
    Client.auto_grant = not args.no_auto_grant
    url = urlparse(args.url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    config.verify_mode = ssl.CERT_NONE  # the test compares the hash with /cert-hash instead
    config.server_name = "localhost"
    if args.window:
        config.max_data = args.window
        config.max_stream_data = args.window
    async with connect(url.hostname, url.port, configuration=config, create_protocol=Client) as client:
        # Every browser waits for the server's SETTINGS before its CONNECT
        # and cancels unless they carry what its draft needs.
        try:
            server = await asyncio.wait_for(client.settings_in, 5)
        except asyncio.TimeoutError:
            emit({"refused": "no SETTINGS from the server"})
            return
        emit({"server_settings": {hex(k): v for k, v in server.items()}})
        if server.get(required[0], 0) < required[1]:
            emit({"refused": f"the server's SETTINGS lack {hex(required[0])}"})
            return
        sid = client._quic.get_next_available_stream_id()
        client.session_id = sid
        path = url.path + (("?" + url.query) if url.query else "")
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", url.netloc.encode()),
            (b":path", path.encode()),
            (b":protocol", protocol),
        ]
        if draft02_header:
            headers.append((b"sec-webtransport-http3-draft02", b"1"))
        if args.origin:
            headers.append((b"origin", args.origin.encode()))
        client.h3.send_headers(stream_id=sid, headers=headers)
        client.transmit()
        status = await client.answered
        emit({"connected": status})
        if status != 200:
            return
        if strict:
            # No stream before the server grants one (draft-13+ flow control:
            # the server announced no initial limits, so they are 0).
            try:
                await asyncio.wait_for(client.bidi_credit, 5)
            except asyncio.TimeoutError:
                emit({"refused": "no WT_MAX_STREAMS credit for a bidirectional stream"})
                return
        stream = client.h3.create_webtransport_stream(sid, is_unidirectional=False)
        client.main_stream = stream
        # aioquic does not mark a client-opened WebTransport stream for the
        # receiving direction; without this it parses the server's bytes as
        # HTTP/3 frames.
        with client.h3._get_or_create_stream(stream) as state:
            state.frame_type = FrameType.WEBTRANSPORT_STREAM
            state.session_id = sid
        client.transmit()

        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while not client.ended.done():
            line_task = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait([line_task, client.ended], return_when=asyncio.FIRST_COMPLETED)
            if line_task not in done:
                line_task.cancel()
                break
            line = line_task.result()
            if not line:
                break
            cmd = json.loads(line)
            if "send" in cmd:
                data = json.dumps(cmd["send"]).encode()
                client._quic.send_stream_data(stream, struct.pack(">I", len(data)) + data)
            elif "text" in cmd:
                data = cmd["text"].encode()
                client._quic.send_stream_data(stream, struct.pack(">I", len(data)) + data)
            elif "raw" in cmd:
                client._quic.send_stream_data(stream, bytes.fromhex(cmd["raw"]))
            elif "datagram" in cmd:
                client.h3.send_datagram(sid, json.dumps(cmd["datagram"]).encode())
            elif "rebind" in cmd:
                # Connection migration, as a phone moving to another network
                # does: the same QUIC connection continues from a new UDP
                # socket (a new local port); the old socket is closed.
                # (aioquic's socket is dual-stack IPv6 and sends to the
                # server's IPv4-mapped address; the new one must be alike.)
                old = client._transport
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                # {"rebind": "<IPv4>"} also moves to another local address.
                local = cmd["rebind"] if isinstance(cmd["rebind"], str) else None
                sock.bind((f"::ffff:{local}" if local else "::", 0))
                await loop.create_datagram_endpoint(lambda: client, sock=sock)
                old.close()
                client._quic.send_ping(0)
                name = client._transport.get_extra_info("sockname")
                emit({"rebound": name[1], "address": name[0]})
            elif "withhold" in cmd:
                # A reader that stops: no more flow-control credit for the
                # server (MAX_DATA, MAX_STREAM_DATA), whatever arrives.
                client._quic._write_connection_limits = lambda *a, **k: None
                client._quic._write_stream_limits = lambda *a, **k: None
                emit({"withholding": True})
            elif "max_streams_uni" in cmd:
                client.limit_uni = cmd["max_streams_uni"]
                client.grant(WT_MAX_STREAMS_UNI, client.limit_uni)
            elif "max_data" in cmd:
                client.limit_data = cmd["max_data"]
                client.grant(WT_MAX_DATA, client.limit_data)
            elif "close" in cmd:
                client.close()
                break
            client.transmit()
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # reported to the test, which decides
        emit({"error": repr(e)})

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
  stdout: {"cert_hash": "<hex>"}       SHA-256 of the certificate the server presented
          {"connected": <status>}      the CONNECT answer
          {"frame": <json or text>, "stream": <id>}  a frame from the client's
                                       stream or a server-opened one
          {"datagram": <json>}         a datagram
          {"stream_end": true, "stream": <id>, "main": <bool>}  the server finished
                                       a stream (main: the client's own)
          {"session_closed": <code>, "reason": "..."}  a CLOSE_WEBTRANSPORT_SESSION capsule
          {"rebound": <port>}          the connection now uses this local port
          {"closed": <code>, "reason": "..."}  the connection ended
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


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def decode(data: bytes):
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id = None
        self.bufs = {}
        self.main_stream = None
        self.capsules = b""
        self.answered = asyncio.get_event_loop().create_future()
        self.ended = asyncio.get_event_loop().create_future()

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

    def h3_event(self, e):
        if isinstance(e, HeadersReceived) and e.stream_id == self.session_id:
            status = dict(e.headers).get(b":status", b"0").decode()
            if not self.answered.done():
                self.answered.set_result(int(status))
        elif isinstance(e, WebTransportStreamDataReceived):
            # Frames come on the client's stream and on every stream the
            # server opens (one per channel), each with its own framing.
            buf = self.bufs.get(e.stream_id, b"") + e.data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                emit({"frame": decode(buf[4 : 4 + n]), "stream": e.stream_id})
                buf = buf[4 + n :]
            self.bufs[e.stream_id] = buf
            if e.stream_ended:
                emit({"stream_end": True, "stream": e.stream_id, "main": e.stream_id == self.main_stream})
        elif isinstance(e, DataReceived) and e.stream_id == self.session_id:
            self.capsules += e.data
            self.read_capsules()
        elif isinstance(e, DatagramReceived):
            emit({"datagram": decode(e.data)})

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


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--origin")
    # Flow-control windows (bytes) the client grants the server at first.
    ap.add_argument("--window", type=int)
    args = ap.parse_args()
    url = urlparse(args.url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    config.verify_mode = ssl.CERT_NONE  # the test compares the hash with /cert-hash instead
    config.server_name = "localhost"
    if args.window:
        config.max_data = args.window
        config.max_stream_data = args.window
    async with connect(url.hostname, url.port, configuration=config, create_protocol=Client) as client:
        sid = client._quic.get_next_available_stream_id()
        client.session_id = sid
        path = url.path + (("?" + url.query) if url.query else "")
        headers = [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", url.netloc.encode()),
            (b":path", path.encode()),
            (b":protocol", b"webtransport"),
            (b"sec-webtransport-http3-draft02", b"1"),
        ]
        if args.origin:
            headers.append((b"origin", args.origin.encode()))
        client.h3.send_headers(stream_id=sid, headers=headers)
        client.transmit()
        status = await client.answered
        emit({"connected": status})
        if status != 200:
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

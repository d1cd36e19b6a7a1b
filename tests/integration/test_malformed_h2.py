#!/usr/bin/python3
"""Malformed HTTP/2 on the local h2c listener: the preface followed by bad frames gets a GOAWAY
with PROTOCOL_ERROR (frame type 0x7, error code 0x1) and the connection closes; a bad preface
is refused; the gateway keeps serving other connections (h2c and TLS)."""
import socket
import struct
import time

import harness
from harness import curl

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def exchange(port, data, timeout=5.0):
    """Sends |data|, reads until EOF or |timeout|; returns (frames, closed) where frames is a
    list of (type, flags, stream, payload)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    closed = False
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    finally:
        s.close()
    frames = []
    i = 0
    while i + 9 <= len(buf):
        ln = int.from_bytes(buf[i:i + 3], "big")
        ft, fl = buf[i + 3], buf[i + 4]
        sid = int.from_bytes(buf[i + 5:i + 9], "big") & 0x7FFFFFFF
        frames.append((ft, fl, sid, buf[i + 9:i + 9 + ln]))
        i += 9 + ln
    return frames, closed


def goaway_code(frames):
    for ft, fl, sid, p in frames:
        if ft == 0x7 and len(p) >= 8:
            return int.from_bytes(p[4:8], "big")
    return None


def main(t):
    gws = harness.federation(t, ["guangzhou"], [])
    gz = gws["guangzhou"]
    gz.start()
    port = gz.local_port

    frames, closed = exchange(port, PREFACE + EMPTY_SETTINGS, timeout=1.0)
    t.check(any(f[0] == 0x4 for f in frames) and goaway_code(frames) is None,
            "control: valid preface + SETTINGS -> server SETTINGS, no GOAWAY",
            [(f[0], f[1], f[2], f[3][:16]) for f in frames])

    cases = [
        # garbage frame bytes after a valid preface: HEADERS on stream 0
        ("HEADERS frame on stream 0", PREFACE + EMPTY_SETTINGS + frame(0x1, 0x5, 0, b"\x82\x84")),
        ("DATA frame on stream 0", PREFACE + EMPTY_SETTINGS + frame(0x0, 0x1, 0, b"garbage")),
        ("WINDOW_UPDATE increment 0 on the connection",
         PREFACE + EMPTY_SETTINGS + frame(0x8, 0x0, 0, b"\x00\x00\x00\x00")),
        ("garbage bytes after the preface", PREFACE + EMPTY_SETTINGS
         + b"\x00\x00\x08\x06\x00\x00\x00\x00\x01garbage!"),  # PING on stream 1
    ]
    for what, data in cases:
        frames, closed = exchange(port, data)
        code = goaway_code(frames)
        t.check(code == 0x1, "%s -> GOAWAY PROTOCOL_ERROR (got %s)" % (what, code),
                [(f[0], f[1], f[2], f[3][:24]) for f in frames])
        t.check(closed, "   connection closed by the gateway after GOAWAY")

    frames, closed = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
    code = goaway_code(frames)
    t.check(closed and code in (None, 0x1),
            "bad preface -> connection closed (GOAWAY %s)" % code, [(f[0], f[3][:24]) for f in frames])
    t.check(code == 0x1, "bad preface -> GOAWAY PROTOCOL_ERROR (docs/api.md)", frames)

    r = curl(t, gz.local_url("/healthz"), h2c=True)
    t.check(r.status == 200, "gateway keeps serving h2c after malformed connections", r)
    r = curl(t, gz.url("/healthz"), cacert=gz.bundle)
    t.check(r.status == 200, "gateway keeps serving TLS after malformed connections", r)
    t.check(gz.alive(), "gateway process alive")


if __name__ == "__main__":
    harness.run(main)

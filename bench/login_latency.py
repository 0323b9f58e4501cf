#!/usr/bin/env python3
"""Login latency through pgtenant, measured from a raw wire-protocol client.

One login = TCP connect + StartupMessage (key in options) + auth + wait for
ReadyForQuery + `SELECT 1` + Terminate + close. No driver, so nothing but
the proxy (and PostgreSQL behind it) is measured.

    login_latency.py PORT KEYDIR MODE N [LABEL]

MODE: `first` (the first key file, N times), `spread` (N keys drawn
uniformly from all key files), `each` (every key once, in order; N ignored).
Prints one JSON line: label, mode, n, p50/p90/p99/max in milliseconds.
Keys are read from files and never printed.
"""
import json
import math
import os
import random
import socket
import struct
import sys
import time


def read_until_ready(sock, buf, refusal_expected=False):
    """Consumes messages up to ReadyForQuery; raises on ErrorResponse
    unless one is expected."""
    while True:
        while len(buf) >= 5:
            tag = buf[0:1]
            (length,) = struct.unpack("!i", buf[1:5])
            if len(buf) < 1 + length:
                break
            body = bytes(buf[5 : 1 + length])
            del buf[: 1 + length]
            if tag == b"E" and not refusal_expected:
                fields = dict(
                    (f[:1], f[1:].decode(errors="replace"))
                    for f in body.split(b"\0")
                    if f
                )
                raise RuntimeError(f"{fields.get(b'C')}: {fields.get(b'M')}")
            if tag == b"Z":
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf.extend(chunk)


def login(port, key):
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        params = (
            b"user\0bench\0database\0app\0options\0-c pgtenant.api_key="
            + key
            + b"\0\0"
        )
        body = struct.pack("!i", 196608) + params
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        buf = bytearray()
        read_until_ready(sock, buf)
        q = b"SELECT 1\0"
        sock.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
        read_until_ready(sock, buf)
        sock.sendall(b"X" + struct.pack("!i", 4))
    finally:
        sock.close()
    return time.perf_counter() - t0


def pct(sorted_ms, p):
    """Nearest-rank percentile."""
    return sorted_ms[max(0, math.ceil(p * len(sorted_ms)) - 1)]


def main():
    port, keydir, mode, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    label = sys.argv[5] if len(sys.argv) > 5 else mode
    files = sorted(os.listdir(keydir))
    keys = []
    for f in files:
        with open(os.path.join(keydir, f), "rb") as fh:
            keys.append(fh.read().strip())
    rng = random.Random(42)
    if mode == "first":
        order = [keys[0]] * n
    elif mode == "spread":
        order = [rng.choice(keys) for _ in range(n)]
    elif mode == "each":
        order = list(keys)
    else:
        sys.exit(f"unknown mode {mode}")
    login(port, order[0])  # connection setup of the client side, not measured
    ms = sorted(login(port, k) * 1000 for k in order)
    print(
        json.dumps(
            {
                "label": label,
                "mode": mode,
                "keys": len(set(order)),
                "n": len(ms),
                "p50_ms": round(pct(ms, 0.50), 3),
                "p90_ms": round(pct(ms, 0.90), 3),
                "p99_ms": round(pct(ms, 0.99), 3),
                "max_ms": round(ms[-1], 3),
            }
        )
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Round trips of a statement that pgtenant answers itself.

    PGPASSWORD=<key> ping_local.py PORT SECONDS

Logs in with the key (options, as login_latency.py does), then for SECONDS
sends a cross-schema SELECT that the firewall refuses before any backend
sees it, and times each round trip. Only the proxy's event loop is on the
path: what it measures is how long that loop is busy elsewhere. Prints one
JSON line with n and p50/p99/p99.9/max in microseconds. The key comes from
the environment and is never printed.
"""
import json
import os
import socket
import struct
import sys
import time

from login_latency import read_until_ready


def main():
    port, secs = int(sys.argv[1]), float(sys.argv[2])
    key = os.environ["PGPASSWORD"].encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    params = b"user\0bench\0database\0bench\0options\0-c pgtenant.api_key=" + key + b"\0\0"
    body = struct.pack("!i", 196608) + params
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    buf = bytearray()
    read_until_ready(sock, buf)
    q = b"SELECT * FROM other_tenant.secrets\0"
    msg = b"Q" + struct.pack("!i", len(q) + 4) + q
    lat = []
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        t = time.perf_counter()
        sock.sendall(msg)
        read_until_ready(sock, buf, refusal_expected=True)
        lat.append((time.perf_counter() - t) * 1e6)
    sock.sendall(b"X" + struct.pack("!i", 4))
    sock.close()
    lat.sort()
    n = len(lat)
    pick = lambda p: round(lat[min(n - 1, int(n * p))])  # noqa: E731
    print(json.dumps({"n": n, "p50_us": pick(0.5), "p99_us": pick(0.99),
                      "p999_us": pick(0.999), "max_us": round(lat[-1])}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Added latency at one client, every target measured in the same moments.

    latency_ab.py HOLD_ENV MODE SECONDS [BLOCK] [TARGETS]

pgbench runs one target after another, seconds apart, and at one client
the machine's state (which core each process lands on, how deep the idle
cores sleep) drifts between runs by more than one proxy adds over another:
the added latency of one 5-second run moves by ±30 %. Here one process
holds a connection to every target of HOLD_ENV (the file `HOLD=1
bench/pgbench.sh` writes) and runs `pgbench -S`'s statement on them in
turn, BLOCK statements (default 100, a few ms) on each before moving to the
next, in a new random order every round. Every round thus yields one
paired sample of each target's added latency (its block's mean minus the
direct block's), all taken within a second. TARGETS (comma-separated)
picks some of HOLD_ENV's; direct is always one. SCALE (environment, 1 by
default) is the data's pgbench scale: ids are drawn from all its rows.

BLOCK: 1000 by default (~0.15 s). Much shorter blocks measure another
regime: a target that has just been idle for a few ms answers its first
statements at a different speed (on this VM the direct path is ~40 %
faster in blocks of 100 than in pgbench's steady stream), so the blocks
are long enough for each target to settle into the stream pgbench sees.

MODE is pgbench's -M: simple (Query), extended (unnamed Parse, Bind,
Describe, Execute, Sync) or prepared (named Parse once, then Bind,
Describe, Execute, Sync), the messages pgbench sends. The client speaks
the wire protocol itself (no driver): its own time per statement is the
same for every target and cancels out of the differences.

Prints one JSON line: per target the median block mean and the median
added latency in µs; per pool mode pgtenant's median added latency over
PgBouncer's and the median over rounds of pgtenant's block mean minus
PgBouncer's (direct cancels out of it), each with a bootstrap 95 %
interval over rounds (resampled as pairs). Passwords and keys come from
HOLD_ENV and are never printed.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import socket
import statistics
import struct
import sys
import time

from login_latency import read_until_ready

# pgbench -S draws aid from every row: 100,000 per scale unit. SCALE comes
# from the environment (bench/pgbench.sh passes its own).
ACCOUNTS = 100_000 * int(os.environ.get("SCALE", "1"))


def msg(tag, body):
    return tag + struct.pack("!i", len(body) + 4) + body


def read_msg(sock, buf):
    while True:
        if len(buf) >= 5:
            (n,) = struct.unpack("!i", buf[1:5])
            if len(buf) >= 1 + n:
                tag, body = buf[0:1], bytes(buf[5 : 1 + n])
                del buf[: 1 + n]
                return tag, body
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed during login")
        buf.extend(chunk)


def scram(sock, buf, password):
    """SCRAM-SHA-256 without channel binding (RFC 5802, 7677)."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    sock.sendall(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    tag, body = read_msg(sock, buf)
    if tag != b"R" or struct.unpack("!i", body[:4])[0] != 11:
        raise RuntimeError("expected SASLContinue")
    server_first = body[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    if not attrs["r"].startswith(nonce):
        raise RuntimeError("server nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac("sha256", password, base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_bare}".encode()
    sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    sock.sendall(msg(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode()))


def connect(env):
    sock = socket.create_connection((env["PGHOST"], int(env["PGPORT"])))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    params = f"user\0{env['PGUSER']}\0database\0{env['PGDATABASE']}\0application_name\0latency_ab\0\0"
    body = struct.pack("!i", 196608) + params.encode()  # protocol 3.0
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    buf = bytearray()
    password = env["PGPASSWORD"].encode()
    while True:
        tag, body = read_msg(sock, buf)
        if tag == b"E":
            raise RuntimeError("login refused: " + body.replace(b"\0", b" ").decode(errors="replace"))
        if tag != b"R":
            raise RuntimeError(f"unexpected {tag!r} during login")
        code = struct.unpack("!i", body[:4])[0]
        if code == 0:
            break
        if code == 3:
            sock.sendall(msg(b"p", password + b"\0"))
        elif code == 10:
            scram(sock, buf, password)
        elif code == 12:
            continue  # SASLFinal; AuthenticationOk follows
        else:
            raise RuntimeError(f"unsupported authentication request {code}")
    read_until_ready(sock, buf)
    return sock, buf


SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = "


def statement(mode, aid):
    """The bytes pgbench -S -M MODE sends for one transaction."""
    if mode == "simple":
        return msg(b"Q", (SQL + str(aid)).encode() + b"\0")
    value = str(aid).encode()
    stmt = b"P0_1" if mode == "prepared" else b""
    bind = msg(b"B", b"\0" + stmt + b"\0" + struct.pack("!hhi", 0, 1, len(value)) + value + struct.pack("!h", 0))
    return bind + msg(b"D", b"P\0") + msg(b"E", b"\0" + struct.pack("!i", 0)) + msg(b"S", b"")


def parse(mode):
    name = b"P0_1" if mode == "prepared" else b""
    return msg(b"P", name + b"\0" + (SQL + "$1").encode() + b"\0" + struct.pack("!h", 0))


def block(sock, buf, mode, n):
    """Mean µs of n statements, each sent once the last one's reply is in."""
    head = parse(mode) if mode == "extended" else b""
    t0 = time.perf_counter()
    for _ in range(n):
        sock.sendall(head + statement(mode, random.randint(1, ACCOUNTS)))
        read_until_ready(sock, buf)
    return (time.perf_counter() - t0) / n * 1e6


def boot_ci(samples, f, n=2000):
    """95 % bootstrap interval of f over resampled rounds."""
    vals = sorted(f(random.choices(samples, k=len(samples))) for _ in range(n))
    return vals[int(0.025 * n)], vals[int(0.975 * n) - 1]


def main():
    hold, mode, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    per_block = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    wanted = set(sys.argv[5].split(",")) | {"direct"} if len(sys.argv) > 5 else None
    targets = {}
    for line in open(hold):
        name, _, env = line.partition(" env: ")
        name = name.split()[0]
        if wanted is None or name in wanted:
            targets[name] = dict(kv.split("=", 1) for kv in env.split())
    if "direct" not in targets:
        raise SystemExit("latency_ab.py: HOLD_ENV has no direct target")
    conns = {t: connect(e) for t, e in targets.items()}
    for t, (sock, buf) in conns.items():
        if mode == "prepared":
            sock.sendall(parse(mode) + msg(b"S", b""))
            read_until_ready(sock, buf)
        block(sock, buf, mode, per_block)  # warm-up
    rounds = []
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        order = list(conns)
        random.shuffle(order)
        rounds.append({t: block(*conns[t], mode, per_block) for t in order})
    for sock, _ in conns.values():
        sock.sendall(msg(b"X", b""))
        sock.close()

    med = statistics.median
    out = {"mode": mode, "rounds": len(rounds), "per_block": per_block, "targets": {}, "ratios": {}}
    for t in conns:
        out["targets"][t] = {
            "mean_us": round(med(r[t] for r in rounds), 2),
            "added_us": None if t == "direct" else round(med(r[t] - r["direct"] for r in rounds), 2),
        }
    for pool in ("session", "tx"):
        a, b = f"pgt-{pool}", f"pgb-{pool}"
        if a not in conns or b not in conns:
            continue
        pairs = [(r[a] - r["direct"], r[b] - r["direct"]) for r in rounds]

        def ratio(ps):
            den = med(q for _, q in ps)
            return med(p for p, _ in ps) / den if den > 0 else float("inf")

        lo, hi = boot_ci(pairs, ratio)
        diff = [p - q for p, q in pairs]
        dlo, dhi = boot_ci(diff, med)
        out["ratios"][pool] = {
            "ratio": round(ratio(pairs), 3), "ratio_ci95": [round(lo, 3), round(hi, 3)],
            "diff_us": round(med(diff), 2), "diff_ci95": [round(dlo, 2), round(dhi, 2)],
            "rounds_pgt_lower": sum(d < 0 for d in diff),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

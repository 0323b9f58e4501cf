#!/usr/bin/env python3
"""Idle-client load generator for pgtenant (asyncio, stdlib only).

Opens N client connections to the proxy, brings each to a given stage and
holds them, then reports the proxy's RSS (VmRSS of --pid) before, with the
clients, and after they closed, as one JSON line.

Stages:
  auth    StartupMessage with options='-c pgtenant.api_key=KEY', up to
          ReadyForQuery: an authenticated idle session (the real target).
  prompt  StartupMessage without a key: the proxy asks for a cleartext
          password and the client never answers (pre-auth footprint).
  tcp     TCP connected, nothing sent.

--probe N: transaction-pooling probe. Logs in N clients at once (use
pool_size + 2), keeps them all open and runs SELECT 1 on each. In session
mode the clients beyond the pool wait for a connection and fail; in
transaction mode all succeed. Exit status 0 = transaction pooling works.

Every loop is bounded: --deadline seconds for the whole connect phase.
Traffic goes only to --host, which must be a loopback address.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import struct
import sys
import time


def startup_msg(user, db, key):
    params = [("user", user), ("database", db), ("application_name", "idle_clients")]
    if key:
        params.append(("options", f"-c pgtenant.api_key={key}"))
    body = struct.pack("!i", 196608)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def query_msg(sql):
    b = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(b) + 4) + b


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '?')}"


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    (ln,) = struct.unpack("!i", hdr[1:])
    body = await reader.readexactly(ln - 4)
    return hdr[0:1], body


class Conn:
    __slots__ = ("r", "w")

    def __init__(self, r, w):
        self.r, self.w = r, w

    def close(self):
        try:
            self.w.write(b"X\0\0\0\x04")
        except Exception:
            pass
        self.w.close()


async def login(a, stage):
    r, w = await asyncio.open_connection(a.host, a.port)
    if stage == "tcp":
        return Conn(r, w)
    w.write(startup_msg(a.user, a.db, a.key if stage == "auth" else None))
    await w.drain()
    while True:
        tag, body = await read_msg(r)
        if tag == b"R":
            (code,) = struct.unpack("!i", body[:4])
            if code == 3 and stage == "prompt":
                return Conn(r, w)
            if code != 0:
                w.close()
                raise RuntimeError(f"unexpected authentication request {code}")
        elif tag == b"E":
            w.close()
            raise RuntimeError(error_text(body))
        elif tag == b"Z":
            return Conn(r, w)


async def simple_query(c, sql):
    c.w.write(query_msg(sql))
    await c.w.drain()
    err = None
    while True:
        tag, body = await read_msg(c.r)
        if tag == b"E":
            err = error_text(body)
        elif tag == b"Z":
            if err:
                raise RuntimeError(err)
            return


def rss_kib(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


async def open_many(a, n, stage, deadline):
    sem = asyncio.Semaphore(a.concurrency)
    conns, errors = [], {}

    async def one():
        async with sem:
            left = deadline - time.monotonic()
            if left <= 0:
                errors["deadline"] = errors.get("deadline", 0) + 1
                return
            try:
                conns.append(await asyncio.wait_for(login(a, stage), min(left, a.timeout)))
            except Exception as e:  # noqa: BLE001 - counted and reported
                k = f"{type(e).__name__}: {e}"[:160]
                errors[k] = errors.get(k, 0) + 1

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors


async def main_async(a):
    deadline = time.monotonic() + a.deadline
    if a.probe:
        conns, errors = await open_many(a, a.probe, "auth", deadline)
        ok = 0
        if not errors:
            async def q(c):
                nonlocal ok
                try:
                    await asyncio.wait_for(simple_query(c, "SELECT 1"), a.timeout)
                    ok += 1
                except Exception as e:  # noqa: BLE001
                    k = f"query: {type(e).__name__}: {e}"[:160]
                    errors[k] = errors.get(k, 0) + 1
            await asyncio.gather(*(q(c) for c in conns))
        for c in conns:
            c.close()
        res = {"probe": a.probe, "logged_in": len(conns), "queried": ok, "errors": errors}
        res["transaction_pooling"] = ok == a.probe
        errs = "; ".join(f"{n}x {k}" for k, n in errors.items())
        res["summary"] = (
            f"{a.probe} clients at once: {len(conns)} logged in, {ok} answered SELECT 1"
            + (f" ({errs})" if errs else "")
        )
        print(json.dumps(res))
        return 0 if res["transaction_pooling"] else 1

    # Warm-up: one complete session so the registry pool, key cache and the
    # tenant's backend pool exist before the baseline.
    if a.stage == "auth":
        try:
            c = await asyncio.wait_for(login(a, "auth"), a.timeout)
            await asyncio.wait_for(simple_query(c, "SELECT 1"), a.timeout)
            c.close()
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"label": a.label, "error": f"warm-up login failed: {e}"}))
            return 1
    await asyncio.sleep(1.0)
    before = rss_kib(a.pid)
    t0 = time.monotonic()
    conns, errors = await open_many(a, a.n, a.stage, deadline)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(a.hold)
    with_clients = rss_kib(a.pid)
    queried = None
    after_query = None
    if a.query_all and a.stage == "auth" and conns:
        queried = 0
        sem = asyncio.Semaphore(a.concurrency)

        async def q(c):
            nonlocal queried
            async with sem:
                try:
                    await asyncio.wait_for(simple_query(c, "SELECT 1"), a.timeout)
                    queried += 1
                except Exception as e:  # noqa: BLE001
                    k = f"query: {type(e).__name__}: {e}"[:160]
                    errors[k] = errors.get(k, 0) + 1

        await asyncio.gather(*(q(c) for c in conns))
        # Still connected, idle again: what buffers a client keeps after use.
        await asyncio.sleep(1.0)
        after_query = rss_kib(a.pid)
    for c in conns:
        c.close()
    await asyncio.sleep(2.0)
    after = rss_kib(a.pid)

    def per_client(rss):
        return (rss - before) / len(conns) if conns and before and rss else None

    res = {
        "label": a.label,
        "stage": a.stage,
        "wanted": a.n,
        "connected": len(conns),
        "connect_seconds": round(connect_s, 2),
        "rss_before_kib": before,
        "rss_with_clients_kib": with_clients,
        "rss_after_query_kib": after_query,
        "kib_per_client_after_query": per_client(after_query),
        "rss_after_close_kib": after,
        "kib_per_client": per_client(with_clients),
        "queried": queried,
        "errors": errors,
        "note": a.note,
    }
    print(json.dumps(res))
    return 0 if len(conns) == a.n else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="idle")
    p.add_argument("--db", default="bench")
    p.add_argument("--key", default=os.environ.get("PGTENANT_KEY", ""))
    p.add_argument("--pid", type=int, help="proxy pid, for VmRSS")
    p.add_argument("-n", type=int, default=10_000)
    p.add_argument("--stage", choices=["auth", "prompt", "tcp"], default="auth")
    p.add_argument("--concurrency", type=int, default=64, help="logins in flight at once")
    p.add_argument("--timeout", type=float, default=10.0, help="per login / query, seconds")
    p.add_argument("--deadline", type=float, default=300.0, help="whole connect phase, seconds")
    p.add_argument("--hold", type=float, default=3.0, help="seconds to hold before measuring")
    p.add_argument("--query-all", action="store_true", help="run SELECT 1 on every held client afterwards")
    p.add_argument("--probe", type=int, default=0, help="transaction-pooling probe with this many clients")
    p.add_argument("--label", default="")
    p.add_argument("--note", default="")
    a = p.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        sys.exit("idle_clients.py only connects to loopback addresses")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + 256 if not a.probe else a.probe + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    return asyncio.run(main_async(a))


if __name__ == "__main__":
    sys.exit(main())

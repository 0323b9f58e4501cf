"""PgBouncer's own RSS per idle client, for scale next to pgtenant's.

    python3 bench/pgbouncer_idle.py N PORT PID USER PASSWORD

Opens N clients that log in (cleartext password, as bench/pgbench.sh
configures PgBouncer) and stay idle, then prints one JSON line with
PgBouncer's RSS before, with and after them. Not a target: the issue's
idle row is pgtenant's; this is what it is compared with.
"""

import asyncio
import json
import resource
import struct
import sys
import time

DEADLINE_S = 300
CONCURRENT_LOGINS = 64


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


async def login(port, user, password):
    """A logged-in connection's writer, once ReadyForQuery came."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0bench\0\0"
    w.write(struct.pack("!i", len(body) + 4) + body)
    await w.drain()
    while True:
        head = await r.readexactly(5)
        msg = await r.readexactly(struct.unpack("!i", head[1:])[0] - 4)
        kind = head[:1]
        if kind == b"R" and struct.unpack("!i", msg[:4])[0] == 3:
            p = password.encode() + b"\0"
            w.write(b"p" + struct.pack("!i", len(p) + 4) + p)
            await w.drain()
        elif kind == b"E":
            raise RuntimeError(msg.decode(errors="replace"))
        elif kind == b"Z":
            return w


async def main(n, port, pid, user, password):
    gate = asyncio.Semaphore(CONCURRENT_LOGINS)
    conns, errors = [], 0
    end = time.monotonic() + DEADLINE_S

    async def one():
        nonlocal errors
        async with gate:
            left = max(0.1, min(10, end - time.monotonic()))
            try:
                conns.append(await asyncio.wait_for(login(port, user, password), left))
            except Exception:
                errors += 1

    # One login first, so that the baseline has PgBouncer's pools set up.
    (await login(port, user, password)).close()
    await asyncio.sleep(1)
    before = rss_kib(pid)
    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(3)
    with_clients = rss_kib(pid)
    for w in conns:
        w.close()
    await asyncio.sleep(2)
    print(json.dumps({
        "label": f"PgBouncer {n} idle clients, transaction mode (comparison)",
        "wanted": n,
        "connected": len(conns),
        "rss_before_kib": before,
        "rss_with_clients_kib": with_clients,
        "rss_after_close_kib": rss_kib(pid),
        "kib_per_client": (with_clients - before) / len(conns) if conns else None,
        "errors": errors,
        "note": "not a target; for scale",
        "comparison": True,
    }))


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n, port, pid, user, password = sys.argv[1:6]
    asyncio.run(main(int(n), int(port), int(pid), user, password))

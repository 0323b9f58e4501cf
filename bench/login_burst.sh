#!/usr/bin/env bash
# What a burst of backend logins costs the sessions already relaying.
#
#   bench/login_burst.sh                  # REPS=8 CLIENTS=60
#   SKIP_BUILD=1 REPS=4 bench/login_burst.sh
#
# Brings up PostgreSQL and pgtenant in session mode through
# `HOLD=1 bench/pgbench.sh`, with idle backend connections closed after
# 300 ms and none kept warm, so that the pool is empty again before each
# repetition. Each repetition: one client pings the proxy with a statement
# the firewall refuses locally (bench/ping_local.py: nothing but the
# proxy's event loop is on its path) while `pgbench -c CLIENTS -t 20`
# connects CLIENTS new clients at once, each of which needs a new backend
# connection (a SCRAM login). Prints, per repetition and as medians, the
# ping's p50/p99/p99.9/max during the burst and pgbench's initial
# connection time; writes them to bench/results/<date>-<host>-login-burst.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

REPS=${REPS:-8}
CLIENTS=${CLIENTS:-60}
OUT=${OUT:-bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)-login-burst.md}

WORK=$(mktemp -d /tmp/pgtenant-burst.XXXXXX)
HOLD_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  release_targets
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting PostgreSQL and pgtenant (log: $WORK/bench.log)"
hold_targets "$WORK" TARGETS="pgt-session" \
  PGT_EXTRA_ENV="PGTENANT_SERVER_IDLE_TIMEOUT_MS=300 PGTENANT_POOL_MIN_IDLE=0" \
  || { log "pgtenant did not come up"; exit 1; }
# shellcheck disable=SC2046 # the target's env: word-split on purpose
export $(grep '^pgt-session ' "$WORK/hold.env" | sed 's/.*env: //')

rows=$WORK/rows.jsonl
for r in $(seq "$REPS"); do
  sleep 2 # the reaper (every second) empties the pool
  python3 bench/ping_local.py "$PGPORT" 1.5 >"$WORK/ping.json" &
  ping=$!
  sleep 0.4
  pgbench -n -S -c "$CLIENTS" -j 2 -t 20 >"$WORK/burst.out" 2>&1 || { cat "$WORK/burst.out" >&2; exit 1; }
  wait $ping
  conn=$(sed -n 's/^initial connection time = \([0-9.]*\) ms/\1/p' "$WORK/burst.out")
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["rep"]=int(sys.argv[2]); d["connect_ms"]=float(sys.argv[3]); print(json.dumps(d))' \
    "$WORK/ping.json" "$r" "$conn" | tee -a "$rows" >&2
done

code=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+dirty")
python3 - "$rows" "$OUT" "$code" "$REPS" "$CLIENTS" <<'PY'
import json, statistics, sys, datetime as dt
rows = [json.loads(l) for l in open(sys.argv[1])]
out, code, reps, clients = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
cols = ["p50_us", "p99_us", "p999_us", "max_us", "connect_ms"]
lines = [
    "# Pings during a burst of backend logins",
    "",
    f"`REPS={reps} CLIENTS={clients} bench/login_burst.sh`, "
    f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, code {code}.",
    f"A local ping (refused by the firewall, no backend) while {clients} new clients "
    "log in at once on an empty session-mode pool; connect = pgbench's initial connection time.",
    "",
    "| rep | pings | p50 µs | p99 µs | p99.9 µs | max µs | connect ms |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    lines.append(f"| {r['rep']} | {r['n']} | " + " | ".join(str(r[c]) for c in cols) + " |")
lines.append("| median | | " + " | ".join(f"{statistics.median(r[c] for r in rows):g}" for c in cols) + " |")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
log "written: $OUT"

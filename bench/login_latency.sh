#!/usr/bin/env bash
# Login latency vs number of tenants (issue 3).
#
#   bench/login_latency.sh                # TENANTS=1000 N=500
#   TENANTS=200 N=200 bench/login_latency.sh
#   SKIP_BUILD=1 bench/login_latency.sh   # use target/release/pgtenant as is
#
# Starts a throwaway PostgreSQL and a release-built pgtenant, then:
#  1. registry with one tenant (+ default): N logins with its key;
#  2. creates the other TENANTS-1 tenants with a key each through the CLI,
#     one `tenant create` + `key issue` process pair per tenant (timed);
#  3. N logins with the first tenant's key again (registry now large);
#  4. one login per tenant, in order (cold pools: includes the backend
#     connect of each tenant's first connection);
#  5. N logins with keys drawn uniformly from all tenants (warm pools).
# Each step runs against a proxy with the default key cache (1 s) and one
# with the cache off (cache_ttl_ms = 0: every login reads the registry).
# One login = connect + startup/auth + SELECT 1 + Terminate (see
# login_latency.py). Everything started is stopped on exit (trap). Keys stay
# in a private temp dir and are never printed. Durability is off in the
# throwaway cluster: it measures the proxy, not fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TENANTS=${TENANTS:-1000}
N=${N:-500}

[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet
PGBIN=$(pg_bindir)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/pgtenant-login-bench.XXXXXX)
chmod 711 "$WORK"
mkdir -m 700 "$WORK/keys"
cp target/release/pgtenant "$WORK/pgtenant"
BIN=$WORK/pgtenant
PGDIR=$WORK/pg
PROXY_PID=""
PG_STARTED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
  [ $PG_STARTED = 1 ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ PostgreSQL
mkdir "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
PGPORT=$(free_port)
PGPW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "$PGPW" >"$PGDIR/pw"
[ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR/pw"
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --pwfile="$PGDIR/pw" \
  --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C >/dev/null
rm -f "$PGDIR/pw"
# Each tenant's warm pool holds one backend connection.
cat >>"$PGDIR/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDIR'
max_connections = $((TENANTS + 100))
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w start >/dev/null
PG_STARTED=1
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"

export PGTENANT_BACKEND_URL="postgres://postgres:$PGPW@127.0.0.1:$PGPORT/app"
export PGTENANT_BACKEND_SECRET
PGTENANT_BACKEND_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
sql() { PGPASSWORD=$PGPW psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -XAtqc "$1"; }
sql "CREATE DATABASE app"
"$BIN" init >/dev/null

name() { printf 't%04d' "$1"; }
create() {  # create I: tenant + key, key into $WORK/keys
  local t
  t=$(name "$1")
  "$BIN" tenant create "$t" >/dev/null 2>&1
  "$BIN" key issue --tenant "$t" 2>/dev/null >"$WORK/keys/$t"
}

# ------------------------------------------------------------ proxies
start_proxy() {  # start_proxy CACHE_TTL_MS
  PROXY_PORT=$(free_port)
  PGTENANT_LISTEN_ADDR=127.0.0.1:$PROXY_PORT \
    PGTENANT_REGISTRY_CACHE_TTL_MS=$1 \
    PGTENANT_MAX_BACKEND_CONNECTIONS=$((TENANTS + 20)) \
    PGTENANT_LOG_LEVEL=warn \
    "$BIN" serve >>"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$WORK/proxy.log" >&2
  return 1
}
stop_proxy() {
  kill "$PROXY_PID"
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=""
  # Its backend connections go away asynchronously; the next proxy needs the room.
  local i
  for i in $(seq 100); do
    [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")" -le 2 ] && return 0
    sleep 0.1
  done
}

RESULTS=$WORK/results.jsonl
measure() {  # measure MODE COUNT LABEL
  python3 bench/login_latency.py "$PROXY_PORT" "$WORK/keys" "$1" "$2" "$3" | tee -a "$RESULTS" >&2
}

create 1
for ttl in 1000 0; do
  start_proxy $ttl
  measure first "$N" "1 tenant, same key, cache_ttl_ms=$ttl"
  stop_proxy
done

log "creating $((TENANTS - 1)) more tenants with a key each (CLI loop)"
t0=$(date +%s.%N)
for i in $(seq 2 "$TENANTS"); do create "$i"; done
t1=$(date +%s.%N)
CREATE_S=$(python3 -c "print(round($t1 - $t0, 1))")
log "created in ${CREATE_S} s"

for ttl in 1000 0; do
  start_proxy $ttl
  measure first "$N" "$TENANTS tenants, same key, cache_ttl_ms=$ttl"
  measure each "$TENANTS" "$TENANTS tenants, each once (cold pools), cache_ttl_ms=$ttl"
  measure spread "$N" "$TENANTS tenants, spread (warm pools), cache_ttl_ms=$ttl"
  stop_proxy
done

echo
echo "## Login latency (connect + auth + SELECT 1 + close), $(nproc) cores"
echo
echo "Creating $((TENANTS - 1)) tenants + keys through the CLI: ${CREATE_S} s"
echo
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"| {'scenario':<58} | {'n':>5} | {'keys':>5} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} |")
print(f"|{'-' * 60}|{'-' * 7}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
for r in rows:
    print(f"| {r['label']:<58} | {r['n']:>5} | {r['keys']:>5} | {r['p50_ms']:>7} | {r['p90_ms']:>7} | {r['p99_ms']:>7} |")
EOF

#!/usr/bin/env bash
# pgtenant vs PgBouncer vs direct PostgreSQL, side by side, in one command.
#
#   bench/pgbench.sh                      # REPS=3 DURATION=10, ~45 min on 2 cores
#   REPS=2 DURATION=8 IDLE=10000 PROFILE=1 bench/pgbench.sh
#   QUICK=1 bench/pgbench.sh              # 2-second smoke run of every row
#
# Starts a throwaway PostgreSQL, PgBouncer (session + transaction) and
# pgtenant (session + transaction, release build), loads `pgbench -i` into
# the schema of tenant `bench` through pgtenant, then runs `pgbench -S` and
# the TPC-B-like script through every target x -M simple|extended|prepared x
# clients, interleaved over repetitions. Writes bench/results/<date>-<host>.md
# (+ .jsonl with every run). Everything it starts is stopped on exit, error
# or Ctrl-C. Traffic goes to 127.0.0.1 only. See bench/README.md.
#
# Knobs (environment): REPS DURATION QUICK SCALE CLIENTS MODES SCRIPTS
# TARGETS CONNECT(1) CONNECT_CLIENTS("1 16") AB_SECONDS(40: per -M, for the
# interleaved 1-client latency of bench/latency_ab.py; 0 skips) IDLE(0) IDLE_STAGE(auth)
# PROFILE(0) PROFILE_SECONDS(10) PROFILE_TARGET POOL_SIZE TX_POOL_SIZE(16) PGT_EXTRA_ENV
# STEAL_RETRY(1: a run that lost ≥ 5 % to the hypervisor's steal is run again, once,
# after waiting up to STEAL_WAIT(60) s for a calm 2-second pgbench probe)
# FIREWALL_MODE(enforce) SKIP_BUILD(0) KEEP(0) HOLD(0: 1 keeps the targets up for
# profiling by hand; Ctrl-C or kill -TERM stops) OUT(results file)
# IDLE_WRAPPER: command prefix for the idle-footprint instance only, for
# diagnosis, e.g. IDLE_WRAPPER="valgrind --tool=massif --massif-out-file=/tmp/m.out"
# PGT_WRAPPER / PGB_WRAPPER: command prefix for the measured pgtenant /
# PgBouncer instances (bench/instructions.sh runs them under callgrind).
# HOLD_FILE: with HOLD=1, where to write the targets' pids and env.
# PGO(0: 1 measures the profile-guided build of scripts/pgo.sh, built
# first unless SKIP_BUILD=1) PGT_BIN(target/release/pgtenant: the pgtenant
# binary measured, e.g. an older commit's for an A/B; not rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; DURATION=${DURATION:-2}; SCALE=${SCALE:-1}; AB_SECONDS=${AB_SECONDS:-3}
fi
REPS=${REPS:-3}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"1 16 64"}
MODES=${MODES:-"simple extended prepared"}
SCRIPTS=${SCRIPTS:-"select tpcb"}
TARGETS=${TARGETS:-"direct pgb-session pgb-tx pgt-session pgt-tx"}
CONNECT=${CONNECT:-1}
CONNECT_CLIENTS=${CONNECT_CLIENTS:-"1 16"}
AB_SECONDS=${AB_SECONDS:-40}
IDLE=${IDLE:-0}
IDLE_STAGE=${IDLE_STAGE:-auth}
PROFILE=${PROFILE:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
# Times a run that lost 5 % or more to steal is run again (0: never), and
# how long (s) to wait at most for a calm probe first.
STEAL_RETRY=${STEAL_RETRY:-1}
STEAL_WAIT=${STEAL_WAIT:-60}
TX_POOL_SIZE=${TX_POOL_SIZE:-16}
FIREWALL_MODE=${FIREWALL_MODE:-enforce}
SKIP_BUILD=${SKIP_BUILD:-0}
# Extra VAR=VALUE words for every pgtenant instance, e.g. TOKIO_WORKER_THREADS=1.
PGT_EXTRA_ENV=${PGT_EXTRA_ENV:-}
KEEP=${KEEP:-0}
MAXC=1; for c in $CLIENTS $CONNECT_CLIENTS; do [ "$c" -gt "$MAXC" ] && MAXC=$c; done
# Session pooling needs one server connection per client.
POOL_SIZE=${POOL_SIZE:-$MAXC}
read -r -a TGT <<<"$TARGETS"

die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- packages
need_packages postgresql postgresql-contrib pgbouncer
[ "$PROFILE" = 1 ] && need_packages linux-perf strace
command -v python3 >/dev/null || need_packages python3
PGBIN=$(pg_bindir)
PGBENCH=$PGBIN/pgbench; [ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench)
PSQL=$PGBIN/psql; [ -x "$PSQL" ] || PSQL=$(command -v psql)
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
PGB_VERSION=$("$PGBOUNCER" --version | head -1 | awk '{print $2}')
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
PGB_PREPARED=0; version_ge "$PGB_VERSION" 1.21 && PGB_PREPARED=1

PGT_BIN=${PGT_BIN:-}
if [ "${PGO:-0}" = 1 ] && [ -z "$PGT_BIN" ]; then
  if [ "$SKIP_BUILD" != 1 ]; then
    log "building pgtenant with profile-guided optimisation (scripts/pgo.sh, ~12 min)"
    bash scripts/pgo.sh
  fi
  PGT_BIN=target/pgo/pgtenant
fi
if [ "$SKIP_BUILD" != 1 ] && [ -z "$PGT_BIN" ]; then
  log "building pgtenant (release)"
  cargo build --release --quiet --bin pgtenant
fi
PGT_BIN=${PGT_BIN:-target/release/pgtenant}
[ -x "$PGT_BIN" ] || die "$PGT_BIN missing (build failed?)"

# ------------------------------------------------------------ work + cleanup
# Raise the fd limit for the proxies and the idle-client generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d /tmp/pgtenant-bench.XXXXXX)
chmod 755 "$WORK"
IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1
[ $IS_ROOT = 1 ] && chown postgres: "$WORK"
# A private copy: a rebuild during the run must not change what is measured.
cp "$PGT_BIN" "$WORK/pgtenant"
BIN=$WORK/pgtenant
# What is measured, as of now: sources edited during the run are not in it.
CODE=$(git rev-parse --short HEAD)
[ -n "$(git status --porcelain -- src Cargo.toml)" ] && CODE="$CODE + uncommitted changes"
# (A binary named by hand may be an older commit's: it says so itself.)
[ "$PGT_BIN" = target/release/pgtenant ] && [ -n "$(find src Cargo.toml -newer "$PGT_BIN" -print -quit)" ] \
  && CODE="$CODE (binary older than the sources: SKIP_BUILD=1)"
case $PGT_BIN in
  target/release/pgtenant) ;;
  target/pgo/pgtenant) CODE="$CODE, profile-guided build (scripts/pgo.sh)" ;;
  *) CODE="$CODE, binary $PGT_BIN" ;;
esac

declare -A PIDS=() STOPSIG=() LOGS=()
ORDER=()

alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# spawn NAME STOP-SIGNAL LOGFILE CMD...: runs CMD in its own session and
# process group; PIDS[NAME] is its pid (= process group id).
spawn() {
  local name=$1 sig=$2 logf=$3; shift 3
  local pidf=$WORK/$name.pid
  rm -f "$pidf"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$@" >"$logf" 2>&1 </dev/null &
  local i
  for i in $(seq 100); do [ -s "$pidf" ] && break; sleep 0.05; done
  PIDS[$name]=$(cat "$pidf")
  STOPSIG[$name]=$sig
  LOGS[$name]=$logf
  ORDER+=("$name")
}

stop_proc() {
  local name=$1 pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  if alive "$pid"; then
    kill -"${STOPSIG[$name]}" "$pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  fi
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "${BG_PGBENCH:-}" ] && kill -- "$BG_PGBENCH" 2>/dev/null
  [ -n "${BG_STRACE:-}" ] && kill -INT "$BG_STRACE" 2>/dev/null
  [ -n "${HOLD_SLEEP:-}" ] && kill "$HOLD_SLEEP" 2>/dev/null
  local i
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do stop_proc "${ORDER[$i]}"; done
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM

# Prefix that runs a command as the postgres OS user when we are root, by
# exec (no intermediate process, so the pid we keep is the server's).
AS_PG=()
[ $IS_ROOT = 1 ] && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

wait_port() {  # wait_port NAME PORT: until it accepts TCP, or the process died
  local name=$1 port=$2 i
  for i in $(seq 200); do
    if ! alive "${PIDS[$name]:-}"; then return 1; fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- postgres
PGPORT=$(free_port)
PGPW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
MAXCONN=$((POOL_SIZE * 3 + TX_POOL_SIZE * 2 + 150))
log "PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PGPORT, work dir $WORK"
echo "$PGPW" >"$WORK/pw"; [ $IS_ROOT = 1 ] && chown postgres "$WORK/pw"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres --pwfile="$WORK/pw" \
  --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
rm -f "$WORK/pw"
cat >>"$WORK/data/postgresql.conf" <<EOF
# bench/pgbench.sh: throwaway, tuned for benchmarking, durability off
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
max_connections = $MAXCONN
shared_buffers = 512MB
work_mem = 8MB
maintenance_work_mem = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
wal_buffers = 16MB
checkpoint_timeout = 30min
max_wal_size = 8GB
autovacuum = off
jit = off
log_min_messages = warning
log_connections = off
password_encryption = 'scram-sha-256'
EOF
spawn postgres INT "$WORK/postgres.log" "${AS_PG[@]}" "$PGBIN/postgres" -D "$WORK/data"
wait_port postgres "$PGPORT" || { tail -20 "$WORK/postgres.log" >&2; die "PostgreSQL did not start"; }

su_psql() { PGPASSWORD=$PGPW "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
for i in $(seq 50); do su_psql -d postgres -tAc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
su_psql -d postgres -c "CREATE DATABASE bench"

export PGTENANT_BACKEND_URL="postgres://postgres:$PGPW@127.0.0.1:$PGPORT/bench"
export PGTENANT_BACKEND_SECRET="$SECRET"
export PGTENANT_LOG_LEVEL=${PGTENANT_LOG_LEVEL:-warn}
export PGTENANT_FIREWALL_MODE=$FIREWALL_MODE
unset PGTENANT_CONFIG PGSERVICE PGSERVICEFILE PGOPTIONS PGHOSTADDR PGPASSFILE || true
"$BIN" init >/dev/null
"$BIN" tenant create bench >/dev/null
KEY=$("$BIN" key issue --tenant bench --name bench 2>/dev/null)
ROLE=tenant_bench
ROLEPW=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$SECRET" "$ROLE")

# ---------------------------------------------------------------- pgtenant
declare -A PORT=()
PORT[direct]=$PGPORT
start_pgtenant() {  # NAME MODE POOL [VAR=VALUE...]
  local name=$1 mode=$2 pool=$3; shift 3
  PORT[$name]=$(free_port)
  local wrap=()
  if [ "$name" = pgt-idle ]; then
    [ -n "${IDLE_WRAPPER:-}" ] && read -r -a wrap <<<"$IDLE_WRAPPER"
  elif [ -n "${PGT_WRAPPER:-}" ]; then
    read -r -a wrap <<<"$PGT_WRAPPER"
  fi
  spawn "$name" TERM "$WORK/$name.log" env \
    PGTENANT_LISTEN_ADDR="127.0.0.1:${PORT[$name]}" \
    PGTENANT_POOL_MODE="$mode" PGTENANT_POOL_SIZE="$pool" \
    PGTENANT_MAX_BACKEND_CONNECTIONS=$((pool + 8)) $PGT_EXTRA_ENV "$@" "${wrap[@]}" "$BIN" serve
  wait_port "$name" "${PORT[$name]}"
}

PGT_TX_REASON=""
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
# pgt-session always runs: the data is loaded through it.
start_pgtenant pgt-session session "$POOL_SIZE" \
  || { tail -20 "$WORK/pgt-session.log" >&2; die "pgtenant (session) did not start"; }
if has_target pgt-tx; then
  if ! start_pgtenant pgt-tx transaction "$TX_POOL_SIZE"; then
    PGT_TX_REASON="pgtenant refused PGTENANT_POOL_MODE=transaction: $(grep -v '^\s*$' "$WORK/pgt-tx.log" | tail -1 | cut -c1-160)"
    stop_proc pgt-tx
  fi
fi

# ----------------------------------------------------------------- pgbench -i
log "loading pgbench -i -s $SCALE into schema tenant_bench, through pgtenant"
PGSSLMODE=disable PGGSSENCMODE=disable PGPASSWORD=$KEY "$PGBENCH" -i -s "$SCALE" -q \
  -h 127.0.0.1 -p "${PORT[pgt-session]}" -U bench bench >"$WORK/init.log" 2>&1 \
  || { cat "$WORK/init.log" >&2; tail -20 "$WORK/pgt-session.log" >&2; die "pgbench -i through pgtenant failed"; }
owner=$(su_psql -d bench -tAc "select tableowner||'.'||schemaname from pg_tables where tablename='pgbench_accounts'")
[ "$owner" = "tenant_bench.tenant_bench" ] || die "pgbench tables landed in $owner, expected tenant_bench.tenant_bench"
su_psql -d bench -c "CHECKPOINT" >/dev/null

if has_target pgt-tx && [ -z "$PGT_TX_REASON" ]; then
  # Pool + 2 clients logged in at once, then SELECT 1 on each: only
  # transaction pooling serves them all.
  probe=$(python3 bench/idle_clients.py --port "${PORT[pgt-tx]}" --key "$KEY" --probe $((TX_POOL_SIZE + 2)) \
    --timeout 12 --deadline 60 2>&1) \
    || PGT_TX_REASON="PGTENANT_POOL_MODE=transaction is accepted but not functional: $(tail -1 <<<"$probe" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"])' 2>/dev/null || tail -c 200 <<<"$probe")"
  if [ -n "$PGT_TX_REASON" ]; then stop_proc pgt-tx; fi
fi
[ -n "$PGT_TX_REASON" ] && log "pgt-tx rows will be n/a: $PGT_TX_REASON"

# ---------------------------------------------------------------- pgbouncer
start_pgbouncer() {  # NAME MODE POOL
  local name=$1 mode=$2 pool=$3 dir=$WORK/$1
  mkdir -p "$dir"
  PORT[$name]=$(free_port)
  printf '"%s" "%s"\n' "$ROLE" "$ROLEPW" >"$dir/users.txt"
  {
    echo "[databases]"
    echo "bench = host=127.0.0.1 port=$PGPORT dbname=bench"
    echo "[pgbouncer]"
    echo "listen_addr = 127.0.0.1"
    echo "listen_port = ${PORT[$name]}"
    echo "unix_socket_dir ="
    echo "auth_type = plain"
    echo "auth_file = $dir/users.txt"
    echo "pool_mode = $mode"
    echo "default_pool_size = $pool"
    echo "max_client_conn = $((IDLE + 2000))"
    echo "server_reset_query = DISCARD ALL"
    echo "log_connections = 0"
    echo "log_disconnections = 0"
    echo "stats_period = 600"
    echo "ignore_startup_parameters = extra_float_digits"
    [ "$PGB_PREPARED" = 1 ] && echo "max_prepared_statements = 200"
  } >"$dir/pgbouncer.ini"
  chmod 600 "$dir/users.txt"
  [ $IS_ROOT = 1 ] && chown -R postgres: "$dir"
  local wrap=()
  [ -n "${PGB_WRAPPER:-}" ] && read -r -a wrap <<<"$PGB_WRAPPER"
  spawn "$name" TERM "$dir/pgbouncer.log" "${AS_PG[@]}" "${wrap[@]}" "$PGBOUNCER" "$dir/pgbouncer.ini"
  wait_port "$name" "${PORT[$name]}" || { tail -5 "$dir/pgbouncer.log" >&2; die "pgbouncer ($mode) did not start"; }
}
has_target pgb-session && start_pgbouncer pgb-session session "$POOL_SIZE"
has_target pgb-tx && start_pgbouncer pgb-tx transaction "$TX_POOL_SIZE"

# ------------------------------------------------------------------- runs
target_env() {
  local common="PGHOST=127.0.0.1 PGDATABASE=bench PGSSLMODE=disable PGGSSENCMODE=disable PGPORT=${PORT[$1]}"
  case $1 in
    direct | pgb-*) echo "$common PGUSER=$ROLE PGPASSWORD=$ROLEPW" ;;
    pgt-*) echo "$common PGUSER=bench PGPASSWORD=$KEY" ;;
  esac
}
CLK_TCK=$(getconf CLK_TCK)
ctx_switches() {  # voluntary + involuntary context switches of all threads of PID
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}
cpu_ticks() { if alive "${1:-}"; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo -1; fi; }
user_ticks() { if alive "${1:-}"; then awk '{print $14}' "/proc/$1/stat"; else echo -1; fi; }
# The machine's steal and total jiffies: time the hypervisor gave another
# guest, the one kind of interference this VM can see.
host_ticks() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
STEAL_HIGH=$(cd bench && python3 -c 'import analyze; print(analyze.STEAL_HIGH)')
# Steal while pgbench runs CLIENTS clients against PostgreSQL directly for
# two seconds. A probe that spins instead read calm at once in bursts
# whose runs were stolen again: a busy vCPU keeps its slot, and what gets
# stolen is the wake-ups a proxy's workload is made of.
steal_probe() {
  local s0 t0 s1 t1
  read -r s0 t0 < <(host_ticks)
  env $(target_env direct) "$PGBENCH" -n -S -c "$1" -j $(($1 < 2 ? $1 : 2)) -T 2 >/dev/null 2>&1 || true
  read -r s1 t1 < <(host_ticks)
  awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", (t > 0 ? 100 * s / t : 0)}'
}
# Steal comes in bursts (three runs in four after a stolen one were
# stolen too in 2026-12-07-2347-vm), so a run again waits for a calm
# probe first, STEAL_WAIT seconds at most. Prints the seconds waited.
wait_calm() {
  local waited=0
  while [ "$waited" -lt "$STEAL_WAIT" ]; do
    waited=$((waited + 2))
    awk -v v="$(steal_probe "$1")" -v h="$STEAL_HIGH" 'BEGIN {exit !(v < h)}' && break
  done
  echo "$waited"
}
RUNS=$WORK/runs.jsonl
: >"$RUNS"
role_psql() { PGPASSWORD=$ROLEPW "$PSQL" -X -q -h 127.0.0.1 -p "$PGPORT" -U "$ROLE" -d bench "$@"; }

na_reason() {  # prints why TARGET can't run MODE, or nothing
  local t=$1 m=$2
  if [ "$t" = pgt-tx ] && [ -n "$PGT_TX_REASON" ]; then echo "$PGT_TX_REASON"; return; fi
  if [ "$t" = pgb-tx ] && [ "$m" = prepared ] && [ "$PGB_PREPARED" = 0 ]; then
    echo "PgBouncer $PGB_VERSION has no prepared statements in transaction mode (needs ≥ 1.21)"
  fi
}

RUN_NO=0
# run_pgbench KIND(tx|connect) TARGET SCRIPT MODE CLIENTS REP [TRY WAITED_S]
run_pgbench() {
  local kind=$1 t=$2 s=$3 m=$4 c=$5 rep=$6 try=${7:-0} waited=${8:-0}
  local meta
  meta=$(printf '{"kind":"%s","target":"%s","script":"%s","mode":"%s","clients":%d,"rep":%d,"duration":%d,"try":%d,"calm_wait_s":%d}' \
    "$kind" "$t" "$s" "$m" "$c" "$rep" "$DURATION" "$try" "$waited")
  local why; why=$(na_reason "$t" "$m")
  if [ -n "$why" ]; then
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(status="n/a", reason=sys.argv[2]); print(json.dumps(r))' \
      "$meta" "$why" >>"$RUNS"
    return 0
  fi
  RUN_NO=$((RUN_NO + 1))
  local j=$((c < 2 ? c : 2))
  local dir=$WORK/runs/$RUN_NO
  mkdir -p "$dir"
  local args=(-n -M "$m" -c "$c" -j "$j" -T "$DURATION")
  [ "$s" = select ] && args+=(-S)
  if [ "$kind" = connect ]; then args+=(-C); else args+=(-l "--log-prefix=$dir/tx"); fi
  if [ "$s" = tpcb ] && [ "$kind" = tx ]; then
    role_psql -c "VACUUM pgbench_branches, pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null 2>&1 || true
  fi
  local pid=${PIDS[$t]:-} logf=${LOGS[$t]:-/dev/null} off=0
  [ -f "$logf" ] && off=$(stat -c %s "$logf")
  local t0 t1 u0 u1 h0 h1 rc=0
  t0=$(cpu_ticks "$pid"); u0=$(user_ticks "$pid"); h0=$(host_ticks)
  env $(target_env "$t") timeout -k 5 $((DURATION + 60)) "$PGBENCH" "${args[@]}" >"$dir/out" 2>"$dir/err" || rc=$?
  t1=$(cpu_ticks "$pid"); u1=$(user_ticks "$pid"); h1=$(host_ticks)
  local ticks=-1 uticks=-1
  [ "$t" != direct ] && [ "$t0" -ge 0 ] && [ "$t1" -ge 0 ] && ticks=$((t1 - t0)) && uticks=$((u1 - u0))
  local line
  line=$(python3 bench/analyze.py run --meta "$meta" --out "$dir/out" --err "$dir/err" --logdir "$dir" \
    --cpu-ticks "$ticks" --user-ticks "$uticks" --clk-tck "$CLK_TCK" --rc "$rc" --host-ticks $h0 $h1)
  if [[ $line == *'"status": "fail"'* ]] && [ -f "$logf" ]; then
    line=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["proxy_log"]=open(sys.argv[2],errors="replace").read()[int(sys.argv[3]):][-3000:]; print(json.dumps(r))' \
      "$line" "$logf" "$off")
    log "FAILED: $kind $t $s -M $m -c $c (rep $rep): $(tail -1 "$dir/err" 2>/dev/null)"
    alive "$pid" || [ "$t" = direct ] || log "$t is no longer running"
  fi
  # A run that lost much of the machine to another guest measured the
  # neighbour as much as the target: it stays in the record, marked, and
  # runs again (the tables read the last attempt). Steal alone decides,
  # measured before the result is read, the same for every target.
  local again=0
  if [ "$try" -lt "$STEAL_RETRY" ] && [[ $line == *'"status": "ok"'* && $line == *'"high_steal": true'* ]]; then
    again=1
    line=${line%\}}', "retried": true}'
  fi
  echo "$line" >>"$RUNS"
  python3 - "$line" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
f = lambda k, d=0: ("%.*f" % (d, r[k])) if r.get(k) is not None else "-"
print(f"    {r['kind']:7} {r['target']:11} {r['script']:6} {r['mode']:8} c={r['clients']:<3} "
      f"tps={f('tps')} mean={f('lat_mean_ms', 3)}ms p99={f('lat_p99_ms', 3)}ms cpu/tx={f('cpu_us_per_tx', 1)}us user={f('user_us_per_tx', 1)}us steal={f('steal_pct', 1)}% {r['status']}"
      + (" (high steal: again)" if r.get("retried") else "")
      + (f" (after {r['calm_wait_s']}s waiting for calm)" if r.get("try") else ""))
EOF
  rm -rf "$dir"
  [ "$again" = 0 ] || run_pgbench "$kind" "$t" "$s" "$m" "$c" "$rep" $((try + 1)) "$(wait_calm "$c")"
}

ntg=${#TGT[@]}
rotated() {  # rotated OFFSET: the targets starting at OFFSET
  local k
  for ((k = 0; k < ntg; k++)); do echo "${TGT[$(((k + $1) % ntg))]}"; done
}

# HOLD=1: keep everything running for hands-on profiling; prints how to
# reach each target and waits for Ctrl-C.
if [ "${HOLD:-0}" = 1 ]; then
  HOLD_FILE=${HOLD_FILE:-$WORK/hold.env}
  for t in "${TGT[@]}"; do echo "$t pid=${PIDS[$t]:-} env: $(target_env "$t")"; done >"$HOLD_FILE.tmp"
  mv "$HOLD_FILE.tmp" "$HOLD_FILE"
  log "holding; targets in $HOLD_FILE; Ctrl-C stops"
  cat "$HOLD_FILE" >&2
  # The sleep must not keep our stdout open after we are stopped.
  while :; do
    sleep 3600 >/dev/null 2>&1 </dev/null &
    HOLD_SLEEP=$!
    wait $HOLD_SLEEP
  done
fi

log "warm-up"
for t in "${TGT[@]}"; do
  [ -n "$(na_reason "$t" simple)" ] && continue
  env $(target_env "$t") timeout 60 "$PGBENCH" -n -S -c "$MAXC" -j 2 -T 2 >/dev/null 2>&1 || log "warm-up through $t failed"
done

ncombo=$(( $(wc -w <<<"$SCRIPTS") * $(wc -w <<<"$MODES") * $(wc -w <<<"$CLIENTS") ))
nconn=0; [ "$CONNECT" = 1 ] && nconn=$(wc -w <<<"$CONNECT_CLIENTS")
log "$REPS reps x ($ncombo combos + $nconn -C) x $ntg targets x ${DURATION}s ≈ $(( REPS * (ncombo + nconn) * ntg * (DURATION + 2) / 60 )) min"
idx=0
for ((rep = 1; rep <= REPS; rep++)); do
  log "repetition $rep/$REPS"
  for s in $SCRIPTS; do
    for m in $MODES; do
      for c in $CLIENTS; do
        idx=$((idx + 1))
        for t in $(rotated $(((idx + rep) % ntg))); do run_pgbench tx "$t" "$s" "$m" "$c" "$rep"; done
      done
    done
  done
  if [ "$CONNECT" = 1 ]; then
    for c in $CONNECT_CLIENTS; do
      idx=$((idx + 1))
      for t in $(rotated $(((idx + rep) % ntg))); do run_pgbench connect "$t" select simple "$c" "$rep"; done
    done
  fi
done

# ------------------------------------------- added latency, interleaved
# pgbench's 1-client rows compare runs seconds apart, and at one client
# the machine's drift between runs exceeds what one proxy adds over the
# other; bench/latency_ab.py times every target within each second.
AB_JSON=$WORK/ab.jsonl
: >"$AB_JSON"
if [ "$AB_SECONDS" -gt 0 ] && [[ " $CLIENTS " == *" 1 "* ]] && [[ " $SCRIPTS " == *" select "* ]] && has_target direct; then
  for t in "${TGT[@]}"; do echo "$t env: $(target_env "$t")"; done >"$WORK/ab.env"
  for m in $MODES; do
    use=""
    for t in "${TGT[@]}"; do [ -z "$(na_reason "$t" "$m")" ] && use+="$t,"; done
    log "added latency, -M $m, targets interleaved for ${AB_SECONDS}s (bench/latency_ab.py)"
    (cd bench && SCALE=$SCALE python3 latency_ab.py "$WORK/ab.env" "$m" "$AB_SECONDS" 1000 "${use%,}") >>"$AB_JSON" \
      || log "latency_ab.py -M $m failed"
  done
fi

# ------------------------------------------------------------- idle clients
IDLE_JSON=$WORK/idle.jsonl
: >"$IDLE_JSON"
if [ "$IDLE" -gt 0 ]; then
  # A fresh instance, so the baseline holds nothing from the runs above.
  if has_target pgt-tx && [ -z "$PGT_TX_REASON" ]; then
    log "idle footprint: $IDLE authenticated clients, transaction mode"
    start_pgtenant pgt-idle transaction "$TX_POOL_SIZE" PGTENANT_MAX_CLIENT_CONNECTIONS=$((IDLE + 1000)) \
      PGTENANT_LOGIN_TIMEOUT_MS=600000 || die "pgtenant (idle) did not start"
    python3 bench/idle_clients.py --port "${PORT[pgt-idle]}" --key "$KEY" --pid "${PIDS[pgt-idle]}" -n "$IDLE" \
      --stage "$IDLE_STAGE" --deadline 300 --query-all \
      --label "$IDLE idle clients, transaction mode, after ReadyForQuery" >>"$IDLE_JSON" || log "idle run incomplete"
    stop_proc pgt-idle
  else
    log "idle footprint: transaction mode unavailable; pre-auth footprint of $IDLE clients + session-mode sample"
    start_pgtenant pgt-idle session 100 PGTENANT_MAX_CLIENT_CONNECTIONS=$((IDLE + 1000)) \
      PGTENANT_LOGIN_TIMEOUT_MS=600000 || die "pgtenant (idle) did not start"
    python3 bench/idle_clients.py --port "${PORT[pgt-idle]}" --key "$KEY" --pid "${PIDS[pgt-idle]}" -n "$IDLE" \
      --stage prompt --deadline 300 --label "$IDLE clients waiting at the password prompt (pre-auth)" \
      --note "transaction mode unavailable: no backend-free authenticated idle state to measure" >>"$IDLE_JSON" \
      || log "idle (prompt) run incomplete"
    python3 bench/idle_clients.py --port "${PORT[pgt-idle]}" --key "$KEY" --pid "${PIDS[pgt-idle]}" -n 90 \
      --stage auth --deadline 120 --label "90 authenticated session-mode clients (each holds a backend)" \
      --note "includes the proxy's share of one server connection per client" >>"$IDLE_JSON" \
      || log "idle (session) run incomplete"
    stop_proc pgt-idle
  fi
  if has_target pgb-tx; then
    # PgBouncer's own per-client cost, for scale (clients answer the password prompt).
    log "idle footprint of PgBouncer (transaction mode), $IDLE clients, for comparison"
    python3 bench/pgbouncer_idle.py "$IDLE" "${PORT[pgb-tx]}" "${PIDS[pgb-tx]}" "$ROLE" "$ROLEPW" >>"$IDLE_JSON" \
      || log "pgbouncer idle run incomplete"
  fi
fi

# ----------------------------------------------------------------- profile
PROFILE_MD=$WORK/profile.md
: >"$PROFILE_MD"
if [ "$PROFILE" = 1 ]; then
  . bench/profile.sh
  profile_stage "$PROFILE_MD"
fi

# ------------------------------------------------------------------ report
mkdir -p bench/results
HOST=$(hostname -s 2>/dev/null || hostname)
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=${OUT:-bench/results/$STAMP-$HOST.md}
CMD=""
# The knobs as set: 0 is "off", and left out, but for the three on by default.
for v in PGO QUICK REPS DURATION SCALE CLIENTS MODES SCRIPTS TARGETS CONNECT CONNECT_CLIENTS AB_SECONDS IDLE PROFILE \
  STEAL_RETRY STEAL_WAIT TX_POOL_SIZE PGT_EXTRA_ENV; do
  val=${!v:-}
  [ "$v" = CONNECT_CLIENTS ] && [ "$CONNECT" = 0 ] && continue
  case $v=$val in
    CONNECT=0 | AB_SECONDS=0 | STEAL_RETRY=0) CMD+="$v=0 " ;;
    CONNECT=* | STEAL_RETRY=1 | STEAL_WAIT=60 | *= | *=0) ;;
    *" "*) CMD+="$v=\"$val\" " ;;
    *) CMD+="$v=$val " ;;
  esac
done
case $PGT_BIN in target/release/pgtenant | target/pgo/pgtenant) ;; *) CMD+="PGT_BIN=$PGT_BIN " ;; esac
CMD+="bench/pgbench.sh"
export B_CODE=$CODE B_HOST=$HOST B_PGBIN=$PGBIN B_PGB_VERSION=$PGB_VERSION B_PGB_PREPARED=$PGB_PREPARED B_CMD=$CMD \
  B_TX_REASON=$PGT_TX_REASON B_SETTINGS="REPS=$REPS DURATION=${DURATION}s SCALE=$SCALE clients=[$CLIENTS] -M [$MODES] \
scripts=[$SCRIPTS]; pgbench -n -j min(c,2) -l; session pools $POOL_SIZE, transaction pools $TX_POOL_SIZE (PgBouncer and \
pgtenant alike); PgBouncer auth_type=plain, pgtenant key as cleartext password, direct as the tenant role (SCRAM); \
PGTENANT_FIREWALL_MODE=$FIREWALL_MODE PGTENANT_LOG_LEVEL=$PGTENANT_LOG_LEVEL; PostgreSQL max_connections=$MAXCONN \
shared_buffers=512MB fsync=off autovacuum=off; a run losing ≥ $STEAL_HIGH% to steal is run again up to $STEAL_RETRY time(s), once a 2 s pgbench probe shows less (waiting $STEAL_WAIT s at most)"
python3 - "$WORK/machine.json" <<'EOF'
import json, os, platform, subprocess, sys
E = os.environ
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
notes = []
if E["B_TX_REASON"]: notes.append("pgt-tx: " + E["B_TX_REASON"])
if E["B_PGB_PREPARED"] == "0":
    notes.append(f"pgb-tx -M prepared skipped: PgBouncer {E['B_PGB_VERSION']} has no prepared statements in transaction mode (needs >= 1.21)")
json.dump({
  "date": sh("date -u '+%Y-%m-%d %H:%M UTC'"), "host": E["B_HOST"], "cpu": cpu, "nproc": sh("nproc"), "mem": mem,
  "kernel": platform.release(), "os": sh(". /etc/os-release; echo $PRETTY_NAME"),
  "postgres": sh(f"'{E['B_PGBIN']}/postgres' --version"), "pgbouncer": E["B_PGB_VERSION"],
  "pgtenant": E["B_CODE"],
  "rustc": sh("rustc --version"), "command": E["B_CMD"], "settings": E["B_SETTINGS"], "notes": notes,
}, open(sys.argv[1], "w"))
EOF
python3 bench/analyze.py report --runs "$RUNS" --machine "$WORK/machine.json" --idle "$IDLE_JSON" --ab "$AB_JSON" --profile "$PROFILE_MD" >"$OUT"
cp "$RUNS" "${OUT%.md}.jsonl"
cat "$OUT"
log "report written to $OUT"

#!/usr/bin/env bash
# User-space instructions per transaction and per connection, pgtenant vs
# PgBouncer, counted by callgrind.
#
#   bench/instructions.sh                           # -S, 16 clients, ~6 min
#   MODES=simple TARGETS="pgb-tx pgt-tx" bench/instructions.sh
#   BUILTIN=tpcb-like SHORT=20 LONG=120 MODES=simple bench/instructions.sh
#
# CPU time per transaction moves by ±8 % between runs on a shared machine;
# an instruction count does not, so a change of 1 % in the proxy's own work
# shows. It does not see the kernel (about 80 % of a proxy's CPU here, and
# equal for both) nor cache misses: pair it with bench/pgbench.sh.
#
# Starts everything through `HOLD=1 bench/pgbench.sh` with both proxies
# under callgrind, then for each target and -M runs pgbench twice with
# SHORT and LONG transactions per client (after a warm-up) and counts the
# proxy's instructions in each:
#   per transaction = (Ir(LONG) - Ir(SHORT)) / ((LONG - SHORT) x clients)
#   per connection  = (Ir(SHORT) - SHORT x clients x per-tx) / clients
# (login, first statements and the goodbye, the backend already pooled).
# Writes bench/results/<date>-<host>-instructions.md with each target's
# most expensive functions.
#
# CONNECT=1: pgbench -C, a new connection per transaction, so that "per
# transaction" is the whole cost of a connection (login, the statement,
# the goodbye) with the backend pooled: what -C in bench/pgbench.sh pays.
#
# Knobs: BUILTIN(select-only: pgbench's built-in script) CLIENTS(16) SHORT(50) LONG(550) MODES("simple extended prepared") CONNECT(0)
# TARGETS("pgb-session pgt-session pgb-tx pgt-tx") TOP(25) OUT KEEP(0)
# PGT_BIN(target/release/pgtenant: the binary counted, e.g. target/pgo/pgtenant)
# CACHE_SIM(unset; 1: simulate the caches too: the table gets first-level
# misses per transaction, and the dumps kept with KEEP=1 carry them for
# callgrind_annotate --sort=D1mr; a number N instead of 1: first-level
# caches of N KiB, e.g. CACHE_SIM=4: on a machine where the proxy shares its
# core with PostgreSQL and pgbench, little of its working set survives from
# one wake-up to the next, and misses in a cache that small count the cache
# lines each wake-up touches: its footprint, which costs a miss each in real
# life)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

BUILTIN=${BUILTIN:-select-only}
CLIENTS=${CLIENTS:-16}
SHORT=${SHORT:-50}
LONG=${LONG:-550}
MODES=${MODES:-"simple extended prepared"}
TARGETS=${TARGETS:-"pgb-session pgt-session pgb-tx pgt-tx"}
TOP=${TOP:-25}
KEEP=${KEEP:-0}
CONNECT=${CONNECT:-0}
CONNECT_ARG=()
[ "$CONNECT" = 1 ] && CONNECT_ARG=(-C)
# The script in the name: two runs in one minute (-S, then TPC-B) keep both.
OUT=${OUT:-bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)-$BUILTIN-instructions.md}

need_packages valgrind

WORK=$(mktemp -d /tmp/pgtenant-instr.XXXXXX)
# PgBouncer runs as postgres when we are root and writes its dumps here.
chmod 777 "$WORK"
HOLD_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  release_targets
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The instruction count does not depend on the data size: the smallest
# data set loads fastest under callgrind.
# The vgdb FIFOs live in the work dir: in /tmp (sticky), root may not open
# a FIFO that PgBouncer's user created (fs.protected_fifos).
VGDB_PREFIX=$WORK/vgdb
CACHE_OPTS=
if [ -n "${CACHE_SIM:-}" ]; then
  CACHE_OPTS=--cache-sim=yes
  [ "$CACHE_SIM" = 1 ] || CACHE_OPTS+=" --I1=$((CACHE_SIM * 1024)),8,64 --D1=$((CACHE_SIM * 1024)),8,64"
fi
VG="env -u USER -u LOGNAME valgrind --tool=callgrind --vgdb=yes --vgdb-prefix=$VGDB_PREFIX --dump-instr=no $CACHE_OPTS --callgrind-out-file=$WORK/cg.%p"
log "starting targets under callgrind (log: $WORK/bench.log)"
hold_targets "$WORK" TARGETS="$TARGETS" PGT_WRAPPER="$VG" PGB_WRAPPER="$VG" \
  || { log "targets did not come up"; exit 1; }

pid_of() { awk -v t="$1" '$1 == t {sub("pid=", "", $2); print $2}' "$WORK/hold.env"; }
env_of() { awk -v t="$1" '$1 == t {sub(/^.* env: /, ""); print}' "$WORK/hold.env"; }

AS_TARGET=()
# ir PID: the event totals since the last call (callgrind dumps and
# zeroes): Ir, and with CACHE_SIM=1 then Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
dumps() { find "$WORK" -maxdepth 1 -name "cg.$1.*" -printf '%f\n' | sort -t. -k3 -n; }
ir() {
  local pid=$1 before f
  before=$(dumps "$pid" | wc -l)
  # As the target's user, with the user name valgrind saw (none): vgdb
  # finds the FIFOs by both.
  timeout 60 "${AS_TARGET[@]}" env -u USER -u LOGNAME \
    callgrind_control --vgdb-prefix="$VGDB_PREFIX" -d "$pid" >/dev/null 2>&1 \
    || { log "callgrind_control -d $pid failed"; exit 1; }
  # The new dump, once callgrind has written its last line, the totals
  # (the file appears before that; reading it early, or the previous dump,
  # would be silently wrong). A dump can take seconds, longer with CACHE_SIM.
  local line=""
  for _ in $(seq 600); do
    if [ "$(dumps "$pid" | wc -l)" -gt "$before" ]; then
      f=$WORK/$(dumps "$pid" | tail -1)
      line=$(awk '/^totals:/ {$1 = ""; print; exit}' "$f")
      [ -n "$line" ] && break
    fi
    sleep 0.1
  done
  [ -n "$line" ] || { log "no complete callgrind dump from $pid in 60 s"; exit 1; }
  echo "$line"
}
# ev LINE N: the Nth event (1-based) of an `ir` line, 0 if absent.
ev() { awk -v i="$2" '{print ($i == "" ? 0 : $i)}' <<<"$1"; }

# run TARGET MODE TX: pgbench with TX transactions per client; fails loudly.
run() {
  local t=$1 m=$2 n=$3
  # shellcheck disable=SC2046
  env $(env_of "$t") pgbench -n "${CONNECT_ARG[@]}" -b "$BUILTIN" -M "$m" -c "$CLIENTS" -j 2 -t "$n" >"$WORK/pgbench.out" 2>&1 \
    || { cat "$WORK/pgbench.out" >&2; log "pgbench through $t failed"; exit 1; }
  grep -q "number of transactions actually processed: $((n * CLIENTS))/" "$WORK/pgbench.out" \
    || { cat "$WORK/pgbench.out" >&2; log "pgbench through $t lost transactions"; exit 1; }
}

PGB_VERSION=$(pgbouncer --version | head -1 | awk '{print $2}')
PGB_PREPARED=0
[ "$(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -1)" = 1.21 ] && PGB_PREPARED=1
ROWS=$WORK/rows
: >"$ROWS"
for m in $MODES; do
  for t in $TARGETS; do
    pid=$(pid_of "$t")
    [ -n "$pid" ] || continue
    AS_TARGET=()
    if [ "$(id -u)" -eq 0 ] && [[ $t == pgb-* ]]; then
      AS_TARGET=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    # PgBouncer has prepared statements in transaction mode from 1.21.
    if [ "$t" = pgb-tx ] && [ "$m" = prepared ] && [ "$PGB_PREPARED" = 0 ]; then
      continue
    fi
    # Warm-up: the pool fills (each new server login costs PgBouncer a
    # SCRAM key derivation), caches settle.
    run "$t" "$m" "$LONG"
    ir "$pid" >/dev/null
    run "$t" "$m" "$SHORT"
    a=$(ir "$pid")
    run "$t" "$m" "$LONG"
    b=$(ir "$pid")
    # The dump of the long run, for the function table.
    cp "$WORK/$(dumps "$pid" | tail -1)" "$WORK/long.$t.$m"
    per_tx=$((($(ev "$b" 1) - $(ev "$a" 1)) / ((LONG - SHORT) * CLIENTS)))
    per_conn=$((($(ev "$a" 1) - SHORT * CLIENTS * per_tx) / CLIENTS))
    # Simulated L1 misses per transaction: data (reads + writes), code.
    d1=$(((($(ev "$b" 5) + $(ev "$b" 6)) - ($(ev "$a" 5) + $(ev "$a" 6))) * 10 / ((LONG - SHORT) * CLIENTS)))
    i1=$((($(ev "$b" 4) - $(ev "$a" 4)) * 10 / ((LONG - SHORT) * CLIENTS)))
    log "$t -M $m: $per_tx instructions per transaction, $per_conn per connection"
    echo "$m $t $per_tx $per_conn $d1 $i1" >>"$ROWS"
  done
done

{
  echo "# User-space instructions per transaction (callgrind)"
  echo
  echo "\`${PGT_BIN:+PGT_BIN=$PGT_BIN }${CACHE_SIM:+CACHE_SIM=$CACHE_SIM }${CONNECT_ARG:+CONNECT=1 }BUILTIN=$BUILTIN CLIENTS=$CLIENTS SHORT=$SHORT LONG=$LONG MODES=\"$MODES\" bench/instructions.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), code $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + local changes'), $(pgbouncer --version | head -1)."
  if [ "$CONNECT" = 1 ]; then
    echo "\`pgbench -C -b $BUILTIN -c $CLIENTS -j 2\`: a new connection per transaction, so per transaction = a whole connection (login, the statement, the goodbye; backend connections already pooled), the difference between runs of $LONG and $SHORT transactions per client; the per-connection column is then only a remainder (warm-up effects). Firewall in enforce mode."
  else
    echo "\`pgbench -b $BUILTIN -c $CLIENTS -j 2\`; per transaction = difference between runs of $LONG and $SHORT transactions per client; per connection = the rest of the short run, per client (login, first statement, goodbye; backend connections already pooled). Firewall in enforce mode."
  fi
  echo
  if [ -n "${CACHE_SIM:-}" ]; then
    echo "CACHE_SIM=$CACHE_SIM: misses per transaction in callgrind's simulated first-level caches ($(grep -m1 -o 'D1 cache: [^,]*' "$WORK/long."* | head -1 | sed 's/.*: //') data$([ "$CACHE_SIM" = 1 ] && echo ', as this CPU reports'); the kernel's own use of the caches is not simulated)."
    echo
    echo "| -M | target | instructions / tx | instructions / connection | pgt/pgb per tx | D1 misses / tx | I1 misses / tx |"
    echo "|---|---|---|---|---|---|---|"
  else
    echo "| -M | target | instructions / tx | instructions / connection | pgt/pgb per tx |"
    echo "|---|---|---|---|---|"
  fi
  # pgtenant's rows get the ratio to PgBouncer's in the same mode.
  awk -v cache="${CACHE_SIM:-}" '{ tx[$1 " " $2] = $3 }
    { other = $2; sub(/^pgt-/, "pgb-", other)
      ratio = ($2 ~ /^pgt-/ && (($1 " " other) in tx)) ? sprintf("%.2fx", $3 / tx[$1 " " other]) : ""
      misses = cache == "" ? "" : sprintf(" %.1f | %.1f |", $5 / 10, $6 / 10)
      printf "| %s | %s | %d | %d | %s |%s\n", $1, $2, $3, $4, ratio, misses }' "$ROWS"
  # PgBouncer's binary is stripped: its table would show addresses only.
  for f in "$WORK"/long.pgt-*.simple; do
    [ -f "$f" ] || continue
    echo
    echo "## Top functions, ${f##*/long.} (the $LONG-transaction run, self cost)"
    echo
    echo '```'
    # Self cost; the (100%) lines are the frames everything runs under.
    # With CACHE_SIM, the instructions and data-cache misses only: all
    # nine columns leave no room for the function's name.
    callgrind_annotate --inclusive=no --threshold=100 --auto=no ${CACHE_SIM:+--show=Ir,D1mr,D1mw} "$f" 2>/dev/null \
      | sed -n '/file:function/,$p' | grep -v '(100.0%)' | grep -v '^-' | head -"$TOP" | cut -c1-220 \
      || true # head closes the pipe early (pipefail)
    echo '```'
  done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"

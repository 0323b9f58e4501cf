# The profile stage of bench/pgbench.sh (PROFILE=1), sourced by it: a perf
# profile of one pgtenant instance under pgbench -S (and -C), and syscalls
# and context switches per transaction of it and of both PgBouncers. Uses
# pgbench.sh's state (WORK, PIDS, PGBENCH, CONNECT, PROFILE_SECONDS,
# PROFILE_TARGET, target_env, ctx_switches) and sets the BG_PGBENCH and
# BG_STRACE that its cleanup stops.

# perf_case PID LABEL PGBENCH-ARGS...: perf profile of PID while pgbench runs.
perf_case() {
  local pid=$1 label=$2; shift 2
  local t=$PT
  echo "### perf: $label"
  echo
  env $(target_env "$t") timeout $((PROFILE_SECONDS + 30)) "$PGBENCH" -n "$@" -T $((PROFILE_SECONDS + 3)) \
    >"$WORK/prof-pgbench.out" 2>&1 &
  BG_PGBENCH=$!
  sleep 1.5
  perf record -q -e cpu-clock -F 997 --call-graph dwarf,16384 -p "$pid" -o "$WORK/perf.data" \
    -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1
  wait "$BG_PGBENCH"; BG_PGBENCH=""
  echo "pgbench: $(grep -E '^tps' "$WORK/prof-pgbench.out" | head -1)"
  echo
  echo "Self time by binary:"
  echo '```'
  perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none --percent-limit 0.5 2>/dev/null \
    | grep -v '^#' | grep -v '^\s*$' | head -8
  echo '```'
  echo "Self time in user space (pgtenant + libc), top symbols:"
  echo '```'
  perf report -i "$WORK/perf.data" --no-children --dsos pgtenant,libc.so.6 --sort dso,symbol --stdio -g none \
    --percent-limit 0.25 2>/dev/null | grep -v '^#' | grep -v '^\s*$' | head -30 | cut -c1-150
  echo '```'
  echo "Inclusive time (call graph), user-space frames ≥ 3%:"
  echo '```'
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none --percent-limit 3 2>/dev/null \
    | grep -v '^#' | grep -v '^\s*$' | grep -v '\[k\]' | grep -v ' 0\.00%  ' | head -40 | cut -c1-150
  echo '```'
  echo "Kernel, top self symbols:"
  echo '```'
  perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 1 2>/dev/null \
    | grep -v '^#' | grep -v '^\s*$' | grep '\[k\]' | head -12 | cut -c1-150
  echo '```'
  echo
}

# strace_row TARGET N-TX PGBENCH-ARGS...: one table row of syscalls and
# context switches per transaction (strace slows the proxy; counts per
# transaction stay meaningful; context switches are counted without strace).
strace_row() {
  local t=$1 n=$2; shift 2
  local p=${PIDS[$t]:-}
  [ -n "$p" ] || return 0
  local cs0 cs1
  cs0=$(ctx_switches "$p")
  env $(target_env "$t") timeout 120 "$PGBENCH" -n "$@" >"$WORK/cs-pgbench.out" 2>&1
  cs1=$(ctx_switches "$p")
  strace -c -f -p "$p" -o "$WORK/strace-$t.txt" >/dev/null 2>&1 &
  BG_STRACE=$!
  sleep 1
  env $(target_env "$t") timeout 120 "$PGBENCH" -n "$@" >"$WORK/strace-pgbench.out" 2>&1
  kill -INT "$BG_STRACE" 2>/dev/null; wait "$BG_STRACE" 2>/dev/null; BG_STRACE=""
  python3 - "$t" "$WORK/strace-$t.txt" "$n" $((cs1 - cs0)) <<'PYEOF'
import re, sys
t, path, n, cs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
calls = {}
for line in open(path):
    m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
    if m and m.group(2) != "total":
        calls[m.group(2)] = int(m.group(1))
total = sum(calls.values())
main = ["sendto", "recvfrom", "epoll_wait", "epoll_ctl", "futex"]
rest = sorted(((v, k) for k, v in calls.items() if k not in main), reverse=True)[:4]
f = lambda v: f"{v / n:.2f}"
others = ", ".join(f"{k} {f(v)}" for v, k in rest)
print(f"| {t} | {f(total)} | " + " | ".join(f(calls.get(k, 0)) for k in main) + f" | {others} | {cs / n:.2f} |")
PYEOF
}

# profile_stage FILE: the stage's Markdown section, into FILE.
profile_stage() {
  set +e +o pipefail  # best effort: `| head` closes pipes early
  PT=${PROFILE_TARGET:-}
  if [ -z "$PT" ]; then if [ -n "${PIDS[pgt-tx]:-}" ]; then PT=pgt-tx; else PT=pgt-session; fi; fi
  ppid=${PIDS[$PT]}
  log "profiling $PT (pid $ppid): perf and strace"
  {
    echo "## Profile of $PT"
    echo
    perf_case "$ppid" "\`pgbench -S -M simple -c 16 -j 2\` for ${PROFILE_SECONDS}s (cpu-clock, dwarf call graphs)" \
      -S -M simple -c 16 -j 2
    if [ "$CONNECT" = 1 ]; then
      perf_case "$ppid" "\`pgbench -C -S -M simple -c 16 -j 2\` (new connection per transaction)" -C -S -M simple -c 16 -j 2
    fi
    echo "### syscalls and context switches per transaction"
    echo
    echo "| target | syscalls | sendto | recvfrom | epoll_wait | epoll_ctl | futex | others | ctx switches |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "| **\`-S -c 16 -t 500\`** (8,000 tx) | | | | | | | | |"
    for t in "$PT" pgb-session pgb-tx; do strace_row "$t" 8000 -S -M simple -c 16 -j 2 -t 500; done
    if [ "$CONNECT" = 1 ]; then
      echo "| **\`-C -S -c 16 -t 100\`** (1,600 connections) | | | | | | | | |"
      for t in "$PT" pgb-session pgb-tx; do strace_row "$t" 1600 -C -S -M simple -c 16 -j 2 -t 100; done
    fi
    echo
  } >"$1" 2>&1
  set -e -o pipefail
}

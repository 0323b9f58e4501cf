#!/usr/bin/env bash
# Builds pgtenant with profile-guided optimisation: target/pgo/pgtenant.
#
#   bash scripts/pgo.sh                 # ~12 min on 2 cores
#   PGO=1 SKIP_BUILD=1 bash bench/pgbench.sh   # measure it
#
# Three steps: an instrumented release build, a training run (pgbench's
# -S and TPC-B-like scripts through pgtenant in session and transaction
# mode, each -M, 1 and 16 clients, and -C, by bench/pgbench.sh against a
# throwaway PostgreSQL), then the release build again with the counts.
# Why: the relay's path runs through tokio, bytes and our code on every
# message; with the counts LLVM lays the hot code out together and inlines
# by what runs. Measured with bench/instructions.sh on the same commit:
# 7-15 % fewer instructions per transaction, and 28-30 % fewer misses in a
# small (4 KiB, CACHE_SIM=4) instruction cache, which is what a proxy
# sharing its cores with PostgreSQL pays for
# (bench/results/2026-12-07-1845-vm-pgo-instructions.md).
#
# Needs llvm-profdata of the same LLVM major version as rustc's: rustup's
# llvm-tools component, or Debian's llvm-<major> (installed when missing,
# as root). Knobs: PGO_DURATION(3: seconds per training run) KEEP(0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')

# llvm-profdata that reads what this rustc's LLVM writes.
profdata_tool() {
  local t
  t="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
  [ -x "$t" ] && { echo "$t"; return; }
  t=$(command -v "llvm-profdata-$LLVM_MAJOR" || true)
  [ -n "$t" ] && { echo "$t"; return; }
  t=$(command -v llvm-profdata || true)
  if [ -n "$t" ] && "$t" --version | grep -q "LLVM version $LLVM_MAJOR\."; then
    echo "$t"
    return
  fi
  if command -v apt-get >/dev/null && apt-cache show "llvm-$LLVM_MAJOR" >/dev/null 2>&1; then
    need_packages "llvm-$LLVM_MAJOR" && command -v "llvm-profdata-$LLVM_MAJOR" && return
  fi
  if command -v rustup >/dev/null && rustup component add llvm-tools >&2; then
    t="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
    [ -x "$t" ] && { echo "$t"; return; }
  fi
  return 1
}
PROFDATA=$(profdata_tool) || {
  echo "llvm-profdata for LLVM $LLVM_MAJOR not found: rustup component add llvm-tools, or install llvm-$LLVM_MAJOR" >&2
  exit 1
}

WORK=$(mktemp -d /tmp/pgtenant-pgo.XXXXXX)
trap '[ "${KEEP:-0}" = 1 ] && log "work dir kept: $WORK" || rm -rf "$WORK"' EXIT

# --target: RUSTFLAGS then apply to pgtenant and its dependencies only, not
# to build scripts and proc macros, whose runs would profile the build.
# A fixed profile directory keeps RUSTFLAGS, and so the dependencies'
# build, the same from one run to the next.
RAW=$PWD/target/pgo-gen/raw
log "1/3 instrumented build (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$RAW" \
  cargo build --release --quiet --locked --bin pgtenant --target "$HOST" --target-dir target/pgo-gen
rm -rf "$RAW"

log "2/3 training through bench/pgbench.sh (log: $WORK/train.log)"
# Every knob set here: the caller's (a PGO=1 HOLD=1 or PROFILE=1 run of
# pgbench.sh) must not reach the training. The profile is written when
# the proxy exits; a short drain keeps pgbench.sh from killing it first.
env PGT_BIN="target/pgo-gen/$HOST/release/pgtenant" SKIP_BUILD=1 PGO=0 HOLD=0 QUICK=0 \
  PROFILE=0 KEEP=0 PGT_WRAPPER= PGB_WRAPPER= IDLE_WRAPPER= REPS=1 DURATION="${PGO_DURATION:-3}" \
  SCRIPTS="select tpcb" CLIENTS="1 16" MODES="simple extended prepared" \
  TARGETS="pgt-session pgt-tx" CONNECT=1 CONNECT_CLIENTS="1 16" AB_SECONDS=0 IDLE=0 \
  PGT_EXTRA_ENV="PGTENANT_SHUTDOWN_TIMEOUT_MS=2000" \
  OUT="$WORK/train.md" bash bench/pgbench.sh >"$WORK/train.log" 2>&1 \
  || { tail -20 "$WORK/train.log" >&2; KEEP=1; exit 1; }
ls "$RAW"/*.profraw >/dev/null 2>&1 || { echo "training wrote no profile" >&2; KEEP=1; exit 1; }
mkdir -p target/pgo
"$PROFDATA" merge -o target/pgo/pgtenant.profdata "$RAW"/*.profraw \
  || { echo "llvm-profdata merge failed ($PROFDATA); counts kept in $RAW" >&2; exit 1; }

log "3/3 optimised build (target/pgo)"
# Functions the training never ran have no counts; that is expected.
# rustc lists the profile among each crate's inputs: new counts rebuild all.
RUSTFLAGS="-Cprofile-use=$PWD/target/pgo/pgtenant.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --quiet --locked --bin pgtenant --target "$HOST" --target-dir target/pgo
cp "target/pgo/$HOST/release/pgtenant" target/pgo/pgtenant
log "built target/pgo/pgtenant ($(git rev-parse --short HEAD)$([ -n "$(git status --porcelain -- src Cargo.toml)" ] && echo ' + uncommitted changes'))"

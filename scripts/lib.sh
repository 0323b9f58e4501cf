# Shared helpers for scripts/*.sh and bench/*.sh (sourced, not run).

# A timestamped progress line, on stderr.
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Installs Debian packages that are missing (as root, or with sudo).
need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The newest PostgreSQL server binaries: PGTENANT_TEST_PG_BINDIR, then
# /usr/lib/postgresql/<newest>/bin, then PATH.
pg_bindir() {
  if [ -n "${PGTENANT_TEST_PG_BINDIR:-}" ]; then echo "$PGTENANT_TEST_PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)
  if [ -n "$d" ]; then echo "$d"; return; fi
  dirname "$(command -v initdb)"
}

# Runs a command as the postgres OS user when we are root (Postgres refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# asyncpg and psycopg for the driver tests: pip, or Debian's packages.
need_python_drivers() {
  command -v python3 >/dev/null || need_packages python3
  python3 -c 'import asyncpg, psycopg' 2>/dev/null && return 0
  python3 -m pip --version >/dev/null 2>&1 || need_packages python3-pip
  python3 -m pip install --quiet asyncpg 'psycopg[binary]' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages asyncpg 'psycopg[binary]'
  python3 -c 'import asyncpg, psycopg'
}

# ruby-pg and PHP's pdo_pgsql (Debian's, both over libpq). For tests/drivers.rs.
need_ruby_and_php_drivers() {
  need_packages ruby-pg php-cli php-pgsql
}

# pgjdbc (Debian's) and a JDK to run it; node-postgres as locked in
# tests/clients/package-lock.json, into target/test-node. For tests/drivers.rs.
need_jvm_and_node_drivers() {
  # A JDK: java runs the workload as a single source file (needs javac's module).
  command -v javac >/dev/null || need_packages default-jdk-headless
  need_packages libpostgresql-jdbc-java
  local d=target/test-node
  if cmp -s tests/clients/package-lock.json "$d/package-lock.json" \
    && [ -f "$d/node_modules/pg/package.json" ]; then
    return 0
  fi
  command -v node >/dev/null || need_packages nodejs
  command -v npm >/dev/null || need_packages npm
  mkdir -p "$d"
  cp tests/clients/package.json tests/clients/package-lock.json "$d/"
  npm ci --loglevel=error --no-audit --no-fund --prefix "$d" >/dev/null
}

# Starts bench/pgbench.sh with HOLD=1 in the background (its pid in
# HOLD_PID) and waits until its targets are up: their pids and env in
# WORK/hold.env, its log in WORK/bench.log. VAR=VALUE arguments go to its
# environment. Stop it with release_targets.
hold_targets() {  # hold_targets WORK [VAR=VALUE...]
  local work=$1
  shift
  env HOLD=1 HOLD_FILE="$work/hold.env" SCALE=1 CONNECT=0 "$@" \
    bench/pgbench.sh 2>"$work/bench.log" &
  HOLD_PID=$!
  local _
  for _ in $(seq 600); do
    [ -s "$work/hold.env" ] && return 0
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 1
  done
  tail -20 "$work/bench.log" >&2
  return 1
}

release_targets() {
  [ -n "${HOLD_PID:-}" ] || return 0
  kill -TERM "$HOLD_PID" 2>/dev/null || true
  wait "$HOLD_PID" 2>/dev/null || true
  HOLD_PID=
}

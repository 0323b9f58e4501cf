#!/usr/bin/env bash
# Installs what the tests need (PostgreSQL, libclang for pg_query) and runs
# the whole suite: formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages postgresql postgresql-contrib libclang-dev build-essential
command -v cargo >/dev/null || { echo "Rust is needed: https://rustup.rs" >&2; exit 1; }
echo "PostgreSQL binaries: $(pg_bindir)"
# Drivers for tests/drivers.rs: asyncpg, psycopg 3, pgjdbc, node-postgres,
# ruby-pg, PDO.
need_python_drivers
need_jvm_and_node_drivers
need_ruby_and_php_drivers

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit $status

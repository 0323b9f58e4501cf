#!/usr/bin/env bash
# Starts a local PostgreSQL under ./.pgtenant-dev, creates tenants acme and
# globex with a key each, runs pgtenant in the foreground and prints the
# psql commands to try. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages postgresql postgresql-contrib libclang-dev build-essential python3
command -v cargo >/dev/null || { echo "Rust is needed: https://rustup.rs" >&2; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/pgtenant
PGBIN=$(pg_bindir)

DEV=$PWD/.pgtenant-dev
mkdir -p "$DEV"
if [ ! -f "$DEV/env" ]; then
  PGPW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
  PGPORT=$(free_port)
  printf 'PGPW=%s\nSECRET=%s\nPGPORT=%s\n' "$PGPW" "$SECRET" "$PGPORT" > "$DEV/env"
  chmod 600 "$DEV/env"
fi
. "$DEV/env"
[ "$(id -u)" -eq 0 ] && chown postgres "$DEV"
if [ ! -d "$DEV/data" ]; then
  echo "$PGPW" > "$DEV/pw"; [ "$(id -u)" -eq 0 ] && chown postgres "$DEV/pw"
  as_pg "$PGBIN/initdb" -D "$DEV/data" -U postgres --pwfile="$DEV/pw" \
    --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C >/dev/null
  rm -f "$DEV/pw"
fi
as_pg "$PGBIN/pg_ctl" -D "$DEV/data" -l "$DEV/postgres.log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DEV" start >/dev/null \
  || as_pg "$PGBIN/pg_ctl" -D "$DEV/data" status >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$DEV/data" -m fast stop >/dev/null' EXIT

export PGTENANT_BACKEND_URL="postgres://postgres:$PGPW@127.0.0.1:$PGPORT/app"
export PGTENANT_BACKEND_SECRET="$SECRET"
export PGTENANT_LISTEN_ADDR=127.0.0.1:6432
# For the CLI in another terminal (secrets: only for this user).
( umask 077; printf 'export PGTENANT_BACKEND_URL=%q\nexport PGTENANT_BACKEND_SECRET=%q\n' \
    "$PGTENANT_BACKEND_URL" "$PGTENANT_BACKEND_SECRET" > "$DEV/cli.env" )
PGPASSWORD=$PGPW psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Xqtc \
  "SELECT 1 FROM pg_database WHERE datname='app'" | grep -q 1 \
  || PGPASSWORD=$PGPW psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Xqc "CREATE DATABASE app"
"$BIN" init
for t in acme globex; do
  # A rerun finds the tenant there; any other failure is shown.
  if ! out=$("$BIN" tenant create "$t" 2>&1) && ! grep -q "tenant \"$t\" already exists" <<<"$out"; then
    echo "$out" >&2
    exit 1
  fi
  # Written whole or not at all: a failed issue must not leave an empty key.
  if [ ! -s "$DEV/$t.key" ]; then
    ( umask 077; "$BIN" key issue --tenant "$t" --name demo > "$DEV/$t.key.new" )
    mv "$DEV/$t.key.new" "$DEV/$t.key"
  fi
done
chmod 600 "$DEV"/*.key
cat <<EOT

pgtenant is starting on 127.0.0.1:6432 (PostgreSQL on 127.0.0.1:$PGPORT, data in $DEV).
Try, in another terminal:

  psql "postgresql://app:$(cat "$DEV/acme.key")@127.0.0.1:6432/app"
  psql "postgresql://app:$(cat "$DEV/globex.key")@127.0.0.1:6432/app"

  then: SHOW search_path; SELECT current_user; CREATE TABLE notes(id int); \\dt
More CLI commands:  . $DEV/cli.env; $BIN tenant list
Ctrl-C stops the proxy and PostgreSQL.

EOT
"$BIN" serve

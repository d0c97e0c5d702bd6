#!/usr/bin/env bash
# Run a command (the test suite) against a PostgreSQL database made for this run alone, dropped after.
#
#   scripts/fresh-db.sh COMMAND [ARG...]
#
# Why: a test that leans on what an earlier `make run` left behind - a migrated default database - passes
# on a used machine and fails on a new one. Here the run's POSTGRES_DSN names a new, never migrated
# database on the local cluster, so such a test fails the same way on every machine, CI's included.
# With POSTGRES_DSN already set (a server of your own), the command runs against it unchanged.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -n "${POSTGRES_DSN:-}" ]]; then
  exec "$@"
fi
name="l0_run_$(date +%Y%m%d%H%M%S)_$$"
"$ROOT/scripts/postgres.sh" create-db "$name"
# The original's names for parts of the DSN would disagree with the DSN below and stop every command.
unset POSTGRES_HOST POSTGRES_PORT POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB
export POSTGRES_DSN="postgresql://${DB_USER:-orders}:${DB_PASSWORD:-orders}@${PG_HOST:-127.0.0.1}:${PG_PORT:-5432}/$name"
echo "fresh-db: this run uses database $name (dropped at the end)" >&2

drop() {
  # A test that stopped PostgreSQL restarts it; if one failed to, start it so that the drop can run.
  "$ROOT/scripts/postgres.sh" start >/dev/null 2>&1 || true
  "$ROOT/scripts/postgres.sh" drop-db "$name" || echo "fresh-db: could not drop $name" >&2
}
# Also when the run is interrupted or killed by a timeout: the database never outlives it.
trap 'drop; exit 130' INT
trap 'drop; exit 143' TERM HUP
status=0
"$@" || status=$?
trap - INT TERM HUP
drop
exit "$status"

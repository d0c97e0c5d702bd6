#!/usr/bin/env bash
# The PostgreSQL the service uses: the machine's PostgreSQL cluster (Debian's pg_ctlcluster), or any
# server named by POSTGRES_DSN.
#
#   scripts/postgres.sh up|down|status|start|stop|create-db NAME|drop-db NAME
#
# up         start the local cluster if needed, wait until it accepts connections, create role and database
# down       stop the local cluster (stop is the same; start is up without the role/database step)
# create-db  a new empty database NAME owned by the role; drop-db drops it, whoever is connected
#            (scripts/fresh-db.sh gives `make test` a database of its own this way)
# The server is the one the service is given: POSTGRES_DSN. One on this cluster's host and port
# (127.0.0.1 or localhost, PG_PORT) is managed here, whatever its database: `up` creates the DSN's role
# and database, `stop` stops the cluster. Any other server (or PG_MANAGED=0) is someone else's: up only
# waits for it and down stops nothing.
set -euo pipefail

PG_VERSION=${PG_VERSION:-15}
PG_CLUSTER=${PG_CLUSTER:-main}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
DB_USER=${DB_USER:-orders}
DB_PASSWORD=${DB_PASSWORD:-orders}
DB_NAME=${DB_NAME:-orders}
if [[ -n "${POSTGRES_DSN:-}" ]]; then
  # host, port, user, password and dbname of the DSN (URI or key=value), one a line; blank = not given.
  mapfile -t DSN_PARTS < <(python3 - "$POSTGRES_DSN" <<'PY'
import shlex, sys, urllib.parse
dsn = sys.argv[1]
if dsn.startswith(("postgresql://", "postgres://")):
    url = urllib.parse.urlsplit(dsn)
    parts = {"host": url.hostname or "", "port": str(url.port or ""), "user": urllib.parse.unquote(url.username or ""),
             "password": urllib.parse.unquote(url.password or ""), "dbname": urllib.parse.unquote(url.path.lstrip("/"))}
    parts.update({k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items() if k in parts})
else:
    parts = dict(word.split("=", 1) for word in shlex.split(dsn) if "=" in word)
for key in ("host", "port", "user", "password", "dbname"):
    print(parts.get(key, ""))
PY
  )
  dsn_host=${DSN_PARTS[0]:-localhost} dsn_port=${DSN_PARTS[1]:-5432}
  if [[ ( $dsn_host == 127.0.0.1 || $dsn_host == localhost ) && $dsn_port == "$PG_PORT" ]]; then
    DB_USER=${DSN_PARTS[2]:-$DB_USER} DB_PASSWORD=${DSN_PARTS[3]:-$DB_PASSWORD} DB_NAME=${DSN_PARTS[4]:-$DB_NAME}
  else
    PG_MANAGED=${PG_MANAGED:-0}
  fi
fi
PG_MANAGED=${PG_MANAGED:-1}
START_TIMEOUT_S=${PG_START_TIMEOUT_S:-60}

log() { printf 'postgres: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

need_local_tools() {
  command -v pg_ctlcluster >/dev/null && command -v pg_isready >/dev/null \
    || die "PostgreSQL $PG_VERSION was not found (Debian: apt-get install postgresql-$PG_VERSION), or set POSTGRES_DSN to a running server"
}

as_postgres() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi
}

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }

cluster_online() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; }

wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1; do
    ((SECONDS < deadline)) || die "PostgreSQL on $PG_HOST:$PG_PORT did not accept connections within ${START_TIMEOUT_S}s"
    sleep 0.2
  done
}

start_cluster() {
  need_local_tools
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    log "creating cluster $PG_VERSION/$PG_CLUSTER"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" >/dev/null
  fi
  if cluster_online; then
    log "cluster $PG_VERSION/$PG_CLUSTER already running on port $PG_PORT"
  else
    log "starting cluster $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start || die "pg_ctlcluster could not start $PG_VERSION/$PG_CLUSTER (see /var/log/postgresql/)"
  fi
  wait_ready
}

create_role_and_database() {
  # Idempotent: a role or database that exists is left alone (its password is reset to the configured one).
  if [[ -z $(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'") ]]; then
    log "creating role $DB_USER"
    psql_admin -c "CREATE ROLE \"$DB_USER\" LOGIN PASSWORD '$DB_PASSWORD'"
  fi
  if [[ -z $(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") ]]; then
    log "creating database $DB_NAME"
    psql_admin -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\""
  fi
}

up() {
  if [[ $PG_MANAGED == 0 ]]; then
    log "using the server named by POSTGRES_DSN (not managed here)"
    python3 - "$POSTGRES_DSN" <<'PY' || die "the server named by POSTGRES_DSN does not accept connections"
import sys, time, subprocess
deadline = time.monotonic() + 60
while subprocess.run(["pg_isready", "-q", "-d", sys.argv[1], "-t", "1"]).returncode != 0:
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.2)
PY
    return
  fi
  start_cluster
  create_role_and_database
  log "ready: $PG_HOST:$PG_PORT database $DB_NAME (role $DB_USER)"
}

down() {
  [[ $PG_MANAGED == 0 ]] && { log "not managed here (POSTGRES_DSN); nothing to stop"; return; }
  need_local_tools
  if cluster_online; then
    log "stopping cluster $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast
  else
    log "not running"
  fi
}

status() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1; then
    echo "postgres: running ($PG_HOST:$PG_PORT, database $DB_NAME)"
  else
    echo "postgres: stopped"
    return 3
  fi
}

database_name() {
  [[ ${1:-} =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { log "create-db and drop-db take a NAME of lower-case letters, digits and _"; exit 2; }
  [[ $PG_MANAGED == 1 ]] || die "the server is not managed here (POSTGRES_DSN); create or drop databases there yourself"
}

case "${1:-}" in
  up) up ;;
  start) start_cluster ;;
  down|stop) down ;;
  status) status ;;
  create-db)
    database_name "${2:-}"
    start_cluster
    DB_NAME=$2 create_role_and_database ;;
  drop-db)
    database_name "${2:-}"
    psql_admin -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)"
    log "dropped database $2" ;;
  *) echo "usage: $0 up|down|status|start|stop|create-db NAME|drop-db NAME" >&2; exit 2 ;;
esac

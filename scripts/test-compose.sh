#!/usr/bin/env bash
# make test-compose: docker-compose.yml brought up with podman-compose on this machine without a Docker engine.
#
#   scripts/test-compose.sh [--context DIR]
#
# The images docker-compose.yml names cannot be pulled here, so stand-ins are built locally under the same
# tags (configs/standins/: postgres:15 from Debian's postgresql-15, apache/kafka from Debian's OpenJDK and
# the official Kafka jars) and the project's image l0-orders:local from the unchanged Dockerfile. The
# compose file itself is used as it is, copied verbatim into a scratch project directory beside a small
# generated mock.json (so a developer's own mock.json and .env are neither read nor overwritten), under a
# project name of its own: its containers, network and volumes cannot meet those of a real stack.
#   config     podman-compose config: the file parses and its variables resolve
#   postgres, kafka -> healthy (the compose health checks, run by hand: podman 4.3 has no scheduler for
#                      them without systemd, and podman-compose does not wait for service_healthy)
#   migrate    exits 0, every migration applied
#   app        healthy, /readyz 200 on a free host port (the file's HTTP_PORT/BIND_ADDRESS)
#   producer   (--profile producer) sends mock.json; every valid order is then served by /api/orders
#   down -v    removes containers, network and volumes (also when the check fails or is interrupted)
# Kafka and PostgreSQL are not published by docker-compose.yml, so nothing here binds 9092 or 5432.
set -euo pipefail

CT_NAME=test-compose
# shellcheck source=scripts/container-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/container-lib.sh"

CONTEXT=$CT_ROOT
while (($#)); do
  case $1 in
    --context) CONTEXT=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: $0 [--context DIR]" >&2; exit 2 ;;
  esac
done

RUN_ID=$$-$RANDOM
PROJECT=l0-compose-check-$RUN_ID
WORK=$(mktemp -d)
PROJECT_DIR=$WORK/project
ORDERS=20
HEALTHY_TIMEOUT_S=${TEST_COMPOSE_HEALTHY_TIMEOUT_S:-120}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CT_ROOT/configs/kafka/pom.xml")

compose() { "$CT_COMPOSE" --in-pod=false -p "$PROJECT" -f "$PROJECT_DIR/docker-compose.yml" "$@"; }
container_of() { printf '%s_%s_1' "$PROJECT" "$1"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # A signal that arrives inside a `... >/dev/null 2>&1` command runs this with those redirections:
  # back to the script's own stdout and stderr, or the cleanup would be silent.
  exec 1>&8 2>&9
  set +e
  if ((status != 0)) && [[ -n ${CT_COMPOSE:-} && -f $PROJECT_DIR/docker-compose.yml ]]; then
    local service
    for service in postgres kafka migrate app producer; do
      podman container exists "$(container_of "$service")" 2>/dev/null || continue
      ct_log "last log lines of $service:"
      podman logs --tail 25 "$(container_of "$service")" 2>&1 | sed "s/^/  $service| /" >&2
    done
  fi
  if [[ -n ${CT_COMPOSE:-} && -f $PROJECT_DIR/docker-compose.yml ]]; then
    compose --profile producer down -v -t 40 >"$WORK/down.log" 2>&1 || { cat "$WORK/down.log" >&2; ct_log "podman-compose down -v failed"; }
  fi
  # Whatever down left (a container it did not know of, an interrupted up): everything labelled with
  # this project, then the image built for it.
  if command -v podman >/dev/null && [[ -n ${CONTAINERS_CONF:-} ]]; then
    local label=io.podman.compose.project=$PROJECT left
    mapfile -t left < <(podman ps -aq --filter "label=$label")
    ((${#left[@]} == 0)) || { ct_log "removing containers down left"; podman rm -f -t 5 "${left[@]}" >/dev/null; }
    mapfile -t left < <(podman volume ls -q --filter "label=$label")
    ((${#left[@]} == 0)) || { ct_log "removing volumes down left"; podman volume rm -f "${left[@]}" >/dev/null; }
    mapfile -t left < <(podman network ls -q --filter "label=$label")
    ((${#left[@]} == 0)) || { ct_log "removing networks down left"; podman network rm -f "${left[@]}" >/dev/null; }
    podman rmi --force "$APP_IMAGE" >/dev/null 2>&1
  fi
  # netavark 1.4 leaves the compose network's port-forwarding chain behind, empty; the chains that
  # appeared during this run are its own (-X refuses a chain still in use or not empty).
  local chain
  for chain in $(comm -13 <(printf '%s\n' "${DN_CHAINS_BEFORE[@]}") <(dn_chains)); do
    iptables -t nat -X "$chain" 2>/dev/null || ct_log "left iptables chain $chain (in use or not empty)"
  done
  ct_restore_ip_forward
  rm -rf "$WORK"
  if ((status == 0)); then ct_log "passed in ${SECONDS}s"; else ct_log "FAILED (exit $status) after ${SECONDS}s"; fi
  exit "$status"
}
APP_IMAGE=localhost/l0-orders:local
dn_chains() { iptables -t nat -S 2>/dev/null | awk '/^-N NETAVARK-DN-/ {print $2}' | sort; }
mapfile -t DN_CHAINS_BEFORE < <(dn_chains)
exec 8>&1 9>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_setup
ct_podman_compose
ct_base_image

mkdir -p "$PROJECT_DIR"
cp "$CONTEXT/docker-compose.yml" "$PROJECT_DIR/"
# Valid orders only: each one must then be served.
python3 "$CT_ROOT/gen_orders.py" -n "$ORDERS" --invalid-rate 0 -o "$PROJECT_DIR/mock.json" 2>/dev/null
PORT=$(ct_free_port)
# The compose file's own variables: the app on a free port of this machine only; send without a limit.
printf 'BIND_ADDRESS=127.0.0.1\nHTTP_PORT=%s\nPRODUCER_RPS=0\n' "$PORT" >"$PROJECT_DIR/.env"

ct_log "podman-compose config"
compose config >"$WORK/config.yml" 2>"$WORK/config.err" || { cat "$WORK/config.err" >&2; ct_die "podman-compose config failed"; }
# The resolved image of each service, read from podman-compose's own rendering of the file.
image_of() {
  "${CT_COMPOSE%/*}/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]["image"])' \
    "$WORK/config.yml" "$1"
}
# qualified NAME: the name Docker pulls for NAME (postgres:15 -> docker.io/library/postgres:15). The
# stand-ins are tagged with it: podman resolves the file's short names to it, and a bare `postgres:15`
# tag would become localhost/postgres:15, which podman might also match by suffix with another image.
qualified() {
  case $1 in
    */*/*) echo "$1" ;;
    */*) [[ ${1%%/*} == *.* || ${1%%/*} == localhost ]] && echo "$1" || echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}
PG_IMAGE=$(qualified "$(image_of postgres)")
KAFKA_IMAGE=$(qualified "$(image_of kafka)")
[[ $(image_of app) == l0-orders:local ]] || ct_die "the app's image is $(image_of app), expected l0-orders:local"
[[ $KAFKA_IMAGE == *:"$KAFKA_VERSION" ]] \
  || ct_die "docker-compose.yml runs $KAFKA_IMAGE but configs/kafka/pom.xml (the stand-in's jars) is Kafka $KAFKA_VERSION"

# standin_image NAME TAG CONTEXT: build a stand-in unless an image of the same recipe has that tag already.
standin_image() {
  local name=$1 tag=$2 context=$3 recipe
  recipe=$(cd "$CT_ROOT/configs/standins/$name" && cat ./* | sha256sum | cut -c1-16)
  if [[ $(podman image inspect --format '{{index .Labels "l0.standin.recipe"}}' "$tag" 2>/dev/null) == "$recipe" ]]; then
    ct_log "stand-in $tag: cached"
    return
  fi
  ct_log "building the $name stand-in as $tag (once; cached in .local/container)"
  ct_build "$tag" "$context" "$context/Containerfile" --label "l0.standin.recipe=$recipe" >"$WORK/build-$name.log" 2>&1 \
    || { tail -n 30 "$WORK/build-$name.log" >&2; ct_die "the $name stand-in did not build"; }
}

standin_image postgres "$PG_IMAGE" "$CT_ROOT/configs/standins/postgres"

# The official Kafka jars (plus kafka-tools for the health check), resolved once by Maven; the build
# context is staged every run (a copy of 43 MB) so a changed recipe always finds it.
libs=$CT_STATE/kafka-standin-libs-$KAFKA_VERSION
if [[ ! -f $libs/.complete ]]; then
  ct_apt_install maven
  ct_log "resolving Apache Kafka $KAFKA_VERSION and kafka-tools from Maven Central (once)"
  rm -rf "$libs"
  mvn -q -B -f "$CT_ROOT/configs/standins/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >"$WORK/mvn.log" 2>&1 \
    || { cat "$WORK/mvn.log" >&2; ct_die "could not resolve the Kafka jars with Maven"; }
  touch "$libs/.complete"
fi
mkdir -p "$WORK/kafka-context"
cp "$CT_ROOT"/configs/standins/kafka/* "$WORK/kafka-context/"
cp -r "$libs" "$WORK/kafka-context/libs"
standin_image kafka "$KAFKA_IMAGE" "$WORK/kafka-context"

ct_log "building $CONTEXT/Dockerfile as $APP_IMAGE (the compose file's build: .)"
ct_build "$APP_IMAGE" "$CONTEXT" "$CONTEXT/Dockerfile" >"$WORK/build-app.log" 2>&1 \
  || { tail -n 30 "$WORK/build-app.log" >&2; ct_die "the image did not build"; }

# healthy SERVICE: the service's compose health check passes once (podman healthcheck run is what a
# scheduler would run every interval).
healthy() { podman healthcheck run "$(container_of "$1")"; }
running() { [[ $(podman inspect --format '{{.State.Running}}' "$(container_of "$1")" 2>/dev/null) == true ]]; }
wait_healthy() {
  local service deadline=$((SECONDS + HEALTHY_TIMEOUT_S))
  for service in "$@"; do
    until healthy "$service" >/dev/null 2>&1; do
      running "$service" || ct_die "$service exited before it was healthy"
      ((SECONDS < deadline)) || ct_die "$service was not healthy within ${HEALTHY_TIMEOUT_S}s"
      sleep 1
    done
    ct_log "$service healthy"
  done
}
# podman-compose's output (container ids; podman 4.3 saying it cannot schedule health checks without
# systemd) is shown only when up fails.
up() {
  compose up -d --no-deps --no-build "$@" >"$WORK/up.log" 2>&1 && return
  local status=$?
  cat "$WORK/up.log" >&2
  return "$status"
}

# By hand, in the order depends_on gives: podman-compose here neither waits for service_healthy nor
# follows chained dependencies reliably.
ct_log "up: postgres, kafka"
up postgres kafka || ct_die "podman-compose up postgres kafka failed"
wait_healthy postgres kafka

ct_log "up: migrate"
up migrate || ct_die "podman-compose up migrate failed"
code=$(timeout 120 podman wait "$(container_of migrate)") || ct_die "migrate did not finish within 120s"
((code == 0)) || ct_die "migrate exited with $code"
expected=$(find "$CONTEXT/sql" -maxdepth 1 -name '*.sql' ! -name '*.rollback.sql' | wc -l)
applied=$(podman exec "$(container_of postgres)" psql -X -tA -U orders -d orders -c 'SELECT count(*) FROM _yoyo_migration') \
  || ct_die "no migration table in the compose database"
((applied == expected)) || ct_die "migrate applied $applied of $expected migrations"
ct_log "migrate exited 0, $applied migrations applied"

ct_log "up: app (host port 127.0.0.1:$PORT)"
up app || ct_die "podman-compose up app failed"
wait_healthy app
ct_wait 60 "/readyz on 127.0.0.1:$PORT" curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" || ct_die "the app was not ready"
ct_log "/readyz 200 through the published port"

ct_log "run: producer (--profile producer), $ORDERS orders"
compose --profile producer run --rm --no-deps producer >"$WORK/producer.log" 2>&1 \
  || { cat "$WORK/producer.log" >&2; ct_die "the producer failed"; }
grep '^producer: done' "$WORK/producer.log" >&2 || true

mapfile -t valid < <(python3 -c 'import json, sys; print(*(o["order_uid"] for o in json.load(open(sys.argv[1]))), sep="\n")' \
  "$PROJECT_DIR/mock.json")
served() {
  local uid
  for uid in "${valid[@]}"; do curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/orders/$uid" || return 1; done
}
ct_wait 60 "the producer's orders to be served" served || ct_die "not every order the producer sent was served"
ct_log "${#valid[@]} orders sent by the compose producer served by /api/orders"

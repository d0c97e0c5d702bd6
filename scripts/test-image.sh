#!/usr/bin/env bash
# make test-image: the project's Dockerfile, unchanged, built and run on this machine without a Docker engine.
#
#   scripts/test-image.sh [--context DIR]
#
# Builds the Dockerfile with podman on a locally made stand-in for python:3.11-slim (container-lib.sh),
# then runs the image against the local Kafka and PostgreSQL (make infra-up) on the host network, on a
# scratch database, scratch topics, a scratch consumer group and a free port, so nothing the local stack
# or another checkout uses is touched:
#   l0-service migrate  -> every migration applied to the scratch database
#   l0-service serve    -> /readyz 200; one order sent by the image's own l0-producer is served by the API;
#                          the image's HEALTHCHECK passes; the process runs as the non-root user 10001
# Everything it made is removed on the way out, also when it fails or is interrupted: the container, the
# database, the topics and the image. What stays is the cache under .local/container (stand-in base,
# podman's layer cache).
#
# --context DIR builds another tree's Dockerfile (scripts/test-containers-broken.sh: a broken
# Dockerfile must make this check fail).
set -euo pipefail

CT_NAME=test-image
# shellcheck source=scripts/container-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/container-lib.sh"

CONTEXT=$CT_ROOT
while (($#)); do
  case $1 in
    --context) CONTEXT=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: $0 [--context DIR]" >&2; exit 2 ;;
  esac
done

# The local stack the rest of the suite was given (scripts/kafka.sh, scripts/postgres.sh).
KAFKA=${KAFKA_BROKERS:-127.0.0.1:9092}
PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
RUN_ID=$$-$RANDOM
# Scratch names: unique per run, recognisable as this check's.
SCRATCH=l0_imagecheck_${RUN_ID//-/_}
TOPIC=l0-imagecheck-$RUN_ID
GROUP=l0-imagecheck-$RUN_ID
CONTAINER=l0-imagecheck-$RUN_ID
IMAGE=localhost/l0-orders:imagecheck-$RUN_ID
DSN=postgresql://orders:orders@$PG_HOST:$PG_PORT/$SCRATCH
WORK=$(mktemp -d)
READY_TIMEOUT_S=${TEST_IMAGE_READY_TIMEOUT_S:-90}

# The superuser over the local socket (peer authentication), as scripts/postgres.sh does.
as_postgres() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"; }

# Runs a command in the image on the host network with the scratch settings.
# --no-healthcheck: these one-shot containers are not the service the HEALTHCHECK is for.
in_image() {
  podman run --rm --no-healthcheck --network host -e POSTGRES_DSN="$DSN" -e KAFKA_BROKERS="$KAFKA" -e KAFKA_TOPIC="$TOPIC" \
    -e KAFKA_GROUP_ID="$GROUP" "$@"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # A signal that arrives inside a `... >/dev/null 2>&1` command runs this with those redirections:
  # back to the script's own stdout and stderr, or the cleanup would be silent.
  exec 1>&8 2>&9
  set +e
  if ((status != 0)) && podman container exists "$CONTAINER" 2>/dev/null; then
    ct_log "the service container's last log lines:"
    podman logs --tail 40 "$CONTAINER" >&2
  fi
  # SIGTERM first, so the consumer leaves its group (which can then be deleted); bounded like compose's.
  podman stop --time 40 "$CONTAINER" >/dev/null 2>&1
  podman rm --force "$CONTAINER" >/dev/null 2>&1
  if podman image exists "$IMAGE" 2>/dev/null; then
    # The topics and the group go with the image that can delete them (its confluent-kafka), before the
    # image itself. A group with a member that did not leave is deletable after its session timeout
    # (10 s), hence the retries; anything never created (an early failure) is not an error here.
    in_image "$IMAGE" python -c '
import sys, time
from confluent_kafka.admin import AdminClient
brokers, group, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
admin = AdminClient({"bootstrap.servers": brokers})
for topic, future in admin.delete_topics(topics, operation_timeout=15).items():
    try:
        future.result(timeout=20)
    except Exception as exc:
        if "UNKNOWN_TOPIC" not in str(exc):
            print(f"could not delete topic {topic}: {exc}", file=sys.stderr)
deadline = time.monotonic() + 30
while True:
    try:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        break
    except Exception as exc:
        if "GROUP_ID_NOT_FOUND" in str(exc):
            break
        if time.monotonic() > deadline:
            print(f"could not delete consumer group {group}: {exc}", file=sys.stderr)
            break
        time.sleep(1)
' "$KAFKA" "$GROUP" "$TOPIC" "$TOPIC.dlq" >&2
    podman rmi --force "$IMAGE" >/dev/null 2>&1
  fi
  as_postgres -c "DROP DATABASE IF EXISTS \"$SCRATCH\" WITH (FORCE)" >/dev/null 2>&1 \
    || ct_log "could not drop the scratch database $SCRATCH"
  rm -rf "$WORK"
  if ((status == 0)); then ct_log "passed in ${SECONDS}s"; else ct_log "FAILED (exit $status) after ${SECONDS}s"; fi
  exit "$status"
}
exec 8>&1 9>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ct_setup
# The local stack the image runs against; both are no-ops when they already run.
"$CT_ROOT/scripts/kafka.sh" up
"$CT_ROOT/scripts/postgres.sh" up
ct_base_image

ct_log "building $CONTEXT/Dockerfile as $IMAGE"
ct_build "$IMAGE" "$CONTEXT" "$CONTEXT/Dockerfile" >"$WORK/build.log" 2>&1 \
  || { tail -n 30 "$WORK/build.log" >&2; ct_die "the image did not build"; }

# The health check and the user are properties of the image: check them as it was built.
[[ $(podman image inspect --format '{{.Config.User}}' "$IMAGE") == 10001:10001 ]] \
  || ct_die "the image does not run as user 10001:10001"
[[ -n $(podman image inspect --format '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}' "$IMAGE") ]] \
  || ct_die "the image has no HEALTHCHECK"

ct_log "scratch database $SCRATCH, topic $TOPIC, group $GROUP"
as_postgres -c "CREATE DATABASE \"$SCRATCH\" OWNER orders" >/dev/null || ct_die "could not create the scratch database"

ct_log "l0-service migrate (from the image)"
in_image "$IMAGE" l0-service migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; ct_die "l0-service migrate failed in the image"; }
applied=$(as_postgres -d "$SCRATCH" -tAc "SELECT count(*) FROM _yoyo_migration") || ct_die "no migration table after migrate"
available=$(find "$CONTEXT/sql" -maxdepth 1 -name '*.sql' ! -name '*.rollback.sql' | wc -l)
((applied == available)) || ct_die "migrate applied $applied of $available migrations"
ct_log "migrate applied $applied migrations"

PORT=$(ct_free_port)
ct_log "l0-service serve (the image's default command) on 127.0.0.1:$PORT"
# POSTGRES_MIGRATE_ON_START=false: the schema must be the one `migrate` made above.
podman run -d --name "$CONTAINER" --network host -e POSTGRES_DSN="$DSN" -e KAFKA_BROKERS="$KAFKA" \
  -e KAFKA_TOPIC="$TOPIC" -e KAFKA_GROUP_ID="$GROUP" -e POSTGRES_MIGRATE_ON_START=false \
  -e HTTP_HOST=127.0.0.1 -e HTTP_PORT="$PORT" -e LOG_FORMAT=console "$IMAGE" >/dev/null 2>"$WORK/run.err" \
  || { cat "$WORK/run.err" >&2; ct_die "the service container did not start"; }
# podman 4.3 says on stderr that it cannot schedule the HEALTHCHECK without systemd; the check runs it below.
grep -v 'systemd connection' "$WORK/run.err" >&2 || true

service_running() { [[ $(podman inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null) == true ]]; }
ready() { service_running && curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz"; }
deadline=$((SECONDS + READY_TIMEOUT_S))
until ready; do
  service_running || ct_die "the service exited before it was ready"
  ((SECONDS < deadline)) || ct_die "/readyz did not answer 200 within ${READY_TIMEOUT_S}s"
  sleep 0.5
done
ct_log "/readyz 200"

# The process, not only the image's metadata, runs as 10001.
uid=$(podman exec "$CONTAINER" id -u) || ct_die "podman exec id -u failed"
[[ $uid == 10001 ]] || ct_die "the service runs as uid $uid, not 10001"
users=$(podman top "$CONTAINER" user | tail -n +2 | sort -u | tr '\n' ' ')
[[ $users == "app " ]] || ct_die "processes in the container run as: $users (expected only app)"
ct_log "runs as uid 10001 (app), every process"

# Its HEALTHCHECK, run the way the engine runs it (podman has no scheduler for it without systemd).
ct_wait 60 "the image's HEALTHCHECK to pass" podman healthcheck run "$CONTAINER" || ct_die "the HEALTHCHECK did not pass"
ct_log "HEALTHCHECK healthy"

python3 "$CT_ROOT/gen_orders.py" -n 1 --invalid-rate 0 -o "$WORK/order.json" 2>/dev/null
uid_sent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["order_uid"])' "$WORK/order.json")
ct_log "sending order $uid_sent with the image's l0-producer"
in_image -v "$WORK/order.json:/data/order.json:ro" "$IMAGE" \
  l0-producer -file /data/order.json -rps 0 -brokers "$KAFKA" >"$WORK/producer.log" 2>&1 \
  || { cat "$WORK/producer.log" >&2; ct_die "l0-producer failed in the image"; }
served() { curl -fsS "http://127.0.0.1:$PORT/api/orders/$uid_sent" | grep -q "\"$uid_sent\""; }
ct_wait 60 "order $uid_sent to be served by /api/orders" served || ct_die "the order was not served"
ct_log "order $uid_sent served by /api/orders"

# A clean stop within the grace period the compose file gives it (stop_grace_period 40 s).
podman stop --time 40 "$CONTAINER" >/dev/null 2>&1 || ct_die "podman stop failed"
code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
((code == 0)) || ct_die "the service exited with $code on SIGTERM (expected a clean 0)"
ct_log "SIGTERM: clean exit 0"

#!/usr/bin/env bash
# `make run`: migrate, create topics, generate mock.json if missing, start the service in the
# background, wait until it is ready, replay mock.json through the producer, print the UI address.
#   scripts/run.sh        start (a no-op when it already runs)
#   scripts/run.sh stop   stop the service it started
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
STATE=.local
PIDFILE=$STATE/service.pid
LOGFILE=$STATE/service.log
HTTP_PORT=${HTTP_PORT:-8080}
ORDERS=${ORDERS:-3600}
URL="http://127.0.0.1:$HTTP_PORT"
export HTTP_PORT

running_pid() { [[ -f $PIDFILE ]] && kill -0 "$(<"$PIDFILE")" 2>/dev/null && cat "$PIDFILE"; }

stop() {
  local pid
  if ! pid=$(running_pid); then echo "service: not running"; rm -f "$PIDFILE"; return; fi
  echo "service: stopping (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "service: stopped"; return; }; sleep 0.2; done
  echo "service: did not stop within 40s, killing"; kill -KILL "$pid" || true; rm -f "$PIDFILE"
}

start() {
  mkdir -p "$STATE"
  if pid=$(running_pid); then
    echo "service: already running (pid $pid) - UI: $URL/"
    return
  fi
  $PY cmd/service.py migrate
  $PY cmd/service.py create-topics
  [[ -f mock.json ]] || $PY gen_orders.py -n "$ORDERS" --invalid-rate 0.1 -o mock.json
  echo "service: starting on $URL (log: $LOGFILE)"
  setsid nohup $PY cmd/service.py serve >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; do
    if ! running_pid >/dev/null; then tail -n 20 "$LOGFILE" >&2; echo "service: exited during start (log above)" >&2; exit 1; fi
    ((SECONDS < deadline)) || { tail -n 20 "$LOGFILE" >&2; echo "service: not ready within 90s" >&2; exit 1; }
    sleep 0.3
  done
  echo "producer: replaying mock.json"
  $PY cmd/producer.py -file mock.json -rps 0
  cat <<TXT

  The order service is running.
    UI:       $URL/
    API:      $URL/api/orders/<order_uid>
    health:   $URL/healthz  $URL/readyz
    logs:     make logs        stop: make stop        stack: make infra-down
TXT
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

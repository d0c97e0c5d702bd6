#!/usr/bin/env bash
# The service and the producer in the background, for the make targets that start them.
#   scripts/run.sh [start]           make run: migrate, create the topics, generate the orders file if
#                                    missing, start the service, replay the file, print the URLs
#   scripts/run.sh service           make up-app: the service in the background; waits until it is ready
#   scripts/run.sh replay [RPS]      make up-prod: replay the orders file into the service's topic in the
#                                    background, RPS messages per second (default 100)
#   scripts/run.sh producer [FLAGS]  make loc-runp: l0-producer FLAGS in the background
#   scripts/run.sh urls              print every URL of the local stack (make run-all ends with it)
#   scripts/run.sh stop              stop the producer and the service this checkout started
#   scripts/run.sh status            exit 0 when the service runs, 3 when it does not
# Each start is a no-op when that program already runs. Pid files and logs live in $L0_STATE_DIR
# (default .local); MOCK names the orders file (default mock.json). The service's port and topic are
# asked of its own configuration loader, so config.yaml, the environment and the original service's
# variable names count exactly as they do for the service.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
STATE=${L0_STATE_DIR:-.local}
MOCK=${MOCK:-mock.json}
ORDERS=${ORDERS:-3600}
SERVICE_PID=$STATE/service.pid
SERVICE_LOG=$STATE/service.log
PRODUCER_PID=$STATE/producer.pid
PRODUCER_LOG=$STATE/producer.log

setting() { $PY -m internal.config.value "$1"; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
running_pid() { running_pid_of "$1"; }

service() {
  mkdir -p "$STATE"
  local pid port
  port=$(setting http.port)
  if pid=$(running_pid "$SERVICE_PID"); then
    echo "service: already running (pid $pid) - UI: http://127.0.0.1:$port/"
    return
  fi
  echo "service: starting on http://127.0.0.1:$port/ (log: $SERVICE_LOG)"
  # setsid + redirected streams: the service must not hold the caller's terminal or CI's pipes open.
  setsid nohup $PY cmd/service.py serve >"$SERVICE_LOG" 2>&1 </dev/null &
  echo $! >"$SERVICE_PID"
  local deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    if ! running_pid "$SERVICE_PID" >/dev/null; then tail -n 20 "$SERVICE_LOG" >&2; echo "service: exited during start (log above)" >&2; exit 1; fi
    ((SECONDS < deadline)) || { tail -n 20 "$SERVICE_LOG" >&2; echo "service: not ready within 90s" >&2; exit 1; }
    sleep 0.3
  done
  echo "service: ready"
}

producer() {
  mkdir -p "$STATE"
  local pid
  if pid=$(running_pid "$PRODUCER_PID"); then
    echo "producer: already running (pid $pid, log: $PRODUCER_LOG)"
    return
  fi
  # The broker does not create topics on demand; the service's topics, created as the service would.
  $PY cmd/service.py create-topics
  echo "producer: l0-producer $* in the background (log: $PRODUCER_LOG)"
  setsid nohup $PY cmd/producer.py "$@" >"$PRODUCER_LOG" 2>&1 </dev/null &
  echo $! >"$PRODUCER_PID"
}

replay() {
  [[ -f $MOCK ]] || { echo "producer: no $MOCK to replay (make gen writes it)" >&2; exit 1; }
  producer -file "$MOCK" -rps "${1:-100}" -topic "$(setting kafka.topic)" -brokers "$(setting kafka.brokers)"
}

start() {
  mkdir -p "$STATE"
  if pid=$(running_pid "$SERVICE_PID"); then
    echo "service: already running (pid $pid) - UI: http://127.0.0.1:$(setting http.port)/"
    return
  fi
  $PY cmd/service.py migrate
  $PY cmd/service.py create-topics
  [[ -f $MOCK ]] || $PY gen_orders.py -n "$ORDERS" --invalid-rate 0.1 -o "$MOCK"
  service
  echo "producer: replaying $MOCK"
  $PY cmd/producer.py -file "$MOCK" -rps 0 -topic "$(setting kafka.topic)" -brokers "$(setting kafka.brokers)"
  urls
}

urls() {
  local url
  url="http://127.0.0.1:$(setting http.port)"
  cat <<TXT

  The order service:
    UI:          $url/
    API:         $url/api/orders/<order_uid>
    health:      $url/healthz  $url/readyz
    metrics:     $url/metrics
    Prometheus:  $(scripts/prometheus.sh url) (alerts: /alerts; make up-metric starts it)
    Grafana:     not packaged for Debian, so not run here: the compose stack has it, with the
                 dashboard (docker compose up on a machine with Docker: http://127.0.0.1:3000/, docs/docker.md)
    logs:        $SERVICE_LOG, $PRODUCER_LOG (make logs)
    stop:        make stop (service, producer, Prometheus)      stack: make infra-down
TXT
}

status() {
  local pid
  if pid=$(running_pid "$SERVICE_PID"); then echo "service: running (pid $pid)"; else echo "service: stopped"; return 3; fi
}

case "${1:-start}" in
  start) start ;;
  service) service ;;
  replay) shift; replay "$@" ;;
  producer) shift; producer "$@" ;;
  urls) urls ;;
  # 40 s: more than shutdown.timeout_s (30 s), the longest a clean stop of the service takes.
  stop) stop_pid producer "$PRODUCER_PID" 40; stop_pid service "$SERVICE_PID" 40 ;;
  status) status ;;
  *) echo "usage: $0 [start|service|replay|producer|urls|stop|status]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Prometheus for the local stack (make up-metric): Debian's `prometheus` (scripts/install-prometheus.sh)
# with configs/prometheus/ - it scrapes the service of `make run` / `make up-app` on 127.0.0.1 at the
# service's own http.port and evaluates configs/prometheus/alerts.yml.
#
#   scripts/prometheus.sh up|down|status|url
#
# up      write the configuration (devtools/monitoring.py: the shipped prometheus.yml with the local
#         target), start the server and wait until it is ready; when it already runs, reload it if the
#         configuration changed (the service's port, say), else do nothing
# down    stop the server this checkout started (its data is kept)
# status  exit 0 when it runs, 3 when it does not
# url     print its URL
# Data, configuration, log and pid live in $L0_STATE_DIR/prometheus (default .local/prometheus); the port is
# PROMETHEUS_PORT (default 9090), the name docker-compose.yml's .env uses too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
STATE=${L0_STATE_DIR:-.local}/prometheus
CONFIG=$STATE/prometheus.yml
PIDFILE=$STATE/prometheus.pid
LOGFILE=$STATE/prometheus.log
HOST=127.0.0.1
PORT=${PROMETHEUS_PORT:-9090}
URL="http://$HOST:$PORT"
START_TIMEOUT_S=${PROMETHEUS_START_TIMEOUT_S:-60}

log() { printf 'prometheus: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
running_pid() { running_pid_of "$PIDFILE"; }

write_config() {  # into $1
  local port
  port=$($PY -m internal.config.value http.port) || die "the service's configuration is invalid (above)"
  $PY -m devtools.monitoring --target "127.0.0.1:$port" --out "$1"
  promtool check config "$1" >/dev/null || die "promtool rejects the generated $1"
}

up() {
  scripts/install-prometheus.sh
  mkdir -p "$STATE/data"
  write_config "$CONFIG.new"
  local pid
  if pid=$(running_pid); then
    if cmp -s "$CONFIG.new" "$CONFIG"; then
      rm -f "$CONFIG.new"
      log "already running (pid $pid): $URL/"
    else
      mv "$CONFIG.new" "$CONFIG"
      kill -HUP "$pid"  # Prometheus re-reads its configuration on SIGHUP
      log "configuration changed, reloaded (pid $pid): $URL/"
    fi
    return
  fi
  if port_open; then
    rm -f "$CONFIG.new"
    die "$HOST:$PORT is taken by a server this checkout did not start (Debian's own prometheus service? systemctl disable --now prometheus); or choose another PROMETHEUS_PORT"
  fi
  mv "$CONFIG.new" "$CONFIG"
  log "starting on $URL/ (log: $LOGFILE)"
  # setsid + redirected streams: the server must not hold the caller's terminal or CI's pipes open.
  setsid nohup prometheus --config.file="$CONFIG" --storage.tsdb.path="$STATE/data" \
    --web.listen-address="$HOST:$PORT" >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until curl -fsS -o /dev/null "$URL/-/ready" 2>/dev/null; do
    if ! running_pid >/dev/null; then
      tail -n 20 "$LOGFILE" >&2
      die "exited during start (log above)"
    fi
    ((SECONDS < deadline)) || die "not ready within ${START_TIMEOUT_S}s (see $LOGFILE)"
    sleep 0.2
  done
  log "ready: $URL/ (targets: $URL/targets, alerts: $URL/alerts)"
}

down() { stop_pid prometheus "$PIDFILE" 30; }

status() {
  local pid
  if pid=$(running_pid); then
    echo "prometheus: running (pid $pid, $URL/, data $STATE/data)"
  else
    echo "prometheus: stopped"
    return 3
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  url) echo "$URL/" ;;
  *) echo "usage: $0 up|down|status|url" >&2; exit 2 ;;
esac

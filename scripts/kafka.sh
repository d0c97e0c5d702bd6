#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft: broker + controller) from the official jars, without Docker.
#
#   scripts/kafka.sh up|down|status|restart
#
# The jars come from Maven Central through configs/kafka/pom.xml into .local/kafka/libs-<version>
# (git ignores .local). Storage is formatted once; .local/kafka/data survives restarts, so a message
# produced before `down` is still there after `up`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/configs/kafka"
STATE="${KAFKA_STATE_DIR:-$ROOT/.local/kafka}"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CONF/pom.xml")
LIBS="$STATE/libs-$VERSION"
DATA="$STATE/data"
LOGS="$STATE/logs"
PIDFILE="$STATE/broker.pid"
PROPS="$STATE/server.properties"
HOST=127.0.0.1
PORT=9092
START_TIMEOUT_S=${KAFKA_START_TIMEOUT_S:-90}

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME/bin/java"; return; fi
  command -v java || die "Java 17+ is required to run the broker and was not found (Debian: apt-get install openjdk-17-jre-headless)"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
running_pid() { running_pid_of "$PIDFILE"; }

resolve_jars() {
  [[ -f "$LIBS/.complete" ]] && return
  command -v mvn >/dev/null || die "Maven is required once to fetch the Kafka $VERSION jars and was not found (Debian: apt-get install maven)"
  log "resolving Apache Kafka $VERSION and its runtime dependencies from Maven Central (once)"
  local tmp="$LIBS.tmp"
  rm -rf "$tmp"
  mvn -q -B -f "$CONF/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 \
    || die "could not resolve the Kafka jars with Maven (see the output above)"
  touch "$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

write_properties() {
  mkdir -p "$DATA" "$LOGS"
  { cat "$CONF/server.properties"; printf '\nlog.dirs=%s\n' "$DATA"; } >"$PROPS"
}

format_storage_once() {
  [[ -f "$DATA/meta.properties" ]] && return
  local java cluster_id
  java=$(java_bin)
  cluster_id=$("$java" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
  log "formatting storage in $DATA (cluster $cluster_id)"
  "$java" -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$CONF/log4j2.xml" -cp "$LIBS/*" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >&2
}

up() {
  if pid=$(running_pid) && port_open; then
    log "already running (pid $pid) on $HOST:$PORT"
    return
  fi
  local java
  java=$(java_bin)
  if port_open; then
    log "a broker this checkout did not start already answers on $HOST:$PORT; using it"
    return
  fi
  resolve_jars
  write_properties
  format_storage_once
  log "starting broker $VERSION on $HOST:$PORT (logs: $LOGS/server.log)"
  # setsid + redirected streams: the broker must not hold the caller's terminal or CI's pipes open.
  setsid nohup "$java" -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$CONF/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >"$LOGS/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until port_open; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$LOGS/stdout.log" "$LOGS/server.log" >&2 2>/dev/null || true
      die "the broker exited during start (logs above)"
    fi
    ((SECONDS < deadline)) || die "the broker did not accept connections within ${START_TIMEOUT_S}s (see $LOGS)"
    sleep 0.2
  done
  log "ready on $HOST:$PORT"
}

down() {
  # A controlled shutdown flushes the log; give it time before forcing.
  stop_pid kafka "$PIDFILE" 30
}

status() {
  if pid=$(running_pid) && port_open; then
    echo "kafka: running (pid $pid, Apache Kafka $VERSION, $HOST:$PORT, data $DATA)"
  elif port_open; then
    echo "kafka: $HOST:$PORT answers, but not a broker this script started"
  else
    echo "kafka: stopped"
    return 3
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart)
    running_pid >/dev/null || die "cannot restart: no broker started by this checkout is running"
    down; up ;;
  *) echo "usage: $0 up|down|status|restart" >&2; exit 2 ;;
esac

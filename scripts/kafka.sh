#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft: broker + controller) from the official jars, without Docker.
#
#   scripts/kafka.sh up|down|status|restart
#
# The jars come from Maven Central through configs/kafka/pom.xml into .local/kafka/libs-<version>
# (git ignores .local). Storage is formatted once; .local/kafka/data survives restarts, so a message
# produced before `down` is still there after `up`.
#
# The broker's address is the one the service is given: KAFKA_BROKERS (default 127.0.0.1:9092). A single
# loopback HOST:PORT is run here (the controller on PORT+1, state under .local/kafka-PORT for a port
# other than 9092), so a second checkout can own a broker of its own; any other address is a broker run
# elsewhere: `up` only waits for it, `down` and `restart` refuse, never touching another broker.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/configs/kafka"
ADDRESS=${KAFKA_BROKERS:-127.0.0.1:9092}
MANAGED=0
if [[ $ADDRESS =~ ^(127\.0\.0\.1|localhost):([0-9]+)$ ]]; then
  HOST=127.0.0.1
  PORT=${BASH_REMATCH[2]}
  MANAGED=1
else
  HOST=${ADDRESS%%,*}; HOST=${HOST%:*}
  PORT=${ADDRESS%%,*}; PORT=${PORT##*:}
fi
CONTROLLER_PORT=0
[[ $MANAGED == 1 ]] && CONTROLLER_PORT=$((PORT + 1))  # a port of ours: digits, matched above
DEFAULT_STATE="$ROOT/.local/kafka"
[[ $PORT == 9092 ]] || DEFAULT_STATE="$ROOT/.local/kafka-$PORT"
STATE="${KAFKA_STATE_DIR:-$DEFAULT_STATE}"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CONF/pom.xml")
# The jars are the same for every broker of the checkout: resolved once.
LIBS="$ROOT/.local/kafka/libs-$VERSION"
DATA="$STATE/data"
LOGS="$STATE/logs"
PIDFILE="$STATE/broker.pid"
PROPS="$STATE/server.properties"
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
  # The shipped file says 127.0.0.1:9092 (controller 9093); this broker's ports replace them.
  { sed -e "s/:9093/:$CONTROLLER_PORT/g" -e "s/:9092/:$PORT/g" "$CONF/server.properties"
    printf '\nlog.dirs=%s\n' "$DATA"; } >"$PROPS"
}

not_managed() {
  log "$ADDRESS (KAFKA_BROKERS) is not a broker this script runs (only one 127.0.0.1 or localhost:PORT is): $1"
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
  if [[ $MANAGED == 0 ]]; then
    port_open || die "no broker answers at $HOST:$PORT (KAFKA_BROKERS=$ADDRESS), and it is not one this script runs"
    log "using the broker at $ADDRESS (not run by this script)"
    return
  fi
  if pid=$(running_pid); then
    # Ours already: running, or still starting (a second one would die on the data directory's lock
    # and overwrite the pid file, orphaning the first).
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until port_open; do
      ((SECONDS < deadline)) || die "the broker (pid $pid) did not accept connections within ${START_TIMEOUT_S}s (see $LOGS)"
      sleep 0.2
    done
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
  [[ $MANAGED == 1 ]] || { not_managed "nothing to stop"; return; }
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
    [[ $MANAGED == 1 ]] || { not_managed "cannot restart it"; exit 1; }
    running_pid >/dev/null || die "cannot restart: no broker started by this checkout runs on $HOST:$PORT"
    down; up ;;
  *) echo "usage: $0 up|down|status|restart" >&2; exit 2 ;;
esac

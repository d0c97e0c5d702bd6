# Helpers the scripts that start background programs share (kafka.sh, run.sh, prometheus.sh): source it.

# running_pid_of PIDFILE: print the pid it names and succeed while that process lives.
running_pid_of() {
  [[ -f $1 ]] || return 1
  local pid
  pid=$(<"$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# stop_pid NAME PIDFILE SECONDS: SIGTERM, wait up to SECONDS for a clean stop, then SIGKILL.
stop_pid() {
  local name=$1 pidfile=$2 seconds=$3 pid
  if ! pid=$(running_pid_of "$pidfile"); then
    printf '%s: not running\n' "$name" >&2
    rm -f "$pidfile"
    return
  fi
  printf '%s: stopping (pid %s)\n' "$name" "$pid" >&2
  kill -TERM "$pid"
  local deadline=$((SECONDS + seconds))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      printf '%s: still alive after %ss, killing\n' "$name" "$seconds" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  printf '%s: stopped\n' "$name" >&2
}

#!/usr/bin/env bash
# wrk, the HTTP load generator of `make bench-http` (bench/http.py), from Debian's packages.
#
#   scripts/install-wrk.sh
#
# Idempotent: does nothing when wrk is on PATH.
set -euo pipefail

if command -v wrk >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "wrk: not installed; as root run: apt-get update && apt-get install -y wrk" >&2
  exit 1
fi
echo "wrk: installing Debian's wrk" >&2
# The package index may be stale or empty on a fresh machine: refresh it before installing.
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
command -v wrk >/dev/null || { echo "wrk: apt-get finished but wrk is still missing" >&2; exit 1; }

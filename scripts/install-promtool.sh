#!/usr/bin/env bash
# promtool, which checks and unit-tests configs/prometheus/alerts.yml (tests/unit/test_dashboards.py),
# from Debian's `prometheus` package (the package that ships it).
#
#   scripts/install-promtool.sh
#
# Only the package is installed: --no-install-recommends keeps node-exporter out, and the package's
# Prometheus server is not started where no init system runs services (containers, CI); on a host that
# does run one, `systemctl disable --now prometheus` stops it. Idempotent: does nothing when promtool is
# on PATH.
set -euo pipefail

if command -v promtool >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "promtool: not installed; as root run: apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
fi
echo "promtool: installing Debian's prometheus package (for promtool)" >&2
# The package index may be stale or empty on a fresh machine: refresh it before installing.
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null || { echo "promtool: apt-get finished but promtool is still missing" >&2; exit 1; }

#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package (the package ships both):
#   - promtool checks and unit-tests configs/prometheus/alerts.yml (tests/unit/test_dashboards.py);
#   - the server runs the local monitoring of `make up-metric` (scripts/prometheus.sh) and the live
#     monitoring test (tests/e2e/test_monitoring.py).
#
#   scripts/install-prometheus.sh
#
# Only the package is installed: --no-install-recommends keeps node-exporter out, and the package's own
# Prometheus service is not started where no init system runs services (containers, CI); on a host that
# does run one, `systemctl disable --now prometheus` stops it (it would hold port 9090). The project
# starts its own server, with its own configuration and data, through scripts/prometheus.sh.
# Idempotent: does nothing when both programs are on PATH.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "prometheus: not installed; as root run: apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
fi
echo "prometheus: installing Debian's prometheus package (the server and promtool)" >&2
# The package index may be stale or empty on a fresh machine: refresh it before installing.
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
for program in promtool prometheus; do
  command -v "$program" >/dev/null || { echo "prometheus: apt-get finished but $program is still missing" >&2; exit 1; }
done

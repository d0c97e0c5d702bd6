#!/usr/bin/env bash
# Headless Chromium for the browser UI tests (tests/e2e/test_ui_browser.py), from Debian's packages.
#
#   scripts/install-browser.sh
#
# Playwright drives this binary (executable_path=/usr/bin/chromium); its own browser download
# (`playwright install`) cannot work here, since only package registries are reachable.
# Idempotent: does nothing when /usr/bin/chromium is there.
set -euo pipefail

BROWSER=/usr/bin/chromium

if [[ -x "$BROWSER" ]]; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "browser: $BROWSER is missing; as root run: apt-get update && apt-get install -y chromium" >&2
  exit 1
fi
echo "browser: installing Debian's chromium" >&2
# The package index may be stale or empty on a fresh machine: refresh it before installing.
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
test -x "$BROWSER" || { echo "browser: apt-get finished but $BROWSER is still missing" >&2; exit 1; }
